"""Fixtures for training tests: a small captioned toy-world dataset and a config writer."""
from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

import pytest
import yaml

from studio.toyworld.world import ALL_SHAPES, caption, random_scene, render

sys.path.insert(0, str(Path(__file__).parent))  # run_helpers, shared by the test modules


@pytest.fixture(scope="session")
def toy_dataset(tmp_path_factory):
    """Eight 32 px toy-world images with ``metadata.csv`` (filename,prompt)."""
    folder = tmp_path_factory.mktemp("toy-data")
    rng = random.Random(3)
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "prompt"])
        for i in range(8):
            scene = random_scene(rng, ALL_SHAPES)
            render(scene).save(folder / f"img_{i}.png")
            writer.writerow([f"img_{i}.png", caption(scene)])
    return folder


@pytest.fixture
def write_config(tmp_path, tiny_sd_dir, toy_dataset):
    """Write a YAML config for the tiny model and dataset; keyword arguments override keys."""

    def write(name: str = "config.yaml", **overrides):
        values = {
            "train_data_dir": str(toy_dataset),
            "base_model": str(tiny_sd_dir),
            "resolution": 32,
            "batch_size": 4,
            "lora_rank": 4,
            "lora_alpha": 8,
            "learning_rate": 1e-3,
            "max_steps": 6,
            "save_steps": 3,
            "output_dir": str(tmp_path / "output"),
            "output_name": "tiny",
            "seed": 7,
        }
        values.update(overrides)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(values))
        return path

    return write
