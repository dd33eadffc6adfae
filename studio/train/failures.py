"""What went wrong in a run, in words a user can act on (NaN loss, out of memory, a full disk)."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import TYPE_CHECKING

from studio.data.metadata import DatasetError

from .loop import NonFiniteLoss

if TYPE_CHECKING:
    from studio.config import TrainConfig


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    oom_types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                                  getattr(torch.cuda, "OutOfMemoryError", None)) if t)
    text = str(error).lower()
    # The CPU allocator says "DefaultCPUAllocator: can't allocate memory: you tried to allocate N bytes".
    return isinstance(error, oom_types) or "out of memory" in text or "can't allocate memory" in text


def _is_disk_full(error: BaseException) -> bool:
    """ENOSPC from Python, or from safetensors' Rust writer (which reports it only in its message)."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "os error 28" in text


def describe_failure(error: BaseException, config: TrainConfig, last_checkpoint: Path | None) -> str:
    """One paragraph: what happened, what is kept, what to try."""
    kept = (f" The last good checkpoint is kept: {last_checkpoint} (resume with --resume latest)."
            if last_checkpoint else " No checkpoint was written yet.")
    if isinstance(error, NonFiniteLoss):
        return f"{error}.{kept}"
    if _is_out_of_memory(error):
        return (
            f"out of memory at batch_size {config.batch_size}, resolution {config.resolution}, "
            f"lora_rank {config.lora_rank}. Try, in this order: a smaller batch_size (with "
            f"gradient_accumulation_steps to keep the effective batch), gradient_checkpointing: true, "
            f"mixed_precision: fp16 or bf16, a lower lora_rank or resolution.{kept}"
        )
    if _is_disk_full(error):
        where = f" while writing {error.filename}" if getattr(error, "filename", None) else ""
        return (
            f"the disk is full{where}. Free some space or set output_dir to another disk; nothing half-written "
            f"is left under a checkpoint's name.{kept}"
        )
    if isinstance(error, DatasetError):  # a picture that passed the check before training but fails to decode
        return f"{_sentence(str(error))}{kept}"
    return f"{type(error).__name__}: {_sentence(str(error))}{kept}" if str(error) else f"{type(error).__name__}.{kept}"


def _sentence(text: str) -> str:
    """``text`` ending in exactly one full stop."""
    return text.rstrip().rstrip(".") + "."
