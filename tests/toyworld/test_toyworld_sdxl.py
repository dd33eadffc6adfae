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
    assert components.unet.config.addition_embed_type == "text_time"
    assert components.unet.config.cross_attention_dim == (components.text_encoder.config.hidden_size
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
