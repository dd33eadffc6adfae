"""Training in several data-parallel processes for the studio: ``studio train --num-processes N`` as a subprocess.

The subprocess reports the very ``TrainEvent``s an in-process run emits, one JSON line each on stdout
(``--json-events``), so ``TrainingJob`` shows both kinds of run through one snapshot. Stop creates the run's stop
file (``--stop-file``), which the trainer checks after every step like the in-process stop event: all the processes
stop at the same step, after a checkpoint. A studio that exits ends the processes it started.
"""
from __future__ import annotations

import atexit
import functools
import json
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

MAX_PROCESSES_ENV = "LORA_STUDIO_MAX_PROCESSES"
PACKAGE_ROOT = Path(__file__).resolve().parent.parent  # on the subprocess's PYTHONPATH, so ``-m studio`` resolves
POLL_SECONDS = 0.2
TAIL_LINES = 200
FINAL_LORA = "pytorch_lora_weights.safetensors"


def env_max_processes() -> int | None:
    """``$LORA_STUDIO_MAX_PROCESSES`` as a number (None when unset); a clear error when it is not one."""
    text = os.environ.get(MAX_PROCESSES_ENV, "").strip()
    if not text:
        return None
    if not text.isdigit() or int(text) < 1:
        raise ValueError(f"{MAX_PROCESSES_ENV} must be a whole number of processes, 1 or more (it is {text!r}); "
                         "unset it to offer one process per GPU")
    return int(text)


def max_processes() -> int:
    """How many training processes to offer: ``$LORA_STUDIO_MAX_PROCESSES``, else one per CUDA device (at least 1)."""
    from_env = env_max_processes()
    if from_env is not None:
        return from_env
    import torch

    return max(1, torch.cuda.device_count())


@dataclass
class _Output:
    """What the subprocess said besides events: its ``error:`` messages (with their indented lines) and a tail."""

    errors: list[str] = field(default_factory=list)
    tail: deque = field(default_factory=lambda: deque(maxlen=TAIL_LINES))
    in_error: bool = False

    def add(self, line: str) -> None:
        if line.startswith("error: "):
            self.in_error = len(self.errors) < 20
            if self.in_error:
                self.errors.append(line[len("error: "):])
        elif self.in_error and line.startswith((" ", "\t")):
            self.errors[-1] += "\n" + line
        else:
            self.in_error = False
        self.tail.append(line)


def parse_event(line: str):
    """A ``TrainEvent`` from one ``--json-events`` line; None for any other line."""
    from studio.train.events import EVENT_KINDS, TrainEvent

    if not line.startswith("{"):
        return None
    try:
        values = json.loads(line)
        event = TrainEvent(**values)
    except (ValueError, TypeError):
        return None
    return event if event.kind in EVENT_KINDS else None


def _pump(stream, lines: queue.Queue, is_stdout: bool) -> None:
    for line in stream:
        lines.put((is_stdout, line.rstrip("\n")))
    lines.put(None)


