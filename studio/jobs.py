"""The studio's training job: one run at a time in an in-process thread, observed through snapshots.

gradio's ``cancels=`` cannot stop a function that is already running, so the job owns the run's
``TrainingCommands`` (stop, save now, sample now), which the trainer polls after every step (OneTrainer's
callbacks/commands pair). The page polls ``snapshot()`` on a timer;
a reloaded page sees the same live run because the job lives in the service, not in the page. A failure reaches
the page as its message alone; the traceback of one that is not the user's to fix goes to ``debug_log``.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from studio.train.control import TrainingCommands
from studio.train.events import (
    CheckpointEvent, LogEvent, SampleEvent, StartEvent, StepEvent, TrainEvent, ValidationEvent, WarningEvent,
)

ACTIVE = ("starting", "running", "stopping")
MAX_LOG_LINES = 200


class JobBusy(RuntimeError):
    """A second start while a run is active."""


@dataclass(frozen=True)
class TrainingSnapshot:
    """What the Training tab shows; a copy, safe to read from any thread."""

    status: str = "idle"  # idle, starting, running, stopping, finished, stopped, failed
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None
    losses: tuple[tuple[int, float], ...] = ()
    val_losses: tuple[tuple[int, float], ...] = ()
    samples: tuple[str, ...] = ()  # PNG paths of the latest samples
    sample_step: int = 0
    logs: tuple[str, ...] = ()
    run_dir: str = ""
    last_checkpoint: str = ""
    final_lora: str = ""  # the diffusers LoRA file of a finished run
    error: str = ""
    started_at: float = 0.0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def fraction(self) -> float:
        return self.step / self.total_steps if self.total_steps else 0.0


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def progress_line(snapshot: TrainingSnapshot) -> str:
    """``step 120/400 (30 %) · epoch 3 · loss 0.1234 · elapsed 00:42 · ETA 01:38``"""
    if snapshot.status == "idle":
        return "No training yet."
    parts = [f"{snapshot.status}", f"step {snapshot.step}/{snapshot.total_steps} ({snapshot.fraction:.0%})"]
    if snapshot.epoch:
        parts.append(f"epoch {snapshot.epoch}")
    if snapshot.loss is not None:
        parts.append(f"loss {snapshot.loss:.4f}")
    parts.append(f"elapsed {_clock(snapshot.elapsed_s)}")
    if snapshot.active:
        parts.append(f"ETA {_clock(snapshot.eta_s)}")
    return " · ".join(parts)


class TrainingJob:
    """Runs ``run_training`` in a daemon thread; start/stop/save_now/sample_now/snapshot are safe from any thread.

    ``debug_log``: a file that collects the tracebacks of failures that are not the user's to fix (a bug, a crash
    in a library); without it they go to this module's logger.
    """

    def __init__(self, runner=None, debug_log: str | Path | None = None):
        self._runner = runner  # the training function; injectable for tests of the job itself
        self._debug_log = Path(debug_log) if debug_log else None
        self._lock = threading.Lock()
        self._commands = TrainingCommands()
        self._thread: threading.Thread | None = None
        self._state = TrainingSnapshot()
        self._losses: list[tuple[int, float]] = []
        self._val_losses: list[tuple[int, float]] = []
        self._logs: deque[str] = deque(maxlen=MAX_LOG_LINES)

    def snapshot(self) -> TrainingSnapshot:
        with self._lock:
            return replace(self._state, losses=tuple(self._losses), val_losses=tuple(self._val_losses),
                           logs=tuple(self._logs))

    def start(self, config, runner=None) -> None:
        """Start training ``config`` (with ``runner`` instead of the job's own when given, e.g. one training in
        several processes); raises ``JobBusy`` while another run is active."""
        with self._lock:
            if self._state.active:
                raise JobBusy(
                    f"a training run is already {self._state.status} (step {self._state.step}/"
                    f"{self._state.total_steps}); stop it or wait for it to finish before starting another"
                )
            self._commands = TrainingCommands()
            self._losses = []
            self._val_losses = []
            self._logs.clear()
            self._state = TrainingSnapshot(status="starting", started_at=time.time())
            self._logs.append("loading the model and the dataset …")
            self._thread = threading.Thread(target=self._run, args=(config, runner or self._runner),
                                            name="lora-training", daemon=True)
            self._thread.start()

    def stop(self) -> bool:
        """Ask the run to stop after the current step (a checkpoint is saved). False if nothing runs."""
        with self._lock:
            if not self._state.active:
                return False
            self._state = replace(self._state, status="stopping")
            self._logs.append("stop requested: finishing this step and saving a checkpoint …")
            self._commands.stop()
        return True

    def save_now(self) -> bool:
        """Ask the run for a checkpoint after the current step; it goes on training. False if nothing runs."""
        return self._ask(TrainingCommands.save_now, "save requested: a checkpoint follows this step …")

    def sample_now(self) -> bool:
        """Ask the run to draw its samples after the current step; it goes on training. False if nothing runs."""
        return self._ask(TrainingCommands.sample_now, "samples requested: drawn after this step …")

    def _ask(self, request, note: str) -> bool:
        with self._lock:
            if not self._state.active or self._state.status == "stopping":
                return False
            self._logs.append(note)
            request(self._commands)
        return True

    def wait(self, timeout: float | None = None) -> bool:
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _on_event(self, event: TrainEvent) -> None:
        with self._lock:
            state, logs = self._state, self._logs
            match event:
                case StartEvent():
                    state = replace(state, status="stopping" if self._commands.stop_requested else "running",
                                    step=event.step, total_steps=event.total_steps, run_dir=event.run_dir)
                    logs.append(f"run folder: {event.run_dir}")
                case ValidationEvent():
                    self._val_losses.append((event.step, float(event.val_loss)))
                case StepEvent():
                    self._losses.append((event.step, float(event.loss)))
                    if event.val_loss is not None:
                        self._val_losses.append((event.step, float(event.val_loss)))
                    state = replace(state, step=event.step, total_steps=event.total_steps, epoch=event.epoch,
                                    loss=event.loss, elapsed_s=event.elapsed_s, eta_s=event.eta_s)
                case SampleEvent():
                    state = replace(state, samples=event.paths, sample_step=event.step)
                    logs.append(f"samples at step {event.step}: {event.folder}")
                case CheckpointEvent():
                    state = replace(state, last_checkpoint=event.path)
                    logs.append(f"checkpoint saved at step {event.step}: {event.path}")
                case WarningEvent() | LogEvent():
                    logs.append(f"{event.kind}: {event.message}")
            self._state = state

    def _run(self, config, runner) -> None:
        if runner is None:
            from studio.train import run_training as runner
        try:
            result = runner(config, emit=self._on_event, commands=self._commands)
        except Exception as error:  # reaches the page as a readable message, never a silent stop
            from studio.cli import _user_errors

            message = str(error) or type(error).__name__
            users = _user_errors()  # the user's own mistake (also one that stopped a started run) needs its words only
            mine = isinstance(error, users) or isinstance(error.__cause__, users)
            details = None if mine else self._keep_traceback(message)
            with self._lock:
                run_dir = str(getattr(error, "run_dir", "") or self._state.run_dir)
                self._state = replace(self._state, status="failed", error=message, run_dir=run_dir, eta_s=None)
                self._logs.append(f"error: {message}")
                if details:
                    self._logs.append(f"the technical details are in {details}")
            return
        with self._lock:
            self._state = replace(self._state, status=result.status, step=result.step, eta_s=None,
                                  run_dir=str(result.run_dir), final_lora=str(result.diffusers_lora or ""),
                                  last_checkpoint=str(result.last_checkpoint or self._state.last_checkpoint))
            if result.status == "finished":
                self._logs.append(f"finished: {result.diffusers_lora or result.webui_lora}")
                if result.webui_lora:
                    self._logs.append(f"LoRA for ComfyUI / A1111 / Forge: {result.webui_lora}")
            else:
                self._logs.append(f"stopped at step {result.step}; Resume continues from {result.last_checkpoint}")

    def _keep_traceback(self, message: str) -> Path | None:
        """Append the failure being handled, with its traceback, to ``debug_log``; returns the file (None when
        there is no file or it cannot be written: the traceback then goes to the logger)."""
        import logging

        text = f"--- {datetime.now():%Y-%m-%d %H:%M:%S} training failed: {message}\n{traceback.format_exc()}"
        if self._debug_log is not None:
            try:
                self._debug_log.parent.mkdir(parents=True, exist_ok=True)
                with open(self._debug_log, "a", encoding="utf-8") as handle:
                    handle.write(text)
                return self._debug_log
            except OSError:
                pass
        logging.getLogger(__name__).error("%s", text)
        return None
