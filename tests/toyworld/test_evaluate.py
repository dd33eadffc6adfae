"""Evaluation mechanics on the random tiny pipeline: structure, determinism, LoRA weights, CLI outputs.

The random model draws mud, so the numbers are near zero; what is tested is that the same seed gives the same
report, that weight 0 is the base model, and that the pipeline is left without the evaluation adapter.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from studio.toyworld.evaluate import (
    balanced_scenes, evaluate_base, generate, load_pipeline, main, star_rate_by_weight, without_images,
)
from studio.toyworld.world import BACKGROUNDS, BASE_SHAPES, COLOURS, caption

FAST = dict(steps=2, guidance=5.0, batch=4)


@pytest.fixture(scope="module")
def pipe(tiny_sd_dir):
    import torch

    torch.set_num_threads(1)
    return load_pipeline(tiny_sd_dir)


@pytest.fixture(scope="module")
def lora_file(tiny_sd_dir, tmp_path_factory):
    """A LoRA on the tiny UNet's attention with random (non-zero) up-projections, saved as diffusers does."""
    import torch
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = load_pipeline(tiny_sd_dir).unet
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if "lora_" in name:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    out = tmp_path_factory.mktemp("lora")
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    StableDiffusionPipeline.save_lora_weights(str(out), unet_lora_layers=layers, weight_name="toy.safetensors")
    return out / "toy.safetensors"


def _pixels(images):
    return np.stack([np.asarray(image) for image in images])


def test_balanced_scenes_cover_every_combination():
    scenes = balanced_scenes(54, seed=1)
    assert len({(s.shape, s.colour, s.background) for s in scenes}) == 54
    stars = balanced_scenes(18, seed=1, shapes=("star",))
    assert {(s.colour, s.background) for s in stars} == {(c, b) for c in COLOURS for b in BACKGROUNDS}
    assert balanced_scenes(20, seed=1) == balanced_scenes(20, seed=1) != balanced_scenes(20, seed=2)
    assert {s.shape for s in balanced_scenes(6, seed=0)} <= set(BASE_SHAPES)


def test_evaluate_base_structure_and_determinism(pipe):
    calls = []
    first = evaluate_base(pipe, n=6, seed=3, progress=lambda done, total: calls.append((done, total)), **FAST)
    second = evaluate_base(pipe, n=6, seed=3, **FAST)
    assert calls == [(4, 6), (6, 6)]
    assert without_images(first) == without_images(second)
    assert np.array_equal(_pixels(first["images"]), _pixels(second["images"]))
    assert first["n"] == 6 and len(first["items"]) == 6 and len(first["images"]) == 6
    assert all(isinstance(image, Image.Image) and image.size == (32, 32) for image in first["images"])
    assert set(first["accuracy"]) >= {"colour", "shape", "background"}
    assert all(0.0 <= first["accuracy"][k] <= 1.0 for k in ("colour", "shape", "background"))
    assert [item["prompt"] for item in first["items"]] == [caption(s) for s in balanced_scenes(6, 3)]
    json.dumps(without_images(first), allow_nan=False)


def test_star_rate_by_weight(pipe, lora_file):
    prompts = [caption(s) for s in balanced_scenes(4, seed=5, shapes=("star",))]
    plain = generate(pipe, prompts, seed=5, **FAST)
    report = star_rate_by_weight(pipe, lora_file, weights=[0.0, 1.0], n=4, seed=5, **FAST)
    rows = report["by_weight"]
    assert [row["weight"] for row in rows] == [0.0, 1.0]
    assert all(set(row) >= {"star_rate", "colour", "background", "accuracy", "items", "images"} for row in rows)
    assert all(0.0 <= row["star_rate"] <= 1.0 and len(row["images"]) == 4 for row in rows)
    assert np.abs(_pixels(rows[0]["images"]).astype(int) - _pixels(plain).astype(int)).max() <= 1
    assert not np.array_equal(_pixels(rows[1]["images"]), _pixels(plain))
    # the adapter is gone again: the pipeline draws what it drew before
    assert np.array_equal(_pixels(generate(pipe, prompts, seed=5, **FAST)), _pixels(plain))


def test_cli_writes_report_and_sheet(tiny_sd_dir, lora_file, tmp_path, capsys):
    out, sheet = tmp_path / "report.json", tmp_path / "sheet.png"
    argv = ["--model", str(tiny_sd_dir), "--lora", str(lora_file), "--weights", "0,0.5", "--prompts", "4",
            "--star-prompts", "2", "--steps", "2", "--batch", "4", "--seed", "1", "--out", str(out),
            "--sheet", str(sheet), "--labels", "--leak"]
    report = main(argv)
    printed = capsys.readouterr().out
    assert "base prompts (4)" in printed and "LoRA weight 0.5" in printed
    assert printed.count("leak (no trigger)") == 2  # the star prompts without "zq", at each weight
    assert all(0.0 <= row["leak_rate"] <= 1.0 for row in report["stars"]["by_weight"])
    assert json.loads(out.read_text()) == report
    assert report["base"]["n"] == 4 and [r["weight"] for r in report["stars"]["by_weight"]] == [0.0, 0.5]
    assert "images" not in report["base"]
    image = Image.open(sheet)
    assert image.width == 16 * (32 * 4 + 6) and image.height == 3 * (14 + 32 * 4 + 6 + 12)
    with pytest.raises(SystemExit):
        main(["--model", str(tiny_sd_dir), "--lora", str(tmp_path / "missing.safetensors")])
