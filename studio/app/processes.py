"""Training in several data-parallel processes for the studio: ``studio train --num-processes N`` as a subprocess.

The subprocess reports the very events an in-process run emits, one JSON line each on stdout (``--json-events``),
so ``TrainingJob`` shows both kinds of run through one snapshot. The job's commands reach the processes through
files the trainer reads after every step: Stop creates the run's stop file (``--stop-file``); Save now and Sample
now each append a line to its command file (``--command-file``), which the main process reads and shares with the
others, so all of them stop, save or draw at the same step. A studio that exits ends the processes it started.
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

from studio.train.control import SAMPLE, SAVE, TrainingCommands, append_command
from studio.train.events import DoneEvent, LogEvent, StartEvent, TrainEvent, WarningEvent, event_from_dict
from studio.util.paths import repo_root

MAX_PROCESSES_ENV = "LORA_STUDIO_MAX_PROCESSES"
POLL_SECONDS = 0.2
TAIL_LINES = 200


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


def parse_event(line: str) -> TrainEvent | None:
    """The event of one ``--json-events`` line; None for any other line."""
    if not line.startswith("{"):
        return None
    try:
        return event_from_dict(json.loads(line))
    except (ValueError, TypeError):
        return None


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
    """A ``TrainingJob`` runner, ``(config, emit, commands) -> RunResult``, training in ``num_processes``."""

    def __init__(self, num_processes: int, job_dir: str | Path):
        if int(num_processes) < 1:
            raise ValueError(f"the number of processes must be 1 or more, not {num_processes}")
        self.num_processes = int(num_processes)
        self.job_dir = Path(job_dir)

    def command(self, config_path: Path, stop_file: Path, command_file: Path) -> list[str]:
        return [sys.executable, "-m", "studio", "train", "--config", str(config_path), "--num-processes",
                str(self.num_processes), "--json-events", "--stop-file", str(stop_file),
                "--command-file", str(command_file)]

    def write_config(self, config) -> Path:
        """The config as the subprocess reads it, relative paths made absolute (they meant this process's cwd)."""
        from studio.config import save_config

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        path = self.job_dir / f"{config.resolved_output_name()}-{stamp}.yaml"
        return save_config(config.resolve_paths(Path.cwd()), path)

    def __call__(self, config, emit, commands: TrainingCommands):
        config_path = self.write_config(config)
        files = _CommandFiles(config_path.with_suffix(".stop"), config_path.with_suffix(".commands"))
        files.clear()
        command = self.command(config_path, files.stop, files.requests)
        emit(LogEvent(message=f"training in {self.num_processes} processes: {shlex.join(command)}"))
        python_path = [str(repo_root()), *filter(None, [os.environ.get("PYTHONPATH")])]  # so ``-m studio`` resolves
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(python_path)}
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1,
                                   start_new_session=True, env=environment)
        ender = functools.partial(_end_group, process)
        atexit.register(ender)
        try:
            seen, output = _follow(process, emit, functools.partial(files.forward, commands))
        finally:
            atexit.unregister(ender)
            _end_group(process)
            files.clear()
        result = _result(config, seen, output, process.returncode)
        for message in output.errors:  # the main process got through, another one did not
            emit(WarningEvent(message=f"a training process reported an error: {message}"))
        return result


@dataclass
class _CommandFiles:
    """The files the training processes read the job's commands from (``--stop-file``, ``--command-file``)."""

    stop: Path
    requests: Path
    stop_sent: bool = False

    def forward(self, commands: TrainingCommands) -> None:
        """Pass on what ``commands`` was asked since the last call."""
        asked = commands.take()
        if asked.stop and not self.stop_sent:
            self.stop.touch()
            self.stop_sent = True
        for wanted, line in ((asked.save, SAVE), (asked.sample, SAMPLE)):
            if wanted:
                append_command(self.requests, line)

    def clear(self) -> None:
        self.stop.unlink(missing_ok=True)
        self.requests.unlink(missing_ok=True)


def _follow(process: subprocess.Popen, emit, forward_commands) -> tuple[dict, _Output]:
    """Relay the subprocess's events to ``emit`` until it exits, calling ``forward_commands()`` in between.

    Returns the last event of each type and the subprocess's other output.
    """
    lines: queue.Queue = queue.Queue()
    for stream, is_stdout in ((process.stdout, True), (process.stderr, False)):
        threading.Thread(target=_pump, args=(stream, lines, is_stdout), name="training-output", daemon=True).start()
    seen, output, open_streams = {}, _Output(), 2
    while open_streams:
        forward_commands()
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
        seen[type(event)] = event
        emit(event)
    process.wait()
    return seen, output


def _result(config, seen: dict, output: _Output, returncode: int):
    """The run's ``RunResult`` from its "done" event and ``run.json``; ``TrainingFailed`` with its error otherwise."""
    from studio.train import RunResult, TrainingFailed
    from studio.train.run_folder import RunFolder

    start = seen.get(StartEvent)
    run_dir = Path(start.run_dir) if start is not None and start.run_dir else None
    done = seen.get(DoneEvent)
    if done is None or done.status not in ("finished", "stopped"):
        raise TrainingFailed(_failure(run_dir, output, returncode), run_dir)
    folder = RunFolder(done.run_dir)
    info = folder.info()
    result = RunResult(done.status, folder.path, done.step, done.total_steps,
                       last_checkpoint=Path(info["last_checkpoint"]) if info.get("last_checkpoint") else None)
    if done.status == "finished":  # no diffusers file for a WebUI-axis DoRA
        result.diffusers_lora, result.webui_lora = folder.final_files(config.resolved_output_name())
    return result


def _failure(run_dir: Path | None, output: _Output, returncode: int) -> str:
    """The CLI's own ``error:`` message, else the run's recorded error, else the last lines the processes wrote."""
    if output.errors:
        return output.errors[0]
    from studio.train.run_folder import RunFolder

    recorded = RunFolder(run_dir).info().get("error") if run_dir else None
    if recorded:
        return f"training failed: {recorded}"
    last = [line.strip() for line in output.tail if line.strip()][-3:]
    return f"the training processes exited with code {returncode}" + (f": {' / '.join(last)}" if last else "")
