"""The embedded default model in assets/: loads offline like any SD 1.x folder, small, and draws its world."""
from __future__ import annotations

import os

import pytest
import torch

from studio.models import default_model_path, load_components

MODEL = default_model_path()
pytestmark = pytest.mark.skipif(not (MODEL / "model_index.json").is_file(), reason="assets/toy-world not built")


def test_embedded_model_is_a_small_sd1_folder_that_loads_offline(monkeypatch):
    from diffusers import StableDiffusionPipeline

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    size = sum(p.stat().st_size for p in MODEL.rglob("*") if p.is_file())
    assert size <= 25 * 2**20
    pipe = StableDiffusionPipeline.from_pretrained(str(MODEL), safety_checker=None, requires_safety_checker=False)
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    components = load_components("")
    assert components.kind == "embedded"
    words = "a purple triangle on a black background"
    assert len(components.tokenizer(words, add_special_tokens=False).input_ids) == len(words.split())


def test_embedded_model_draws_the_colour_shape_and_background_it_is_asked_for():
    from studio.toyworld.evaluate import evaluate_base, load_pipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    try:
        report = evaluate_base(load_pipeline(MODEL), n=24, seed=5, steps=20)
    finally:
        torch.set_num_threads(threads)  # later tests compare numbers with runs in fresh processes
    accuracy = report["accuracy"]
    assert accuracy["colour"] >= 0.9 and accuracy["shape"] >= 0.9 and accuracy["background"] >= 0.85, accuracy
