"""A run folder's records: ``loss.jsonl``, TensorBoard event files under ``logs/`` and ``run.json``."""
from __future__ import annotations

import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path

from studio.util.fs import atomic_write_text

from .events import TrainEvent

LOSS_FILE = "loss.jsonl"
RUN_FILE = "run.json"
LOGS = "logs"


def new_run_dir(output_dir: Path, name: str) -> Path:
    """``output_dir/<name>-<YYYYmmdd-HHMMSS>`` (with a suffix if two runs start in the same second)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    Path(output_dir).mkdir(parents=True, exist_ok=True)
    for suffix in range(1, 1000):
        candidate = Path(output_dir) / (f"{name}-{stamp}" if suffix == 1 else f"{name}-{stamp}-{suffix}")
        try:
            candidate.mkdir()  # fails if another run made it first, even in the same instant
        except FileExistsError:
            continue
        return candidate
    raise FileExistsError(f"{output_dir}: 999 run folders named {name}-{stamp}; set another output_name")


def read_loss_log(run_dir: Path) -> list[dict]:
    """Every record of ``loss.jsonl``; a torn last line (a killed writer) is skipped."""
    path = Path(run_dir) / LOSS_FILE
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def read_run_info(run_dir: Path) -> dict:
    path = Path(run_dir) / RUN_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


class RunRecorder:
    """Appends each step to ``loss.jsonl`` and TensorBoard; keeps ``run.json`` (status, pid, steps) current."""

    def __init__(self, run_dir: Path | None, start_step: int, enabled: bool = True):
        """``enabled=False`` (processes other than the main one) records nothing and needs no folder."""
        self.run_dir = Path(run_dir) if run_dir else None
        self.enabled = enabled and run_dir is not None
        self.info = read_run_info(self.run_dir) if self.enabled else {}
        self._writer = None
        self._loss_file = None
        if not self.enabled:
            return
        self._truncate_loss_log(start_step)
        self._loss_file = open(self.run_dir / LOSS_FILE, "a", encoding="utf-8")
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(str(self.run_dir / LOGS), purge_step=start_step + 1 if start_step else None)

    def _truncate_loss_log(self, start_step: int) -> None:
        """On resume, forget steps after the checkpoint: they are trained again, and logged once."""
        kept = [r for r in read_loss_log(self.run_dir) if r.get("step", 0) <= start_step]
        if (self.run_dir / LOSS_FILE).exists():
            atomic_write_text(self.run_dir / LOSS_FILE, "".join(json.dumps(r) + "\n" for r in kept))

    def step(self, event: TrainEvent) -> None:
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

    def validation(self, event: TrainEvent) -> None:
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
        atomic_write_text(self.run_dir / RUN_FILE, json.dumps(self.info, indent=2, default=str) + "\n")

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        if self._loss_file is not None:
            self._loss_file.close()
            self._loss_file = None
