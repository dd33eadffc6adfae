"""Evaluation on a tiny random SDXL: checkpoint x weight grids, weight 0 is the base model, <lora:…> prompts, verdict."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from studio.eval import GridSpec, make_verdict, render_grid
from studio.eval.generate import generate_from_prompt
from studio.eval.samplers import use_sampler
from studio.eval.session import generate

PROMPT = "a red zq circle on a white background"


@pytest.fixture(scope="module")
def sdxl_run(tmp_path_factory, tiny_sdxl_dir, eval_dataset):
    """A 20-step SDXL run (UNet and both text encoders) with checkpoints at steps 10 and 20."""
    from studio.config import load_config
    from studio.train import run_training

    config = load_config({
        "train_data_dir": str(eval_dataset), "base_model": str(tiny_sdxl_dir), "resolution": 32, "batch_size": 4,
        "lora_rank": 4, "lora_alpha": 8, "learning_rate": 2e-3, "max_steps": 20, "save_steps": 10,
        "train_text_encoder": True, "output_dir": str(tmp_path_factory.mktemp("sdxl-runs")), "output_name": "xl",
    })
    result = run_training(config)
    assert result.status == "finished"
    return result.run_dir


def test_sdxl_grid_checkpoints_by_weight_with_the_base_at_weight_zero(sdxl_run, tiny_sdxl_dir, tmp_path):
    from studio.models import load_pipeline

    cache: dict = {}
    spec = GridSpec(lora=str(sdxl_run), prompts=[PROMPT], seeds=[0], weights=[0.4, 0.9], steps=3,
                    include_reference=True, checkpoints=["all"])
    result = render_grid(spec, tmp_path / "grid", pipeline_cache=cache)
    index = json.loads(result.index_json.read_text())
    assert [row["checkpoint"] for row in index["rows"]] == ["step 10", "final"]
    assert index["columns"] == ["weight 0 (base)", "weight 0.4", "weight 0.9"]
    assert all(Image.open(c.path).size == (32, 32) for c in result.cells)

    base = load_pipeline(str(tiny_sdxl_dir))
    base.set_progress_bar_config(disable=True)
    with use_sampler(base, "ddim"):  # the grid's default sampler
        expected = np.asarray(generate(base, [PROMPT], [""], [0], steps=3, guidance=5.0, width=32, height=32)[0])
    for cell in result.cells:
        same = np.array_equal(np.asarray(Image.open(cell.path)), expected)
        assert same == (cell.weight == 0.0), (cell.checkpoint, cell.weight)
    final = result.metrics["by_checkpoint"]["final"]["change_by_weight"]
    assert 0 < final[0.4] < final[0.9]
    verdict = make_verdict(result.metrics)
    assert verdict.weight_reasons and verdict.best_checkpoint in ("step 10", "final")


def test_sdxl_lora_tag_in_a_prompt_applies_the_lora_at_its_weight(sdxl_run, tiny_sdxl_dir, tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    shutil.copy(sdxl_run / "xl.safetensors", folder / "xl.safetensors")
    cache: dict = {}

    def pixels(prompt: str) -> np.ndarray:
        images = generate_from_prompt(prompt, base_model=str(tiny_sdxl_dir), lora_dirs=[folder], steps=3, seeds=[0],
                                      pipeline_cache=cache)
        return np.asarray(images[0], dtype=np.int16)

    base, half, full = pixels(PROMPT), pixels(PROMPT + " <lora:xl:0.5>"), pixels(PROMPT + " <lora:xl:1>")
    assert np.abs(half - base).max() > 3 and np.abs(full - half).max() > 3
    assert np.array_equal(pixels(PROMPT + " <lora:xl:0>"), base)


def test_a_lora_of_the_other_family_is_refused_with_a_sentence(sdxl_run, trained_run, tiny_sdxl_dir, tiny_sd_dir,
                                                               tmp_path):
    from studio.eval import EvalError

    folder = tmp_path / "loras"
    folder.mkdir()
    shutil.copy(sdxl_run / "xl.safetensors", folder / "xl.safetensors")
    shutil.copy(trained_run / "tiny.safetensors", folder / "sd.safetensors")
    cache: dict = {}
    with pytest.raises(EvalError, match="is an SD 1.x LoRA and the base model is SDXL"):
        generate_from_prompt(PROMPT + " <lora:sd:0.5>", base_model=str(tiny_sdxl_dir), lora_dirs=[folder], steps=1,
                             pipeline_cache=cache)
    with pytest.raises(EvalError, match="is an SDXL LoRA and the base model is SD 1.x"):
        generate_from_prompt(PROMPT + " <lora:xl:0.5>", base_model=str(tiny_sd_dir), lora_dirs=[folder], steps=1,
                             pipeline_cache=cache)