def _end_group(process: subprocess.Popen) -> None:
    """At studio exit: end the launcher and its training processes (they run in their own session)."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except (AttributeError, OSError):
        process.terminate()


class ProcessRunner:
    """A ``TrainingJob`` runner, ``(config, emit, should_stop) -> RunResult``, training in ``num_processes``."""

    def __init__(self, num_processes: int, job_dir: str | Path):
        if int(num_processes) < 1:
            raise ValueError(f"the number of processes must be 1 or more, not {num_processes}")
        self.num_processes = int(num_processes)
        self.job_dir = Path(job_dir)

    def command(self, config_path: Path, stop_file: Path) -> list[str]:
        return [sys.executable, "-m", "studio", "train", "--config", str(config_path), "--num-processes",
                str(self.num_processes), "--json-events", "--stop-file", str(stop_file)]

    def write_config(self, config) -> Path:
        """The config as the subprocess reads it, relative paths made absolute (they meant this process's cwd)."""
        from studio.config import save_config

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.job_dir / f"{config.resolved_output_name()}-{stamp}.yaml"
        return save_config(config.resolve_paths(Path.cwd()), path)

    def __call__(self, config, emit, should_stop):
        from studio.train.events import TrainEvent

        config_path = self.write_config(config)
        stop_file = config_path.with_suffix(".stop")
        stop_file.unlink(missing_ok=True)
        command = self.command(config_path, stop_file)
        emit(TrainEvent("log", message=f"training in {self.num_processes} processes: {shlex.join(command)}"))
        python_path = [str(PACKAGE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                                   start_new_session=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(python_path)})
        ender = functools.partial(_end_group, process)
        atexit.register(ender)
        try:
            seen, output = _follow(process, emit, should_stop, stop_file)
        finally:
            atexit.unregister(ender)
            _end_group(process)
            stop_file.unlink(missing_ok=True)
        result = _result(config, seen, output, process.returncode)
        for message in output.errors:  # the main process got through, another one did not
            emit(TrainEvent("warning", message=f"a training process reported an error: {message}"))
        return result


def _follow(process: subprocess.Popen, emit, should_stop, stop_file: Path) -> tuple[dict, _Output]:
    """Relay the subprocess's events to ``emit`` until it exits, creating ``stop_file`` once ``should_stop()``.

    Returns the last event of each kind and the subprocess's other output.
    """
    lines: queue.Queue = queue.Queue()
    for stream, is_stdout in ((process.stdout, True), (process.stderr, False)):
        threading.Thread(target=_pump, args=(stream, lines, is_stdout), name="training-output", daemon=True).start()
    seen, output, open_streams, asked = {}, _Output(), 2, False
    while open_streams:
        if not asked and should_stop():
            stop_file.touch()
            asked = True
        try:
            item = lines.get(timeout=POLL_SECONDS)
        except queue.Empty:
            continue
        if item is None:
            open_streams -= 1
            continue
        is_stdout, line = item
        event = parse_event(line) if is_stdout else None
        if event is None:
            output.add(line)
            continue
        seen[event.kind] = event
        emit(event)
    process.wait()
    return seen, output


def _result(config, seen: dict, output: _Output, returncode: int):
    """The run's ``RunResult`` from its "done" event and ``run.json``; ``TrainingFailed`` with its error otherwise."""
    from studio.train import RunResult, TrainingFailed
    from studio.train.recorder import read_run_info

    run_dir = Path(seen["start"].path) if "start" in seen and seen["start"].path else None
    done = seen.get("done")
    if done is None or done.message not in ("finished", "stopped"):
        raise TrainingFailed(_failure(run_dir, output, returncode), run_dir)
    run_dir = Path(done.path)
    info = read_run_info(run_dir)
    result = RunResult(done.message, run_dir, done.step, done.total_steps,
                       last_checkpoint=Path(info["last_checkpoint"]) if info.get("last_checkpoint") else None)
    if done.message == "finished":
        result.diffusers_lora = run_dir / FINAL_LORA if (run_dir / FINAL_LORA).is_file() else None  # none: WebUI DoRA
        webui = run_dir / f"{config.resolved_output_name()}.safetensors"
        result.webui_lora = webui if webui.is_file() else None
    return result


def _failure(run_dir: Path | None, output: _Output, returncode: int) -> str:
    """The CLI's own ``error:`` message, else the run's recorded error, else the last lines the processes wrote."""
    if output.errors:
        return output.errors[0]
    from studio.train.recorder import read_run_info

    recorded = read_run_info(run_dir).get("error") if run_dir else None
    if recorded:
        return f"training failed: {recorded}"
    last = [line.strip() for line in output.tail if line.strip()][-3:]
    return f"the training processes exited with code {returncode}" + (f": {' / '.join(last)}" if last else "")
