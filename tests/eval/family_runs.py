"""What the per-family evaluation tests share: a short run with checkpoints, and the checkpoint x weight grid whose
weight-0 cells must be exactly the base model's pictures."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from studio.eval import GridSpec, render_grid
from studio.eval.samplers import use_sampler
from studio.eval.session import generate

PROMPT = "a red zq circle on a white background"


def train_run(base_model: Path, dataset: Path, output: Path, **overrides) -> Path:
    """The run folder of a finished 20-step run (UNet or transformer and the text encoders) with checkpoints at
    steps 10 and 20."""
    from studio.config import load_config
    from studio.train import run_training

    config = load_config({
        "train_data_dir": str(dataset), "base_model": str(base_model), "resolution": 32, "batch_size": 4,
        "lora_rank": 4, "lora_alpha": 8, "learning_rate": 2e-3, "max_steps": 20, "save_steps": 10,
        "train_text_encoder": True, "output_dir": str(output), **overrides,
    })
    result = run_training(config)
    assert result.status == "finished"
    return result.run_dir


def checkpoint_grid_against_the_base(run_dir: Path, base_model: Path, out: Path, cache: dict):
    """Draw the run's checkpoints at weights 0, 0.4 and 0.9 and check the grid's rows, columns and sizes, that only
    the weight-0 cells are the base model's picture (the grid's default sampler), and that the final LoRA changes
    the picture more at 0.9 than at 0.4. Returns (the grid's result, the base pipeline)."""
    from studio.models import load_pipeline

    spec = GridSpec(lora=str(run_dir), prompts=[PROMPT], seeds=[0], weights=[0.4, 0.9], steps=3,
                    include_reference=True, checkpoints=["all"])
    result = render_grid(spec, out, pipeline_cache=cache)
    index = json.loads(result.index_json.read_text())
    assert [row["checkpoint"] for row in index["rows"]] == ["step 10", "final"]
    assert index["columns"] == ["weight 0 (base)", "weight 0.4", "weight 0.9"]
    assert all(Image.open(c.path).size == (32, 32) for c in result.cells)

    base = load_pipeline(str(base_model))
    base.set_progress_bar_config(disable=True)
    with use_sampler(base, "auto"):  # the grid's default sampler (DDIM; flow-matching Euler for FLUX)
        expected = np.asarray(generate(base, [PROMPT], [""], [0], steps=3, guidance=5.0, width=32, height=32)[0])
    for cell in result.cells:
        same = np.array_equal(np.asarray(Image.open(cell.path)), expected)
        assert same == (cell.weight == 0.0), (cell.checkpoint, cell.weight)
    final = result.metrics["by_checkpoint"]["final"]["change_by_weight"]
    assert 0 < final[0.4] < final[0.9]
    return result, base
