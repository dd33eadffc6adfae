"""One training run end to end, as a ``TrainingRun``: prepare, then step / checkpoint / sample, then finish or fail.

``run_training`` is what the CLI and the studio call; the run reports through ``emit`` and, after every step,
does what ``commands`` asks (stop, save now, sample now). A run folder is written by one run at a time
(``lock.py``): a second run on it is refused before the model loads.
"""
from __future__ import annotations

import logging
import math
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoint import prune_checkpoints, remove_leftover_temps, save_checkpoint
from .control import TrainingCommands
from .events import (
    CheckpointEvent, DoneEvent, Emit, LogEvent, SampleEvent, StartEvent, StepEvent, ValidationEvent, WarningEvent,
    ignore_event,
)
from .lock import RunLock, lock_for_all_processes
from .recorder import RunRecorder
from .resume import checkpoint_under_lock, restore, resume_point
from .run_folder import RunFolder

if TYPE_CHECKING:
    from studio.config import TrainConfig

    from .samples import SampleRenderer
    from .setup import TrainingSetup

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    status: str  # "finished" or "stopped"
    run_dir: Path | None  # None only on the processes of a new multi-process run other than the main one
    step: int
    total_steps: int
    diffusers_lora: Path | None = None
    webui_lora: Path | None = None
    last_checkpoint: Path | None = None


class TrainingFailed(RuntimeError):
    """The run started but could not finish; ``run_dir`` keeps what was saved before the failure."""

    def __init__(self, message: str, run_dir: Path | None) -> None:
        super().__init__(message)
        self.run_dir = run_dir


def run_training(config: TrainConfig, emit: Emit = ignore_event,
                 commands: TrainingCommands | None = None) -> RunResult:
    """Train the LoRA described by ``config``; raises ``TrainingFailed`` (or a config/data error before start).

    ``RunLocked`` (another process trains the run folder to resume) comes before the model loads.
    """
    return TrainingRun(config, emit, commands).run()


