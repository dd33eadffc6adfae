"""The studio's Start with 2 processes (gloo on a CPU): the same snapshot as an in-process run, Stop and failures."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from studio.app import Studio
from studio.app.processes import MAX_PROCESSES_ENV, env_max_processes, max_processes
from studio.train.run_folder import RunFolder, checkpoint_step


def _yaml(studio: Studio, toy_dataset, tiny_sd_dir, **values) -> str:
    settings = {"train_data_dir": str(toy_dataset), "base_model": str(tiny_sd_dir), "resolution": 32,
                "batch_size": 2, "lora_rank": 4, "learning_rate": 1e-3, "max_steps": 16, "save_steps": 0,
                "validation_steps": 8, "sample_steps": 8, "validation_prompts": ["a red star"],
                "output_name": "duo", "seed": 7, **values}
    return studio.configs.yaml_with(studio.configs.yaml(studio.configs.default()), settings)


def _wait_for(condition, timeout: float = 120) -> None:
    started = time.time()
    while not condition():
        assert time.time() - started < timeout, "timed out"
        time.sleep(0.1)


def test_two_processes_stop_mid_run_then_resume_to_the_end(tmp_path, toy_dataset, tiny_sd_dir):
    studio = Studio(tmp_path / "workspace")
    text = _yaml(studio, toy_dataset, tiny_sd_dir)
    studio.training.start(text, num_processes=2)
    _wait_for(lambda: studio.training.snapshot().step >= 2)
    assert studio.training.stop()
    assert studio.training.wait(120)
    stopped = studio.training.snapshot()
    assert stopped.status == "stopped", stopped.error
    assert 2 <= stopped.step < 16 and Path(stopped.last_checkpoint).is_dir(), "a checkpoint at the stop"
    assert [run.status for run in studio.runs.list()] == ["stopped"]
    assert "error" not in "\n".join(stopped.logs), "every process stops cleanly"

    studio.training.start(text, resume=True, num_processes=2)
    assert studio.training.wait(180)
    done = studio.training.snapshot()
    assert done.status == "finished", done.error
    assert [step for step, _ in done.losses] == list(range(stopped.step + 1, 17)), "every step's loss came through"
    assert [step for step, _ in done.val_losses][-1] == 16 and done.sample_step == 16
    assert done.samples and all(Path(p).is_file() for p in done.samples)
    logs = "\n".join(done.logs)
    assert "effective batch 4: 2 per process x 2 process(es) x 1 accumulation" in logs
    assert "--num-processes 2" in logs and "finished:" in logs
    runs = studio.runs.list()
    assert len(runs) == 1 and runs[0].status == "finished" and runs[0].final_lora is not None, "one run folder"
    assert len(list(studio.output_dir.glob("*/*/pytorch_lora_weights.safetensors"))) == 1, "one final LoRA"
    assert not list((studio.workspace / "jobs").glob("*.stop")), "the stop file is cleared"


def test_save_now_and_sample_now_reach_both_processes_through_the_command_file(tmp_path, toy_dataset, tiny_sd_dir):
    studio = Studio(tmp_path / "workspace")
    studio.training.start(_yaml(studio, toy_dataset, tiny_sd_dir, max_steps=400, validation_steps=0, sample_steps=0),
                          num_processes=2)
    _wait_for(lambda: studio.training.snapshot().step >= 2)
    assert studio.training.save_now() and studio.training.sample_now()
    _wait_for(lambda: studio.training.snapshot().last_checkpoint and studio.training.snapshot().sample_step)
    assert studio.training.stop() and studio.training.wait(120)
    snapshot = studio.training.snapshot()
    assert snapshot.status == "stopped", snapshot.error
    saved = [path for path in RunFolder(snapshot.run_dir).checkpoints() if str(path) != snapshot.last_checkpoint]
    assert len(saved) == 1 and 2 <= checkpoint_step(saved[0]) < snapshot.step, "Save now's checkpoint, once"
    assert snapshot.samples and all(Path(p).is_file() for p in snapshot.samples)
    assert "error" not in "\n".join(snapshot.logs), "every process did the same at the same step"
    assert not list((studio.workspace / "jobs").glob("*.commands")), "the command file is cleared"


def test_a_failure_in_the_processes_reaches_the_snapshot(tmp_path, tiny_sd_dir):
    studio = Studio(tmp_path / "workspace")
    missing = tmp_path / "no-such-dataset"
    missing.mkdir()
    studio.training.start(_yaml(studio, missing, tiny_sd_dir), num_processes=2)
    assert studio.training.wait(120)
    failed = studio.training.snapshot()
    assert failed.status == "failed"
    assert "metadata.csv" in failed.error and "exited with code" not in failed.error, failed.error


def test_the_number_of_processes_offered(monkeypatch):
    monkeypatch.setenv(MAX_PROCESSES_ENV, "3")
    assert env_max_processes() == 3 and max_processes() == 3
    monkeypatch.setenv(MAX_PROCESSES_ENV, "two")
    with pytest.raises(ValueError, match=f"{MAX_PROCESSES_ENV} must be a whole number"):
        env_max_processes()
    monkeypatch.delenv(MAX_PROCESSES_ENV)
    assert env_max_processes() is None and max_processes() >= 1
