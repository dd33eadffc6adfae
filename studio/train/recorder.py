"""A run folder's records, kept as the run goes: the loss log, TensorBoard's event files and ``run.json``."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from studio.util.fs import atomic_write_text

from .events import StepEvent, ValidationEvent
from .run_folder import RunFolder


class RunRecorder:
    """Appends each step to the loss log and TensorBoard; keeps ``run.json`` (status, pid, steps) current."""

    def __init__(self, folder: RunFolder | None, start_step: int, enabled: bool = True) -> None:
        """``enabled=False`` (processes other than the main one) records nothing and needs no folder."""
        self.folder = folder
        self.enabled = enabled and folder is not None
        self.info = folder.info() if self.enabled else {}
        self._writer = None
        self._loss_file = None
        if not self.enabled:
            return
        self._truncate_loss_log(start_step)
        self._loss_file = open(folder.loss_file, "a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(folder.logs_dir), purge_step=start_step + 1 if start_step else None)

    def _truncate_loss_log(self, start_step: int) -> None:
        """On resume, forget steps after the checkpoint: they are trained again, and logged once."""
        kept = [r for r in self.folder.loss_log() if r.get("step", 0) <= start_step]
        if self.folder.loss_file.exists():
            atomic_write_text(self.folder.loss_file, "".join(json.dumps(r) + "\n" for r in kept))

    def step(self, event: StepEvent) -> None:
        if not self.enabled:
            return
        record = {
            "step": event.step, "epoch": event.epoch, "loss": event.loss, "lr": event.lr,
            "time": round(event.wall_time, 3),
        }
        if event.val_loss is not None:
            record["val_loss"] = event.val_loss
            self._writer.add_scalar("loss/validation", event.val_loss, event.step)
        self._loss_file.write(json.dumps(record) + "\n")
        self._loss_file.flush()
        self._writer.add_scalar("loss/train", event.loss, event.step)
        self._writer.add_scalar("lr", event.lr, event.step)

    def samples(self, step: int, paths: list[Path]) -> None:
        """Sample images into TensorBoard (the PNGs themselves stay under ``samples/``)."""
        if not self.enabled:
            return
        import numpy as np
        from PIL import Image

        for path in paths:
            with Image.open(path) as image:
                self._writer.add_image(f"samples/{path.stem[3:]}", np.asarray(image.convert("RGB")), step,
                                       dataformats="HWC")

    def validation(self, event: ValidationEvent) -> None:
        """The score before the first step of this session (the base model, or the resumed checkpoint)."""
        if not self.enabled:
            return
        self._writer.add_scalar("loss/validation", event.val_loss, event.step)
        starts = self.info.get("validation_at_start", {})
        self.update(validation_at_start={**starts, str(event.step): event.val_loss})

    def update(self, **fields) -> None:
        """Merge ``fields`` into ``run.json`` (atomically)."""
        if not self.enabled:
            return
        self.info.update(fields, updated_at=time.time(), pid=os.getpid(), host=socket.gethostname())
        atomic_write_text(self.folder.run_file, json.dumps(self.info, indent=2, default=str) + "\n")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        if self._loss_file is not None:
            self._loss_file.close()
            self._loss_file = None
