"""One training run end to end: run folder, setup, resume, the loop, checkpoints and the final LoRA files.

``run_training`` is what the CLI and the studio call; it reports through ``emit`` and stops on ``should_stop``.
A run folder is written by one run at a time (``lock.py``): a second run on it is refused before the model loads.
"""
from __future__ import annotations

import logging
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path

from .checkpoint import (
    ADAPTER_FILE,
    STATE_FILE,
    ResumeError,
    check_resume_compatible,
    find_resume_point,
    list_checkpoints,
    load_checkpoint_state,
    prune_checkpoints,
    remove_leftover_temps,
    save_checkpoint,
)
from .events import Emit, ShouldStop, TrainEvent, ignore_event, never_stop
from .failures import describe_failure
from .lock import RunLock, lock_for_all_processes
from .loop import train_loop
from .recorder import RunRecorder, new_run_dir

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    status: str  # "finished" or "stopped"
    run_dir: Path
    step: int
    total_steps: int
    diffusers_lora: Path | None = None
    webui_lora: Path | None = None
    last_checkpoint: Path | None = None


class TrainingFailed(RuntimeError):
    """The run started but could not finish; ``run_dir`` keeps what was saved before the failure."""

    def __init__(self, message: str, run_dir: Path | None):
        super().__init__(message)
        self.run_dir = run_dir


def _resume_point(config) -> tuple[Path | None, Path | None]:
    """(run folder, checkpoint) to continue from, checked against the run's own config; (None, None) if new."""
    from studio.config import config_to_dict, load_config

    if not config.resume:
        return None, None
    run_dir, checkpoint = find_resume_point(config.resume, Path(config.output_dir), config.resolved_output_name())
    saved = load_config(run_dir / "config.yaml")
    check_resume_compatible(config_to_dict(saved), config_to_dict(config), checkpoint)
    return run_dir, checkpoint


def check_resume_folder_free(config) -> None:
    """Before starting the processes of a run: refuse a resume whose run folder another process trains
    (``RunLocked``) or that has nothing to resume (``ResumeError``). The run itself takes the lock."""
    from .lock import check_free

    run_dir, _ = _resume_point(config)
    if run_dir:
        check_free(run_dir)


def _checkpoint_under_lock(config, run_dir: Path, found: Path) -> Path:
    """The checkpoint to resume from, looked up again now that no other run can prune the folder.

    A checkpoint named by path must still be there; otherwise the newest one of the run folder is taken (another
    run may have added newer ones, or pruned ``found``, before it released the folder).
    """
    if config.resume != "latest" and Path(config.resume) == found:
        if not (found / STATE_FILE).is_file():
            raise ResumeError(f"resume: {found} was removed while waiting for the run folder (another run pruned "
                              f"it); resume from {run_dir} to take its newest checkpoint")
        return found
    checkpoints = list_checkpoints(run_dir)
    if not checkpoints:
        raise ResumeError(f"resume: {run_dir} has no checkpoint any more; start a new run")
    return checkpoints[-1]


def _new_run_dir(config, setup, warn) -> tuple[Path, RunLock]:
    """A timestamped run folder, locked, holding the config snapshot (with the effective batch as a comment)."""
    from studio.config import dump_config
    from studio.util.fs import atomic_write_text

    run_dir = new_run_dir(Path(config.output_dir), config.resolved_output_name())
    lock = RunLock(run_dir, warn).acquire()
    processes = setup.accelerator.num_processes
    note = (f"# effective batch: {config.batch_size} per process x {processes} process(es) x "
            f"{config.gradient_accumulation_steps} accumulation = {setup.effective_batch}\n")
    atomic_write_text(run_dir / "config.yaml", dump_config(config) + note)
    return run_dir, lock


