"""The studio's training: ``studio.training`` starts a run from the Training tab's YAML (in this process, or in
several through :mod:`studio.app.processes`), and its :class:`TrainingJob` runs one at a time in a thread.

gradio's ``cancels=`` cannot stop a function that is already running, so the job owns the run's
``TrainingCommands`` (stop, save now, sample now), which the trainer polls after every step (OneTrainer's
callbacks/commands pair). The page polls ``snapshot()`` on a timer; a reloaded page sees the same live run because
the job lives in the studio, not in the page. A failure reaches the page as its message alone; the traceback of
one that is not the user's to fix goes to the debug log.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from studio.app.background import BackgroundJob
from studio.app.errors import DebugLog, JobBusy, is_user_error
from studio.train.control import TrainingCommands
from studio.train.events import (
    CheckpointEvent, LogEvent, SampleEvent, StartEvent, StepEvent, TrainEvent, ValidationEvent, WarningEvent,
)
from studio.train.user_errors import user_errors

if TYPE_CHECKING:
    from studio.app.access import Access
    from studio.app.configs import Configs

ACTIVE = ("starting", "running", "stopping")
MAX_LOG_LINES = 200

__all__ = ["JobBusy", "Training", "TrainingJob", "TrainingSnapshot", "progress_line"]


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


class TrainingJob(BackgroundJob[TrainingSnapshot]):
    """Runs ``run_training`` in a daemon thread; start/stop/save_now/sample_now/snapshot are safe from any thread.

    ``runner``: the training function, ``(config, emit, commands) -> RunResult`` (injectable for tests of the job
    itself); ``debug_log``: where the tracebacks of failures that are not the user's to fix go.
    """

    thread_name = "lora-training"
    what = "training"

    def __init__(self, runner=None, debug_log: DebugLog | str | Path | None = None):
        super().__init__(TrainingSnapshot(), debug_log)
        self._runner = runner
        self._commands = TrainingCommands()
        self._losses: list[tuple[int, float]] = []
        self._val_losses: list[tuple[int, float]] = []
        self._logs: deque[str] = deque(maxlen=MAX_LOG_LINES)

    @property
    def user_errors(self) -> tuple[type[BaseException], ...]:  # the training side's, imported when one fails
        return user_errors()

    def snapshot(self) -> TrainingSnapshot:
        """The state with the loss curves and the log so far."""
        with self._lock:
            return replace(self._state, losses=tuple(self._losses), val_losses=tuple(self._val_losses),
                           logs=tuple(self._logs))

    state = snapshot

    def start(self, config, runner=None) -> None:
        """Start training ``config`` (with ``runner`` instead of the job's own when given, e.g. one training in
        several processes); raises ``JobBusy`` while another run is active."""
        self._launch(TrainingSnapshot(status="starting", started_at=time.time()), config, runner or self._runner)

    def stop(self) -> bool:
        """Ask the run to stop after the current step (a checkpoint is saved). False if nothing runs."""
        return self._request_stop()

    def save_now(self) -> bool:
        """Ask the run for a checkpoint after the current step; it goes on training. False if nothing runs."""
        return self._ask(TrainingCommands.save_now, "save requested: a checkpoint follows this step …")

    def sample_now(self) -> bool:
        """Ask the run to draw its samples after the current step; it goes on training. False if nothing runs."""
        return self._ask(TrainingCommands.sample_now, "samples requested: drawn after this step …")

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the run to end; whether it has."""
        return self.join(timeout)

    def _ask(self, request, note: str) -> bool:
        with self._lock:
            if not self._state.active or self._state.status == "stopping":
                return False
            self._logs.append(note)
            request(self._commands)
        return True

    def _busy(self, state: TrainingSnapshot) -> JobBusy:
        return JobBusy(f"a training run is already {state.status} (step {state.step}/{state.total_steps}); stop it "
                       "or wait for it to finish before starting another")

    def _started(self) -> None:
        self._commands = TrainingCommands()
        self._losses = []
        self._val_losses = []
        self._logs.clear()
        self._logs.append("loading the model and the dataset …")

    def _stopped(self) -> None:
        self._logs.append("stop requested: finishing this step and saving a checkpoint …")
        self._commands.stop()

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

    def _work(self, config, runner) -> None:
        if runner is None:
            from studio.train import run_training as runner
        try:
            result = runner(config, emit=self._on_event, commands=self._commands)
        except Exception as error:  # reaches the page as a readable message, never a silent stop
            self._failed(error)
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

    def _failed(self, error: Exception) -> None:
        """The failure being handled: its message on the page; the traceback of one that is not the user's (also
        one that stopped a started run) in the debug log."""
        message = str(error) or type(error).__name__
        details = None if is_user_error(error, self.user_errors) else self.debug_log.keep(self.what, message)
        with self._lock:
            run_dir = str(getattr(error, "run_dir", "") or self._state.run_dir)
            self._state = replace(self._state, status="failed", error=message, run_dir=run_dir, eta_s=None)
            self._logs.append(f"error: {message}")
            if details:
                self._logs.append(f"the technical details are in {details}")


class Training:
    """``studio.training``: runs of the page's config, one at a time. ``job`` runs them; ``jobs_dir`` holds the
    configs handed to the processes of a run in several."""

    def __init__(self, configs: Configs, access: Access, jobs_dir: Path, debug_log: DebugLog | str | Path):
        self.configs, self.access, self.jobs_dir = configs, access, jobs_dir
        self.job = TrainingJob(debug_log=debug_log)

    def start(self, yaml_text: str, resume: bool = False, num_processes: int = 1) -> None:
        """Train the YAML's config (its paths confined to what this user may use) in this process, or
        (``num_processes`` > 1) data-parallel in that many subprocesses; ``resume``: from its latest checkpoint."""
        from studio.app.confine import confine_config

        config = confine_config(self.configs.parse(yaml_text), self.access)
        if resume:
            config = self.configs.changed(config, resume="latest")
        runner = None
        if int(num_processes or 1) > 1:
            from studio.app.processes import ProcessRunner

            runner = ProcessRunner(int(num_processes), self.jobs_dir)
        self.job.start(config, runner=runner)

    def snapshot(self) -> TrainingSnapshot:
        return self.job.snapshot()

    def stop(self) -> bool:
        return self.job.stop()

    def save_now(self) -> bool:
        return self.job.save_now()

    def sample_now(self) -> bool:
        return self.job.sample_now()

    def wait(self, timeout: float | None = None) -> bool:
        return self.job.wait(timeout)
