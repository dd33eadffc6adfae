"""One training run end to end: run folder, setup, resume, the loop, checkpoints and the final LoRA files.

``run_training`` is what the CLI and the studio call; it reports through ``emit`` and stops on ``should_stop``.
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
    check_resume_compatible,
    find_resume_point,
    load_checkpoint_state,
    prune_checkpoints,
    save_checkpoint,
)
from .events import Emit, ShouldStop, TrainEvent, ignore_event, never_stop
from .failures import describe_failure
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


def _new_run_dir(config, setup) -> Path:
    """A timestamped run folder holding the config snapshot (with the effective batch as a comment)."""
    from studio.config import dump_config
    from studio.util.fs import atomic_write_text

    run_dir = new_run_dir(Path(config.output_dir), config.resolved_output_name())
    processes = setup.accelerator.num_processes
    note = (f"# effective batch: {config.batch_size} per process x {processes} process(es) x "
            f"{config.gradient_accumulation_steps} accumulation = {setup.effective_batch}\n")
    atomic_write_text(run_dir / "config.yaml", dump_config(config) + note)
    return run_dir


def _restore(setup, checkpoint: Path) -> int:
    """Load a checkpoint's LoRA and optimizer state into ``setup``; returns the step to continue from."""
    from safetensors.torch import load_file

    from .adapters import load_adapter_state, split_diffusers_lora

    unet_state, text_state = split_diffusers_lora(load_file(str(checkpoint / ADAPTER_FILE)))
    unwrap = setup.accelerator.unwrap_model
    load_adapter_state(unwrap(setup.components.unet), unet_state, str(checkpoint))
    if setup.config.train_text_encoder:
        load_adapter_state(unwrap(setup.components.text_encoder), text_state, str(checkpoint))
    return int(load_checkpoint_state(setup, checkpoint)["step"])


def _sample_renderer(setup, run_dir):
    """Samples are drawn when ``sample_steps`` and sample prompts are set (main process only)."""
    if not (setup.config.sample_steps and setup.config.validation_prompts):
        return None
    from .samples import SampleRenderer

    return SampleRenderer(setup, run_dir)


def run_training(config, emit: Emit = ignore_event, should_stop: ShouldStop = never_stop) -> RunResult:
    """Train the LoRA described by ``config``; raises ``TrainingFailed`` (or a config/data error before start)."""
    from .export import lora_states, write_diffusers_lora, write_final_files
    from .setup import build_setup

    def warn(message: str) -> None:
        log.warning(message)
        emit(TrainEvent("warning", message=message))

    def note(message: str) -> None:
        log.info(message)
        emit(TrainEvent("log", message=message))

    run_dir, resume_from = _resume_point(config)
    setup = build_setup(config, warn=warn, note=note)  # data and model errors surface here, before any folder
    start_step = _restore(setup, resume_from) if resume_from else 0
    if resume_from:
        prune_checkpoints(run_dir, 0)  # only clears half-written folders a killed run left behind
    main = setup.accelerator.is_main_process
    if run_dir is None:
        run_dir = _new_run_dir(config, setup) if main else None
    recorder = RunRecorder(run_dir, start_step, enabled=main)
    recorder.info.setdefault("session_id", uuid.uuid4().hex)
    recorder.info.setdefault("started_at", time.time())
    recorder.update(status="running", step=start_step, total_steps=setup.total_steps, error=None,
                    num_processes=setup.accelerator.num_processes, effective_batch=setup.effective_batch,
                    prior_images=setup.prior_count, prior_folder=setup.prior_folder or None,
                    resumed_from=str(resume_from) if resume_from else recorder.info.get("resumed_from"))
    last = {"checkpoint": resume_from, "epoch": 0, "step": start_step}

    renderer = _sample_renderer(setup, run_dir) if main else None

    def on_event(event: TrainEvent) -> None:
        if event.kind == "step":
            recorder.step(event)
            last["epoch"] = event.epoch
            if renderer and (event.step % config.sample_steps == 0 or event.step == event.total_steps):
                emit(event)
                paths = renderer.render(event.step)
                recorder.samples(event.step, paths)
                emit(TrainEvent("sample", step=event.step, total_steps=event.total_steps,
                                message="\n".join(str(p) for p in paths), path=str(paths[0].parent)))
                return
        elif event.kind == "validation":
            recorder.validation(event)
        emit(event)

    def checkpoint(step: int, epoch: int) -> None:
        last["step"] = step  # every process: only the main one writes the folder, all of them report the step
        if not main:
            return
        unet_state, text_state = lora_states(setup)
        adapters = {f"unet.{k}": v for k, v in unet_state.items()}
        adapters.update({f"text_encoder.{k}": v for k, v in (text_state or {}).items()})
        folder = save_checkpoint(run_dir, setup, step, epoch, lambda f: write_diffusers_lora(f, setup), adapters)
        prune_checkpoints(run_dir, config.keep_last_n_checkpoints)
        last["checkpoint"] = folder
        recorder.update(step=step, last_checkpoint=str(folder))
        emit(TrainEvent("checkpoint", step=step, total_steps=setup.total_steps, epoch=epoch + 1, path=str(folder)))

    emit(TrainEvent("log", message=f"effective batch {setup.effective_batch}: {config.batch_size} per process x "
                    f"{setup.accelerator.num_processes} process(es) x {config.gradient_accumulation_steps} accumulation"))
    if setup.prior_count:
        emit(TrainEvent("log", message=f"prior images: {setup.prior_count} from {setup.prior_folder}, "
                        f"{config.prior_ratio:g} per training image each epoch, loss weight {config.prior_loss_weight:g}"))
    emit(TrainEvent("start", step=start_step, total_steps=setup.total_steps, message=str(run_dir), path=str(run_dir)))
    try:
        if setup.validator is not None:
            on_event(TrainEvent("validation", step=start_step, total_steps=setup.total_steps,
                                val_loss=setup.validation_loss()))
        status = train_loop(setup, start_step, on_event, should_stop, checkpoint)
        result = RunResult(status, run_dir, setup.total_steps, setup.total_steps, last_checkpoint=last["checkpoint"])
        if status == "finished" and main:
            result.diffusers_lora, result.webui_lora = write_final_files(
                run_dir, setup, recorder.info, setup.total_steps, last["epoch"], warn
            )
        elif status == "stopped":
            result.step = last["step"]
    except Exception as error:  # the run folder keeps the reason; the caller gets one readable message
        message = describe_failure(error, config, last["checkpoint"])
        recorder.update(status="failed", error=message, traceback=traceback.format_exc())
        recorder.close()
        raise TrainingFailed(f"training failed: {message}", run_dir) from error
    recorder.update(status=status, step=result.step, finished_at=time.time())
    recorder.close()
    emit(TrainEvent("done", step=result.step, total_steps=setup.total_steps, message=status, path=str(run_dir)))
    return result