def _restore(setup, checkpoint: Path) -> int:
    """Load a checkpoint's LoRA and optimizer state into ``setup``; returns the step to continue from."""
    from safetensors.torch import load_file

    from .adapters import load_adapter_state, split_diffusers_lora

    unet_state, text_states = split_diffusers_lora(load_file(str(checkpoint / ADAPTER_FILE)))
    unwrap = setup.accelerator.unwrap_model
    load_adapter_state(unwrap(setup.components.unet), unet_state, str(checkpoint))
    if setup.config.train_text_encoder:
        for name, encoder in setup.components.text_encoders.items():
            load_adapter_state(unwrap(encoder), text_states.get(name, {}), str(checkpoint))
    return int(load_checkpoint_state(setup, checkpoint)["step"])


def _sample_renderer(setup, run_dir):
    """Samples are drawn when ``sample_steps`` and sample prompts are set (main process only)."""
    if not (setup.config.sample_steps and setup.config.validation_prompts):
        return None
    from .samples import SampleRenderer

    return SampleRenderer(setup, run_dir)


def _reporters(emit: Emit):
    """(warn, note): a message to the log and to ``emit`` as a warning / log event."""
    def warn(message: str) -> None:
        log.warning(message)
        emit(TrainEvent("warning", message=message))

    def note(message: str) -> None:
        log.info(message)
        emit(TrainEvent("log", message=message))

    return warn, note


def _clean_leftovers(run_dir: Path, note) -> None:
    """Temporary files of writes a killed run never finished (this run holds the folder's lock)."""
    removed = remove_leftover_temps(run_dir)
    if removed:
        note(f"removed {len(removed)} leftover temporary file(s) of an interrupted write from {run_dir}")


def run_training(config, emit: Emit = ignore_event, should_stop: ShouldStop = never_stop) -> RunResult:
    """Train the LoRA described by ``config``; raises ``TrainingFailed`` (or a config/data error before start).

    ``RunLocked`` (another process trains the run folder to resume) comes before the model loads.
    """
    from .setup import build_setup

    import torch

    warn, note = _reporters(emit)
    run_dir, resume_from = _resume_point(config)
    lock = lock_for_all_processes(run_dir, warn) if run_dir else None
    threads_before = torch.get_num_threads()  # the run picks its own count (threads.py); the process gets it back
    try:
        if run_dir:
            resume_from = _checkpoint_under_lock(config, run_dir, resume_from)
            if lock:
                _clean_leftovers(run_dir, note)
        setup = build_setup(config, warn=warn, note=note)  # data and model errors surface here, before any folder
        start_step = _restore(setup, resume_from) if resume_from else 0
        if resume_from and lock:
            prune_checkpoints(run_dir, 0)  # only clears half-written folders a killed run left behind
        if run_dir is None and setup.accelerator.is_main_process:
            run_dir, lock = _new_run_dir(config, setup, warn)
        return _Session(setup, run_dir, resume_from, start_step, emit, warn).train(should_stop)
    finally:
        torch.set_num_threads(threads_before)
        if lock:
            lock.release()


