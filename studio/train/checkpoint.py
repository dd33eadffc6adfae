"""Checkpoints without pickle: the LoRA and the optimizer as safetensors, the rest as JSON.

A checkpoint is written into a hidden ``.step-N.partial`` folder and renamed into place, so a crash or a kill in
the middle of a write never leaves a folder that looks complete. Nothing random needs saving: every random choice
of step k comes from a generator seeded with (seed, k) (see ``batches.py``).
"""
from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch
from safetensors.torch import load_file, save_file

from .run_folder import STATE_FILE, RunFolder

if TYPE_CHECKING:
    from .setup import TrainingSetup

OPTIMIZER_FILE = "optimizer.safetensors"
ADAPTER_FILE = "adapter_state.safetensors"  # peft names, exactly what resume loads back


def _optimizer_tensors(state_dict: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    tensors = {}
    for index, values in state_dict["state"].items():
        for name, value in values.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{index}.{name}"] = tensor.detach().cpu().contiguous()
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state_dict["param_groups"]]
    return tensors, groups


def _optimizer_state_dict(tensors: dict[str, torch.Tensor], groups: list[dict]) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": state, "param_groups": groups}


def save_checkpoint(run_dir: Path, setup: TrainingSetup, step: int, epoch: int, write_lora: Callable[[Path], Path],
                    adapters: dict[str, torch.Tensor]) -> Path:
    """Write checkpoint ``step`` atomically.

    ``write_lora(folder)`` writes the diffusers LoRA file (what evaluation loads); ``adapters`` are the same
    tensors under peft's names (what resume loads), keyed ``unet.…`` (``transformer.…`` for FLUX) / ``text_encoder.…``.
    """
    final = RunFolder(run_dir).checkpoint_dir(step)
    root = final.parent
    root.mkdir(parents=True, exist_ok=True)
    partial = root / f".{final.name}.partial-{os.getpid()}"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    try:
        _write_parts(partial, setup, step, epoch, write_lora, adapters)
    except BaseException:  # a full disk or a kill: no half checkpoint stays behind under a complete-looking name
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        trash = root / f".{final.name}.old-{os.getpid()}"
        os.replace(final, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(partial, final)
    _fsync_dir(root)
    return final


def _write_parts(partial: Path, setup: TrainingSetup, step: int, epoch: int, write_lora: Callable[[Path], Path],
                 adapters: dict) -> None:
    # Debug/test knob: pause between the files of a checkpoint so a kill can land in the middle of a write.
    pause = float(os.environ.get("LORA_STUDIO_CHECKPOINT_DELAY", "0") or 0)
    write_lora(partial)
    save_file(adapters, str(partial / ADAPTER_FILE))
    time.sleep(pause)
    tensors, groups = _optimizer_tensors(setup.optimizer.state_dict())
    save_file(tensors, str(partial / OPTIMIZER_FILE))
    scaler = setup.accelerator.scaler.state_dict() if setup.accelerator.scaler is not None else None
    state = {
        "step": step, "epoch": epoch, "total_steps": setup.total_steps, "saved_at": time.time(),
        "param_groups": groups, "lr_scheduler": setup.lr_scheduler.state_dict(), "grad_scaler": scaler,
    }
    with open(partial / STATE_FILE, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(state, indent=1, default=float))
        handle.flush()
        os.fsync(handle.fileno())
    _fsync_dir(partial)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune_checkpoints(run_dir: Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` checkpoints (0 keeps all) and any leftover partial folders."""
    folder = RunFolder(run_dir)
    removed = []
    if folder.checkpoints_dir.is_dir():
        for leftover in folder.checkpoints_dir.glob(".step-*"):
            if not leftover.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(leftover, ignore_errors=True)
    checkpoints = folder.checkpoints()
    if keep_last > 0:
        for old in checkpoints[:-keep_last]:
            shutil.rmtree(old, ignore_errors=True)
            removed.append(old)
    return removed


def remove_leftover_temps(run_dir: Path) -> list[Path]:
    """Delete the temporary files of atomic writes (``.<name>.<random>.tmp``) a killed run left in the run folder
    and its checkpoint folders; returns them. Only for a run that holds the folder's lock."""
    from studio.util.fs import remove_atomic_temps

    root = RunFolder(run_dir).checkpoints_dir
    folders = [Path(run_dir), root] + (sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else [])
    return [path for folder in folders for path in remove_atomic_temps(folder)]


def load_checkpoint_state(setup: TrainingSetup, checkpoint: Path) -> dict:
    """Restore optimizer, LR scheduler and grad scaler; returns the trainer state (step, epoch …)."""
    state = json.loads((checkpoint / STATE_FILE).read_text())
    tensors = load_file(str(checkpoint / OPTIMIZER_FILE))
    setup.optimizer.load_state_dict(_optimizer_state_dict(tensors, state["param_groups"]))
    setup.lr_scheduler.load_state_dict(state["lr_scheduler"])
    if state.get("grad_scaler") and setup.accelerator.scaler is not None:
        setup.accelerator.scaler.load_state_dict(state["grad_scaler"])
    return state
