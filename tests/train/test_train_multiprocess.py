"""Data-parallel training with accelerate: 2 CPU processes (gloo) against one process with the same batch."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from studio.config import load_config
from studio.train import run_training
from studio.train.run_folder import RunFolder
from run_helpers import stop_after

ROOT = Path(__file__).resolve().parents[2]
TOLERANCE = 1e-3  # all-reduce sums gradients in another order; Adam amplifies it: measured 1.3e-4 on weights ~0.4


def _config(tmp_path: Path, toy_dataset, tiny_sd_dir, name: str, **values) -> Path:
    config = {"train_data_dir": str(toy_dataset), "base_model": str(tiny_sd_dir), "resolution": 32, "lora_rank": 4,
              "learning_rate": 2e-3, "max_steps": 24, "save_steps": 6, "output_dir": str(tmp_path / name),
              "output_name": "mp", "seed": 3, "validation_steps": 12, **values}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "studio.py", "train", "--quiet", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)


def _lora(run: Path) -> dict:
    return load_file(str(run / "pytorch_lora_weights.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_two_processes_match_one_process_with_the_same_effective_batch(tmp_path, toy_dataset, tiny_sd_dir):
    single = run_training(load_config(_config(tmp_path, toy_dataset, tiny_sd_dir, "one", batch_size=4)))
    done = _cli("--config", str(_config(tmp_path, toy_dataset, tiny_sd_dir, "two", batch_size=2)),
                "--num-processes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    runs = list((tmp_path / "two").iterdir())
    assert len(runs) == 1, "one run folder for both processes"
    run = runs[0]
    assert done.stderr.count("[done]") == 1 and done.stdout.count("run folder:") == 1  # no duplicated messages
    log = RunFolder(run).loss_log()
    assert [r["step"] for r in log] == list(range(1, 25))
    validation = {r["step"]: r["val_loss"] for r in log if "val_loss" in r}
    validation[0] = json.loads((run / "run.json").read_text())["validation_at_start"]["0"]
    assert validation[24] < validation[12] < validation[0], "the (deterministic) validation loss should fall"
    assert _max_diff(_lora(single.run_dir), _lora(run)) <= TOLERANCE
    info = json.loads((run / "run.json").read_text())
    assert info["num_processes"] == 2 and info["effective_batch"] == 4
    assert "effective batch: 2 per process x 2 process(es) x 1 accumulation = 4" in (run / "config.yaml").read_text()


def test_resume_with_another_process_count(tmp_path, toy_dataset, tiny_sd_dir):
    straight = run_training(load_config(_config(tmp_path, toy_dataset, tiny_sd_dir, "straight", batch_size=4,
                                                max_steps=12)))
    stopped = run_training(load_config(_config(tmp_path, toy_dataset, tiny_sd_dir, "split", batch_size=4,
                                               max_steps=12)),
                           **stop_after(6))
    assert stopped.status == "stopped"
    config = _config(tmp_path, toy_dataset, tiny_sd_dir, "split", batch_size=2, max_steps=12)
    done = _cli("--config", str(config), "--num-processes", "2", "--resume", "latest")
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["step"] for r in RunFolder(stopped.run_dir).loss_log()] == list(range(1, 13))
    assert _max_diff(_lora(straight.run_dir), _lora(stopped.run_dir)) <= TOLERANCE


@pytest.mark.parametrize("model, parts", [
    ("tiny_sdxl_dir", {"unet", "text_encoder", "text_encoder_2"}),
    ("tiny_flux_dir", {"transformer", "text_encoder"}),
])
def test_text_encoder_lora_in_two_processes_matches_one_process(tmp_path, toy_dataset, request, model, parts):
    """SDXL: both text encoders' LoRAs and the per-picture time ids are sharded like the latents. FLUX: packed
    latents, position ids and the flow-matching noise levels are sharded too, and the CLIP encoder's LoRA is
    all-reduced like the transformer's (T5 has none)."""
    base = request.getfixturevalue(model)
    settings = dict(train_text_encoder=True, max_steps=8, save_steps=0, validation_steps=0,
                    target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    single = run_training(load_config(_config(tmp_path, toy_dataset, base, "one", batch_size=4, **settings)))
    done = _cli("--config", str(_config(tmp_path, toy_dataset, base, "two", batch_size=2, **settings)),
                "--num-processes", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    (run,) = list((tmp_path / "two").iterdir())
    lora = _lora(run)
    assert {key.split(".")[0] for key in lora} == parts
    assert _max_diff(_lora(single.run_dir), lora) <= TOLERANCE
