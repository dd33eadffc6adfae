"""Runs that die: SIGKILL after and during a checkpoint, NaN loss, out of memory, a full disk."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studio.config import load_config
from studio.train import TrainingFailed, run_training
from studio.train.run_folder import RunFolder

ROOT = Path(__file__).resolve().parents[2]


def _lora(run_dir: Path) -> dict:
    return load_file(str(run_dir / "pytorch_lora_weights.safetensors"))


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _train_cli(config_path: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "studio.py", "train", "--config", str(config_path), "--quiet", *extra],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})


def _wait_until(condition, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def straight(tmp_path_factory, tiny_sd_dir, toy_dataset):
    """The uninterrupted reference run (60 steps, a checkpoint every 5: room to kill it on a busy machine)."""
    import yaml

    folder = tmp_path_factory.mktemp("straight")
    config = {"train_data_dir": str(toy_dataset), "base_model": str(tiny_sd_dir), "resolution": 32, "batch_size": 4,
              "lora_rank": 4, "lora_alpha": 8, "learning_rate": 1e-3, "max_steps": 60, "save_steps": 5,
              "output_dir": str(folder / "out"), "output_name": "tiny", "seed": 7}
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    # Through the CLI too, so both sides run in a fresh process with the same thread settings.
    done = subprocess.run([sys.executable, "studio.py", "train", "--config", str(folder / "config.yaml"), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return next((folder / "out").glob("tiny-*")), config


@pytest.mark.parametrize("moment", ["after_checkpoint", "during_checkpoint"])
def test_sigkill_then_resume_latest_equals_uninterrupted_run(straight, tmp_path, moment):
    import yaml

    reference_dir, values = straight
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump({**values, "output_dir": str(tmp_path / "out")}))
    slow = {"LORA_STUDIO_CHECKPOINT_DELAY": "5"} if moment == "during_checkpoint" else {}
    process = _train_cli(config_path, env=slow)
    runs = lambda: list((tmp_path / "out").glob("tiny-*"))  # noqa: E731
    if moment == "after_checkpoint":
        _wait_until(lambda: runs() and len(RunFolder(runs()[0]).loss_log()) >= 7)
    else:
        _wait_until(lambda: runs() and list((runs()[0] / "checkpoints").glob(".step-000010.partial-*")))
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    run = runs()[0]
    assert json.loads((run / "run.json").read_text())["status"] == "running"  # killed: nothing could record it
    complete = [c.name for c in RunFolder(run).checkpoints()]
    if moment == "during_checkpoint":
        assert complete == ["step-000005"]  # the half-written step 10 is never listed
    else:
        assert complete and len(RunFolder(run).loss_log()) < 60

    resumed = subprocess.run([sys.executable, "studio.py", "train", "--config", str(config_path), "--quiet",
                              "--resume", "latest"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert _max_diff(_lora(reference_dir), _lora(run)) <= 1e-6
    assert [r["step"] for r in RunFolder(run).loss_log()] == list(range(1, 61))
    assert not list((run / "checkpoints").glob(".step-*")), "a half-written checkpoint folder was left behind"


def test_nan_loss_stops_keeps_last_good_checkpoint_and_says_what_to_try(write_config, tmp_path, monkeypatch):
    from studio.train import loop

    real = loop.diffusion_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] == 5 else loss

    monkeypatch.setattr(loop, "diffusion_loss", poisoned)
    with pytest.raises(TrainingFailed) as failure:
        run_training(load_config(write_config(output_dir=str(tmp_path / "n"), max_steps=10, save_steps=3)))
    message = str(failure.value)
    assert "nan" in message.lower() and "learning_rate" in message and "fp32" in message
    assert "step-000003" in message
    run = failure.value.run_dir
    assert [c.name for c in RunFolder(run).checkpoints()] == ["step-000003"]
    assert json.loads((run / "run.json").read_text())["status"] == "failed"
    assert not (run / "pytorch_lora_weights.safetensors").exists()


@pytest.mark.parametrize("raised", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried "
                 "to allocate 68719476736 bytes. Error code 12 (Cannot allocate memory)"),
])
def test_out_of_memory_is_caught_with_advice(write_config, tmp_path, monkeypatch, raised):
    from studio.train import loop

    def out_of_memory(*args, **kwargs):
        raise raised

    monkeypatch.setattr(loop, "diffusion_loss", out_of_memory)
    with pytest.raises(TrainingFailed) as failure:
        run_training(load_config(write_config(output_dir=str(tmp_path / "m"), max_steps=4)))
    message = str(failure.value)
    assert "out of memory" in message and "batch_size" in message and "gradient_checkpointing" in message


def test_full_disk_is_a_clear_error_and_leaves_no_corrupt_checkpoint(write_config, tmp_path):
    small = tmp_path / "small-disk"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(small)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        with pytest.raises(TrainingFailed) as failure:
            run_training(load_config(write_config(output_dir=str(small / "out"), max_steps=60, save_steps=2,
                                                  keep_last_n_checkpoints=0)))
        message = str(failure.value)
        assert "disk is full" in message and "output_dir" in message
        run = failure.value.run_dir
        complete = RunFolder(run).checkpoints()
        assert complete, "the first checkpoints fit and must survive"
        for checkpoint in complete:  # every listed checkpoint loads
            load_file(str(checkpoint / "adapter_state.safetensors"))
            json.loads((checkpoint / "trainer_state.json").read_text())
        assert not list((run / "checkpoints").glob(".step-*"))
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)  # lazy: a traceback may still hold a file open
