"""The studio's training job: one at a time, stop event, errors reach the page."""
from __future__ import annotations

import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from studio.jobs import JobBusy, TrainingJob, progress_line
from studio.train.events import TrainEvent


def _runner(release: threading.Event, fail: str = ""):
    def run(config, emit, should_stop):
        emit(TrainEvent("start", step=0, total_steps=100, path="/runs/x"))
        step = 0
        while not should_stop() and not release.is_set():
            step += 1
            emit(TrainEvent("step", step=step, total_steps=100, epoch=1, loss=1.0 / step, lr=1e-4, elapsed_s=step,
                            eta_s=100 - step))
            if fail and step == 3:
                raise RuntimeError(fail)
            release.wait(0.01)
        return SimpleNamespace(status="stopped" if should_stop() else "finished", step=step, run_dir=Path("/runs/x"),
                               last_checkpoint="/runs/x/checkpoints/step-1", diffusers_lora="a", webui_lora="b")
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

    from studio.service import run_status

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    assert run_status({"status": "running", "pid": int(dead.stdout), "host": host}) == "interrupted"
    assert run_status({"status": "running", "pid": os.getpid(), "host": host}) == "running"
    assert run_status({"status": "finished", "pid": int(dead.stdout), "host": host}) == "finished"
