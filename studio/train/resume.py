"""Continuing a run: which run folder and checkpoint ``resume`` names, checked against the run's own config, and
loading that checkpoint's LoRA and optimizer state back into a fresh setup."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .run_folder import STATE_FILE, RunFolder

if TYPE_CHECKING:
    from studio.config import TrainConfig

    from .setup import TrainingSetup

# Settings that change the LoRA's tensors' shapes or meaning: a resume with other values cannot continue.
RESUME_MUST_MATCH = (
    "lora_rank", "lora_alpha", "target_modules", "use_dora", "train_text_encoder", "text_encoder_target_modules",
)


class ResumeError(ValueError):
    """Nothing to resume, or a checkpoint that does not fit the config; the message says what to pass."""


def find_resume_point(resume: str, output_dir: Path, output_name: str) -> tuple[Path, Path]:
    """Resolve ``resume`` ("latest", a run folder or a checkpoint folder) to (run folder, checkpoint)."""
    if resume == "latest":
        for run in RunFolder.runs_named(output_dir, output_name):
            checkpoints = run.checkpoints()
            if checkpoints:
                return run.path, checkpoints[-1]
        raise ResumeError(
            f"resume: latest found no checkpoint of '{output_name}' under {output_dir}; "
            "train first (checkpoints are written every save_steps and on stop) or pass a run folder"
        )
    path = Path(resume)
    if (path / STATE_FILE).is_file():
        return path.parent.parent, path
    checkpoints = RunFolder(path).checkpoints() if path.is_dir() else []
    if not checkpoints:
        raise ResumeError(f"resume: {path} is neither a checkpoint folder nor a run folder with checkpoints")
    return path, checkpoints[-1]


def check_resume_compatible(saved: dict, current: dict, source: Path) -> None:
    """Refuse a resume whose LoRA settings differ from the run that wrote the checkpoint."""
    changed = [key for key in RESUME_MUST_MATCH if saved.get(key) != current.get(key)]
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} in the run, {current.get(k)!r} now" for k in changed)
        raise ResumeError(f"cannot resume from {source}: {detail}; use the run's values or start a new run")


def resume_point(config: TrainConfig) -> tuple[RunFolder | None, Path | None]:
    """(run folder, checkpoint) to continue from, checked against the run's own config; (None, None) if new."""
    from studio.config import config_to_dict, load_config

    if not config.resume:
        return None, None
    run_dir, checkpoint = find_resume_point(config.resume, Path(config.output_dir), config.resolved_output_name())
    folder = RunFolder(run_dir)
    saved = load_config(folder.config_file)
    check_resume_compatible(config_to_dict(saved), config_to_dict(config), checkpoint)
    return folder, checkpoint


def check_resume_folder_free(config: TrainConfig) -> None:
    """Before starting the processes of a run: refuse a resume whose run folder another process trains
    (``RunLocked``) or that has nothing to resume (``ResumeError``). The run itself takes the lock."""
    from .lock import check_free

    folder, _ = resume_point(config)
    if folder:
        check_free(folder.path)


def checkpoint_under_lock(config: TrainConfig, folder: RunFolder, found: Path) -> Path:
    """The checkpoint to resume from, looked up again now that no other run can prune the folder.

    A checkpoint named by path must still be there; otherwise the newest one of the run folder is taken (another
    run may have added newer ones, or pruned ``found``, before it released the folder).
    """
    if config.resume != "latest" and Path(config.resume) == found:
        if not (found / STATE_FILE).is_file():
            raise ResumeError(f"resume: {found} was removed while waiting for the run folder (another run pruned "
                              f"it); resume from {folder.path} to take its newest checkpoint")
        return found
    checkpoints = folder.checkpoints()
    if not checkpoints:
        raise ResumeError(f"resume: {folder.path} has no checkpoint any more; start a new run")
    return checkpoints[-1]


def restore(setup: TrainingSetup, checkpoint: Path) -> int:
    """Load a checkpoint's LoRA and optimizer state into ``setup``; returns the step to continue from."""
    from safetensors.torch import load_file

    from .adapters import load_adapter_state, split_diffusers_lora
    from .checkpoint import ADAPTER_FILE, load_checkpoint_state

    unet_state, text_states = split_diffusers_lora(load_file(str(checkpoint / ADAPTER_FILE)))
    unwrap = setup.accelerator.unwrap_model
    load_adapter_state(unwrap(setup.components.denoiser), unet_state, str(checkpoint))
    if setup.config.train_text_encoder:
        for name, encoder in setup.components.lora_text_encoders.items():
            load_adapter_state(unwrap(encoder), text_states.get(name, {}), str(checkpoint))
    return int(load_checkpoint_state(setup, checkpoint)["step"])
