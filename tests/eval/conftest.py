"""Fixtures for evaluation tests: a tiny trained LoRA run (with checkpoints), a tiny CLIP, a shared pipeline cache."""
from __future__ import annotations

import csv
import random

import pytest

from studio.toyworld.world import ALL_SHAPES, caption, random_scene, render

TRAIN_STEPS = 30
SAVE_STEPS = 10


@pytest.fixture(scope="session")
def eval_dataset(tmp_path_factory):
    """Eight 32 px toy-world images with captions."""
    folder = tmp_path_factory.mktemp("eval-data")
    rng = random.Random(11)
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "prompt"])
        for i in range(8):
            scene = random_scene(rng, ALL_SHAPES)
            render(scene).save(folder / f"img_{i}.png")
            writer.writerow([f"img_{i}.png", caption(scene)])
    return folder


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_sd_dir, eval_dataset):
    """A finished 30-step run on the tiny model: final LoRA plus checkpoints at steps 10 and 20, loss.jsonl."""
    from studio.config import load_config
    from studio.train import run_training

    output = tmp_path_factory.mktemp("eval-runs")
    config = load_config({
        "train_data_dir": str(eval_dataset), "base_model": str(tiny_sd_dir), "resolution": 32, "batch_size": 4,
        "lora_rank": 4, "lora_alpha": 8, "learning_rate": 1e-3, "max_steps": TRAIN_STEPS, "save_steps": SAVE_STEPS,
        "output_dir": str(output), "output_name": "tiny", "seed": 7,
    })
    result = run_training(config)
    assert result.status == "finished"
    return result.run_dir


@pytest.fixture(scope="session")
def pipeline_cache():
    """One cache for the whole session, as the studio keeps one: the tiny pipeline loads once."""
    return {}


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory):
    """A randomly initialised tiny CLIP (toy tokenizer + image processor) saved as a folder."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    from studio.toyworld.vocab import build_clip_tokenizer

    root = tmp_path_factory.mktemp("tiny-clip")
    tokenizer = build_clip_tokenizer(root / "tokenizer")
    text = dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                  patch_size=8)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(size={"shortest_edge": 32},
                                                                 crop_size={"height": 32, "width": 32}),
                              tokenizer=tokenizer)
    model.save_pretrained(root / "model")
    processor.save_pretrained(root / "model")
    return root / "model"
