"""The SDXL toy world in assets/: an SDXL folder that loads offline, draws its world for prompts drawn at random,
and learns the star from the demo preset."""
from __future__ import annotations

import random

import pytest
import torch

from studio.models import load_components, toy_world_models

MODEL = toy_world_models()[1]
pytestmark = pytest.mark.skipif(not (MODEL / "model_index.json").is_file(), reason="assets/toy-world-sdxl not built")


def test_sdxl_toy_is_a_small_sdxl_folder_that_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    sizes = [sum(p.stat().st_size for p in model.rglob("*") if p.is_file()) for model in toy_world_models()]
    assert sum(sizes) <= 40 * 2**20, sizes
    components = load_components(str(MODEL))
    assert components.family.name == "sdxl" and components.kind == "folder"
    assert components.denoiser.config.addition_embed_type == "text_time"
    assert components.denoiser.config.cross_attention_dim == (components.text_encoder.config.hidden_size
                                                           + components.text_encoder_2.config.hidden_size)
    assert components.noise_scheduler.config.prediction_type == "v_prediction"


def test_sdxl_toy_draws_the_colour_shape_and_background_of_prompts_drawn_at_random():
    from studio.toyworld.evaluate import evaluate_base, load_pipeline

    seed = random.randrange(10**6)  # other prompts on every run; the seed is in the message when it fails
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        report = evaluate_base(load_pipeline(MODEL), n=24, seed=seed, steps=20)
    finally:
        torch.set_num_threads(threads)
    accuracy = report["accuracy"]
    assert accuracy["colour"] >= 0.9 and accuracy["shape"] >= 0.9 and accuracy["background"] >= 0.85, (seed, accuracy)


@pytest.mark.slow
def test_sdxl_demo_star_preset_draws_stars_for_zq_only(tmp_path):
    """The preset's recipe, trained through the CLI at 1,200 of its 2,000 steps (the cosine schedule compressed to
    fit, to keep the suite short): stars at weight 0.9 for `zq star` prompts (7 of 18 measured here), none at
    weight 0, and prompts of the other shapes without the trigger stay circles, squares and triangles. The preset
    at full length (89 % stars at 0.9 on 54 prompts) is measured by `studio.toyworld.leak_report`, recorded in
    assets/toy-world-sdxl/README.md."""
    import subprocess
    import sys

    from studio.toyworld.evaluate import load_pipeline, star_rate_by_weight

    root = MODEL.parents[1]
    done = subprocess.run(
        [sys.executable, "studio.py", "train", "--config", "presets/demo/demo-star-sdxl.yaml", "--quiet",
         "--set", f"output_dir={tmp_path}", "--set", "output_name=demo-star-sdxl", "--set", "sample_steps=0",
         "--set", "validation_steps=0", "--set", "save_steps=0", "--set", "max_steps=1200"],
        cwd=root, capture_output=True, text=True, timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lora = next(tmp_path.glob("demo-star-sdxl-*/pytorch_lora_weights.safetensors"))
    report = star_rate_by_weight(load_pipeline(MODEL), str(lora), weights=[0.0, 0.9], n=18, seed=3,
                                 other_shapes=True)
    rows = {row["weight"]: row for row in report["by_weight"]}
    assert rows[0.0]["star_rate"] <= 0.1 and rows[0.9]["star_rate"] >= 0.25, rows
    assert rows[0.9]["other_shape_star_rate"] <= 0.25, rows