class _Session:
    """The part of a run after setup: records, samples, checkpoints, the loop and the final files."""

    def __init__(self, setup, run_dir: Path | None, resume_from: Path | None, start_step: int, emit, warn):
        self.setup, self.config, self.run_dir, self.emit, self.warn = setup, setup.config, run_dir, emit, warn
        self.main = setup.accelerator.is_main_process
        self.start_step = start_step
        recorder = RunRecorder(run_dir, start_step, enabled=self.main)
        recorder.info.setdefault("session_id", uuid.uuid4().hex)
        recorder.info.setdefault("started_at", time.time())
        recorder.update(status="running", step=start_step, total_steps=setup.total_steps, error=None,
                        num_processes=setup.accelerator.num_processes, effective_batch=setup.effective_batch,
                        prior_images=setup.prior_count, prior_folder=setup.prior_folder or None,
                        cpu_threads=setup.threads.count if setup.threads else None,
                        resumed_from=str(resume_from) if resume_from else recorder.info.get("resumed_from"))
        self.recorder = recorder
        self.last = {"checkpoint": resume_from, "epoch": 0, "step": start_step}
        self.renderer = _sample_renderer(setup, run_dir) if self.main else None

    def on_event(self, event: TrainEvent) -> None:
        config, renderer = self.config, self.renderer
        if event.kind == "step":
            self.recorder.step(event)
            self.last["epoch"] = event.epoch
            if renderer and (event.step % config.sample_steps == 0 or event.step == event.total_steps):
                self.emit(event)
                paths = renderer.render(event.step)
                self.recorder.samples(event.step, paths)
                self.emit(TrainEvent("sample", step=event.step, total_steps=event.total_steps,
                                     message="\n".join(str(p) for p in paths), path=str(paths[0].parent)))
                return
        elif event.kind == "validation":
            self.recorder.validation(event)
        self.emit(event)

    def checkpoint(self, step: int, epoch: int) -> None:
        from .export import lora_states, write_checkpoint_loras

        self.last["step"] = step  # every process: only the main one writes the folder, all of them report the step
        if not self.main:
            return
        setup = self.setup
        unet_state, text_states = lora_states(setup)
        adapters = {f"unet.{k}": v for k, v in unet_state.items()}
        for name, state in text_states.items():
            adapters.update({f"{name}.{k}": v for k, v in state.items()})
        folder = save_checkpoint(self.run_dir, setup, step, epoch, lambda f: write_checkpoint_loras(f, setup), adapters)
        prune_checkpoints(self.run_dir, self.config.keep_last_n_checkpoints)
        self.last["checkpoint"] = folder
        self.recorder.update(step=step, last_checkpoint=str(folder))
        self.emit(TrainEvent("checkpoint", step=step, total_steps=setup.total_steps, epoch=epoch + 1,
                             path=str(folder)))

    def _announce(self) -> None:
        setup, config = self.setup, self.config
        self.emit(TrainEvent("log", message=f"effective batch {setup.effective_batch}: {config.batch_size} per "
                             f"process x {setup.accelerator.num_processes} process(es) x "
                             f"{config.gradient_accumulation_steps} accumulation"))
        if setup.prior_count:
            self.emit(TrainEvent("log", message=f"prior images: {setup.prior_count} from {setup.prior_folder}, "
                                 f"{config.prior_ratio:g} per training image each epoch, loss weight "
                                 f"{config.prior_loss_weight:g}"))
        self.emit(TrainEvent("start", step=self.start_step, total_steps=setup.total_steps, message=str(self.run_dir),
                             path=str(self.run_dir)))

    def train(self, should_stop: ShouldStop) -> RunResult:
        from .export import write_final_files

        setup, last, recorder, run_dir = self.setup, self.last, self.recorder, self.run_dir
        self._announce()
        try:
            if setup.validator is not None:
                self.on_event(TrainEvent("validation", step=self.start_step, total_steps=setup.total_steps,
                                         val_loss=setup.validation_loss()))
            status = train_loop(setup, self.start_step, self.on_event, should_stop, self.checkpoint)
            result = RunResult(status, run_dir, setup.total_steps, setup.total_steps,
                               last_checkpoint=last["checkpoint"])
            if status == "finished" and self.main:
                result.diffusers_lora, result.webui_lora = write_final_files(
                    run_dir, setup, recorder.info, setup.total_steps, last["epoch"], self.warn,
                    lambda message: self.emit(TrainEvent("log", message=message)))
            elif status == "stopped":
                result.step = last["step"]
        except Exception as error:  # the run folder keeps the reason; the caller gets one readable message
            message = describe_failure(error, self.config, last["checkpoint"])
            recorder.update(status="failed", error=message, traceback=traceback.format_exc())
            recorder.close()
            raise TrainingFailed(f"training failed: {message}", run_dir) from error
        recorder.update(status=status, step=result.step, finished_at=time.time())
        recorder.close()
        self.emit(TrainEvent("done", step=result.step, total_steps=setup.total_steps, message=status,
                             path=str(run_dir)))
        return result
