"""The studio's training job: one at a time, stop event, errors reach the page."""
from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from studio.app.training import JobBusy, TrainingJob, progress_line
from studio.train.events import StartEvent, StepEvent


def _runner(release: threading.Event, fail: str = ""):
    def run(config, emit, commands):
        emit(StartEvent(step=0, total_steps=100, run_dir="/runs/x"))
        step = 0
        while not commands.stop_requested and not release.is_set():
            step += 1
            emit(StepEvent(step=step, total_steps=100, epoch=1, loss=1.0 / step, lr=1e-4, elapsed_s=step,
                           eta_s=100 - step))
            if fail and step == 3:
                raise RuntimeError(fail)
            release.wait(0.01)
        return SimpleNamespace(status="stopped" if commands.stop_requested else "finished", step=step,
                               run_dir=Path("/runs/x"), last_checkpoint="/runs/x/checkpoints/step-1",
                               diffusers_lora="a", webui_lora="b")
    return run


def test_second_start_is_refused_while_running_and_stop_ends_the_run():
    release = threading.Event()
    job = TrainingJob(runner=_runner(release))
    job.start(config=None)
    with pytest.raises(JobBusy, match="already"):
        job.start(config=None)
    while not job.snapshot().losses:
        release.wait(0.01)
    assert job.stop() is True
    assert job.wait(10)
    snapshot = job.snapshot()
    assert snapshot.status == "stopped" and snapshot.losses and snapshot.run_dir == "/runs/x"
    assert "stopped at step" in snapshot.logs[-1]
    job.start(config=None)  # a new run may start once the last one ended
    release.set()
    assert job.wait(10) and job.snapshot().status == "finished"


def test_an_error_in_the_thread_reaches_the_snapshot_as_a_message():
    job = TrainingJob(runner=_runner(threading.Event(), fail="CUDA out of memory"))
    job.start(config=None)
    assert job.wait(10)
    snapshot = job.snapshot()
    assert snapshot.status == "failed" and "out of memory" in snapshot.error
    assert "failed" in progress_line(snapshot)


def test_a_run_whose_process_died_is_shown_as_interrupted_not_running():
    import os
    import socket
    import subprocess
    import sys

    from studio.train.run_folder import run_status

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    assert run_status({"status": "running", "pid": int(dead.stdout), "host": host}) == "interrupted"
    assert run_status({"status": "running", "pid": os.getpid(), "host": host}) == "running"
    assert run_status({"status": "finished", "pid": int(dead.stdout), "host": host}) == "finished"


def test_a_crash_shows_its_message_and_keeps_the_traceback_in_the_debug_log(tmp_path):
    debug_log = tmp_path / "logs" / "training-errors.log"
    job = TrainingJob(runner=_runner(threading.Event(), fail="mat1 and mat2 shapes cannot be multiplied"),
                      debug_log=debug_log)
    job.start(config=None)
    assert job.wait(10)
    logs = "\n".join(job.snapshot().logs)
    assert "error: mat1 and mat2 shapes cannot be multiplied" in logs
    assert f"the technical details are in {debug_log}" in logs
    assert "Traceback" not in logs and "raise " not in logs and 'File "' not in logs
    kept = debug_log.read_text(encoding="utf-8")
    assert "training failed: mat1 and mat2" in kept and "raise RuntimeError(fail)" in kept


def _undecodable_png(path: Path) -> None:
    """A PNG whose chunks and checksums are intact (the check before training passes) but whose pixels are not."""
    import io
    import struct
    import zlib

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 40, 60)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    start = data.find(b"IDAT")
    length = struct.unpack(">I", data[start - 4:start])[0]
    for index in range(start + 6, start + 4 + length):
        data[index] ^= 0x5A
    data[start + 4 + length:start + 8 + length] = struct.pack(">I", zlib.crc32(bytes(data[start:start + 4 + length])))
    path.write_bytes(bytes(data))


def test_a_picture_that_cannot_be_decoded_mid_run_is_told_in_words_without_python(tmp_path, tiny_sd_dir):
    import csv
    import shutil

    from studio.config import load_config

    folder = tmp_path / "data"
    shutil.copytree(Path(__file__).resolve().parent.parent / "assets" / "demo-datasets" / "star", folder)
    _undecodable_png(folder / "broken.png")
    with open(folder / "metadata.csv", "a", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerow(["broken.png", "a red zq star on a white background"])
    config = load_config({"train_data_dir": str(folder), "base_model": str(tiny_sd_dir), "resolution": 32,
                          "batch_size": 7, "max_steps": 3, "cache_latents": False, "output_dir": str(tmp_path / "out")})
    job = TrainingJob()
    job.start(config)
    assert job.wait(300)
    snapshot = job.snapshot()
    logs = "\n".join(snapshot.logs)
    assert snapshot.status == "failed" and f"{folder / 'broken.png'}: cannot be decoded" in logs
    assert "delete its row. No checkpoint was written yet." in logs
    for internal in ("Traceback", "raise ", "DatasetError", "DatasetProblem", "TrainingFailed", "technical details"):
        assert internal not in logs, (internal, logs)