class TrainingRun:
    """The life of one run. ``run()`` calls, in order: ``prepare``; ``step`` for every step, with ``checkpoint``
    and ``sample`` when they are due or asked for; ``finish``, or ``fail`` when something breaks after the start.
    """

    def __init__(self, config: TrainConfig, emit: Emit = ignore_event,
                 commands: TrainingCommands | None = None) -> None:
        self.config = config
        self.emit = emit
        self.commands = commands or TrainingCommands()
        self.setup: TrainingSetup | None = None
        self.folder: RunFolder | None = None  # None on the other processes of a new multi-process run
        self.lock: RunLock | None = None
        self.recorder: RunRecorder | None = None
        self.renderer: SampleRenderer | None = None
        self.start_step = 0
        self.step_done = 0  # the last step trained
        self.epoch = 0  # of the last step trained, counted from 1 (0 before the first)
        self.sampled_at = -1  # the step whose samples were drawn last
        self.last_checkpoint: Path | None = None
        self.started_at = 0.0  # when this session's first step began (for the ETA)

    @property
    def main(self) -> bool:
        return self.setup is not None and self.setup.accelerator.is_main_process

    # -- the run as a whole ---------------------------------------------------------------------------------
    def run(self) -> RunResult:
        import torch

        threads_before = torch.get_num_threads()  # the run picks its own count (threads.py); the process gets it back
        try:
            self.prepare()
            self._announce()
            try:
                if self.setup.validator is not None:
                    self._validation_at_start()
                return self.finish(self._train())
            except Exception as error:  # the run folder keeps the reason; the caller gets one readable message
                raise self.fail(error) from error
        finally:
            torch.set_num_threads(threads_before)
            if self.lock is not None:
                self.lock.release()

    def _train(self) -> str:
        """Every step from ``start_step`` on, doing what was asked after each; "finished" or "stopped"."""
        from .loop import agreed

        setup = self.setup
        self.started_at = time.time()
        for step in range(self.start_step, setup.total_steps):
            event = self.step(step)
            asked = agreed(setup, self.commands.take())
            if asked.sample and self.sampled_at != event.step:
                self.sample(event.step)
            if event.step == setup.total_steps:
                break  # the final files are the last save
            if asked.stop or asked.save or self._save_due(event.step):
                self.checkpoint(event.step)
            if asked.stop:
                return "stopped"
        return "finished"

    # -- the parts ----------------------------------------------------------------------------------------
    def prepare(self) -> None:
        """Find what to resume, take the run folder, build the setup, restore the checkpoint, open the records.

        The errors here are the user's to fix (config, data, model, a busy run folder); nothing is recorded.
        """
        from .setup import build_setup

        config = self.config
        folder, resume_from = resume_point(config)
        if folder:
            self.lock = lock_for_all_processes(folder.path, self._warn)
            resume_from = checkpoint_under_lock(config, folder, resume_from)
            if self.lock:
                self._clean_leftovers(folder)
        self.setup = setup = build_setup(config, warn=self._warn, note=self._note)  # errors come before any folder
        self.start_step = self.step_done = restore(setup, resume_from) if resume_from else 0
        if resume_from and self.lock:
            prune_checkpoints(folder.path, 0)  # only clears half-written folders a killed run left behind
        if folder is None and self.main:
            folder = self._new_run_folder()
        self.folder, self.last_checkpoint = folder, resume_from
        self.recorder = self._open_recorder(resume_from)
        if self.main and config.validation_prompts:
            from .samples import SampleRenderer

            self.renderer = SampleRenderer(setup, folder)

    def step(self, step: int) -> StepEvent:
        """Train step ``step + 1``, score it when validation is due, record and report it, draw due samples."""
        from .loop import NonFiniteLoss, optimizer_step

        setup, config = self.setup, self.config
        loss, epoch = optimizer_step(setup, step)
        if not math.isfinite(loss):
            raise NonFiniteLoss(step + 1, loss)
        number = self.step_done = step + 1
        self.epoch = epoch + 1
        validate = config.validation_steps and (number == setup.total_steps or number % config.validation_steps == 0)
        elapsed = time.time() - self.started_at
        event = StepEvent(step=number, total_steps=setup.total_steps, epoch=self.epoch, loss=loss,
                          val_loss=setup.validation_loss() if validate else None,
                          lr=setup.lr_scheduler.get_last_lr()[0], elapsed_s=elapsed,
                          eta_s=elapsed / (number - self.start_step) * (setup.total_steps - number))
        self.recorder.step(event)
        self.emit(event)
        if self.renderer and config.sample_steps and (number % config.sample_steps == 0 or number == setup.total_steps):
            self.sample(number)
        return event

    def checkpoint(self, step: int) -> Path | None:
        """Write checkpoint ``step`` (the main process writes; every process takes part in the call)."""
        from .export import lora_states, write_checkpoint_loras

        if not self.main:
            return None
        setup = self.setup
        unet_state, text_states = lora_states(setup)
        adapters = {f"{setup.components.family.denoiser_name}.{k}": v for k, v in unet_state.items()}
        for name, state in text_states.items():
            adapters.update({f"{name}.{k}": v for k, v in state.items()})
        path = save_checkpoint(self.folder.path, setup, step, self.epoch - 1,
                               lambda target: write_checkpoint_loras(target, setup), adapters)
        prune_checkpoints(self.folder.path, self.config.keep_last_n_checkpoints)
        self.last_checkpoint = path
        self.recorder.update(step=step, last_checkpoint=str(path))
        self.emit(CheckpointEvent(step=step, total_steps=setup.total_steps, epoch=self.epoch, path=str(path)))
        return path

    def sample(self, step: int) -> None:
        """Draw the sample prompts at ``step`` into the run folder (main process; needs sample prompts)."""
        if not self.main:
            return
        if self.renderer is None:
            self._warn("sample now: the config has no sample prompts (validation_prompts); nothing to draw")
            return
        paths = self.renderer.render(step)
        self.sampled_at = step
        self.recorder.samples(step, paths)
        self.emit(SampleEvent(step=step, total_steps=self.setup.total_steps, paths=tuple(str(p) for p in paths)))

    def finish(self, status: str) -> RunResult:
        """Write the final files of a finished run, record how it ended, report "done"."""
        from .export import write_final_files

        setup, folder = self.setup, self.folder
        run_dir = folder.path if folder else None
        result = RunResult(status, run_dir, self.step_done, setup.total_steps, last_checkpoint=self.last_checkpoint)
        if status == "finished" and self.main:
            result.diffusers_lora, result.webui_lora = write_final_files(
                run_dir, setup, self.recorder.info, setup.total_steps, self.epoch, self._warn,
                lambda message: self.emit(LogEvent(message=message)))
        self.recorder.update(status=status, step=result.step, finished_at=time.time())
        self.recorder.close()
        self.emit(DoneEvent(step=result.step, total_steps=setup.total_steps, status=status,
                            run_dir=str(run_dir or "")))
        return result

    def fail(self, error: Exception) -> TrainingFailed:
        """Record ``error`` in the run folder, in words a user can act on; the exception to raise (call it from
        the ``except`` that caught ``error``: its traceback goes to ``run.json``)."""
        from .failures import describe_failure

        message = describe_failure(error, self.config, self.last_checkpoint)
        self.recorder.update(status="failed", error=message, traceback=traceback.format_exc())
        self.recorder.close()
        return TrainingFailed(f"training failed: {message}", self.folder.path if self.folder else None)

    # -- helpers ------------------------------------------------------------------------------------------
    def _save_due(self, step: int) -> bool:
        return bool(self.config.save_steps) and step % self.config.save_steps == 0

    def _validation_at_start(self) -> None:
        setup = self.setup
        event = ValidationEvent(step=self.start_step, total_steps=setup.total_steps, val_loss=setup.validation_loss())
        self.recorder.validation(event)
        self.emit(event)

    def _warn(self, message: str) -> None:
        log.warning(message)
        self.emit(WarningEvent(message=message))

    def _note(self, message: str) -> None:
        log.info(message)
        self.emit(LogEvent(message=message))

    def _clean_leftovers(self, folder: RunFolder) -> None:
        """Temporary files of writes a killed run never finished (this run holds the folder's lock)."""
        removed = remove_leftover_temps(folder.path)
        if removed:
            self._note(f"removed {len(removed)} leftover temporary file(s) of an interrupted write from {folder.path}")

    def _new_run_folder(self) -> RunFolder:
        """A timestamped run folder, locked, holding the config snapshot (with the effective batch as a comment)."""
        from studio.config import dump_config
        from studio.util.fs import atomic_write_text

        config, setup = self.config, self.setup
        folder = RunFolder.create(config.output_dir, config.resolved_output_name())
        self.lock = RunLock(folder.path, self._warn).acquire()
        note = (f"# effective batch: {config.batch_size} per process x {setup.accelerator.num_processes} "
                f"process(es) x {config.gradient_accumulation_steps} accumulation = {setup.effective_batch}\n")
        atomic_write_text(folder.config_file, dump_config(config) + note)
        return folder

    def _open_recorder(self, resume_from: Path | None) -> RunRecorder:
        setup = self.setup
        recorder = RunRecorder(self.folder, self.start_step, enabled=self.main)
        recorder.info.setdefault("session_id", uuid.uuid4().hex)
        recorder.info.setdefault("started_at", time.time())
        recorder.update(status="running", step=self.start_step, total_steps=setup.total_steps, error=None,
                        num_processes=setup.accelerator.num_processes, effective_batch=setup.effective_batch,
                        prior_images=setup.prior_count, prior_folder=setup.prior_folder or None,
                        cpu_threads=setup.threads.count if setup.threads else None,
                        resumed_from=str(resume_from) if resume_from else recorder.info.get("resumed_from"))
        return recorder

    def _announce(self) -> None:
        setup, config = self.setup, self.config
        self.emit(LogEvent(message=f"effective batch {setup.effective_batch}: {config.batch_size} per process x "
                           f"{setup.accelerator.num_processes} process(es) x {config.gradient_accumulation_steps} "
                           "accumulation"))
        if setup.prior_count:
            self.emit(LogEvent(message=f"prior images: {setup.prior_count} from {setup.prior_folder}, "
                               f"{config.prior_ratio:g} per training image each epoch, loss weight "
                               f"{config.prior_loss_weight:g}"))
        self.emit(StartEvent(step=self.start_step, total_steps=setup.total_steps, run_dir=str(self.folder.path
                                                                                             if self.folder else "")))
