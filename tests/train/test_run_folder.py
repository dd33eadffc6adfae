"""A run folder's layout, read through ``RunFolder``: what a finished run holds, listing, status and lookup."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from studio.config import load_config
from studio.train import run_training
from studio.train.run_folder import STATE_FILE, RunFolder, checkpoint_lora_step, run_status


def test_a_finished_run_holds_what_its_run_folder_names(write_config, tmp_path):
    result = run_training(load_config(write_config(output_dir=str(tmp_path / "out"), max_steps=4, save_steps=2,
                                                   sample_steps=4, validation_prompts=["a red star"])))
    folder = RunFolder(result.run_dir)
    assert folder.is_run() and folder.config_file.is_file() and folder.logs_dir.is_dir()
    assert folder.status() == "finished" and folder.info()["step"] == 4
    assert [r["step"] for r in folder.loss_log()] == [1, 2, 3, 4]
    assert folder.checkpoints() == [folder.checkpoint_dir(2)]
    assert folder.checkpoint_loras() == [(2, folder.checkpoint_dir(2) / folder.diffusers_lora.name)]
    assert folder.final_files("tiny") == (result.diffusers_lora, result.webui_lora) == (
        folder.diffusers_lora, folder.webui_lora("tiny"))
    assert sorted(p.name for p in folder.samples_dir(4).glob("*.png")), "the samples of step 4"
    assert not folder.lock_file.exists(), "the lock goes when the run ends"
    assert RunFolder.runs_named(tmp_path / "out", "tiny") == [folder] == RunFolder.all_under(tmp_path / "out")
    assert RunFolder.containing(folder.checkpoint_dir(2) / "tiny.safetensors") == folder
    assert RunFolder.containing(result.diffusers_lora) == folder and RunFolder.containing(tmp_path) is None
    assert checkpoint_lora_step(folder.checkpoint_dir(2) / "tiny.safetensors") == 2
    assert checkpoint_lora_step(result.webui_lora) is None


def test_a_checkpoint_still_being_written_is_not_listed(tmp_path):
    folder = RunFolder(tmp_path / "run")
    complete, partial = folder.checkpoint_dir(10), folder.checkpoints_dir / ".step-000020.partial-123"
    for checkpoint in (complete, partial, folder.checkpoint_dir(30)):
        checkpoint.mkdir(parents=True)
    (complete / STATE_FILE).write_text("{}")
    (partial / STATE_FILE).write_text("{}")
    assert folder.checkpoints() == [complete]  # step 30 has no trainer state yet


def test_a_running_run_whose_process_is_gone_reads_as_interrupted(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folder = RunFolder(tmp_path)
    folder.run_file.write_text(json.dumps({"status": "running", "pid": int(dead.stdout), "host": socket.gethostname()}))
    assert folder.status() == "interrupted"
    assert run_status({"status": "running", "pid": os.getpid(), "host": socket.gethostname()}) == "running"
    assert run_status({"status": "running", "pid": 1, "host": "another-machine"}) == "running"
    assert RunFolder(tmp_path / "none").status() == "unknown" and RunFolder(tmp_path / "none").loss_log() == []
