"""The demo star LoRA, trained through the CLI on the embedded model, makes stars: learning, not a loop that ran."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from studio.models import default_model_path

ROOT = Path(__file__).resolve().parents[2]
# Cut short to keep CI quick (about two minutes on one thread). The trajectory depends on the CPU's kernels: at 600
# steps an AMD EPYC reached the bar while an Intel Xeon drew stars for 28-33 % at weight 0.9 (59 % at 1,200, n=54).
SHORT_STEPS = 1200
# The short version: rank 8 at a constant rate and no priors learns the star fastest; the full preset (rank 16,
# cosine decay, prior images) needs its 1,700 steps (assets/toy-world/README.md has its numbers).
SHORT_RECIPE = ["lora_rank=8", "lora_alpha=16", "learning_rate=0.002", "lr_scheduler=constant",
                "min_snr_gamma=null", "prior_count=0"]
pytestmark = pytest.mark.skipif(not (default_model_path() / "model_index.json").is_file(),
                                reason="assets/toy-world not built")


def test_demo_star_lora_raises_the_star_rate_by_40_points_at_weight_0_9(tmp_path):
    from studio.toyworld.evaluate import load_pipeline, star_rate_by_weight

    done = subprocess.run(
        [sys.executable, "studio.py", "train", "--config", "presets/demo/demo-star.yaml", "--quiet",
         "--set", f"max_steps={SHORT_STEPS}", "--set", f"output_dir={tmp_path}", "--set", "output_name=demo-star", "--set", "sample_steps=0",
         "--set", "validation_steps=0", "--set", "save_steps=0", *[a for item in SHORT_RECIPE for a in ("--set", item)]],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lora = next(tmp_path.glob("demo-star-*/pytorch_lora_weights.safetensors"))
    report = star_rate_by_weight(load_pipeline(default_model_path()), str(lora), weights=[0.0, 0.9], n=18, seed=0)
    rates = {row["weight"]: row["star_rate"] for row in report["by_weight"]}
    assert rates[0.0] <= 0.1
    assert rates[0.9] - rates[0.0] >= 0.4, rates
