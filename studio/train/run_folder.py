"""What a training run leaves on disk, and where: the one module that knows a run folder's layout (no torch).

::

    <output_dir>/<name>-<YYYYmmdd-HHMMSS>/
        config.yaml                          the config the run trained with (effective batch as a comment)
        run.json                             status, step, process, times (``RunRecorder`` keeps it current)
        run.lock                             the process that writes the folder (``lock.py``)
        loss.jsonl                           one record per step: step, epoch, loss, lr, time (val_loss when scored)
        logs/                                TensorBoard event files
        checkpoints/step-NNNNNN/             trainer state, optimizer, adapters and the checkpoint's LoRA files
        samples/step-NNNNNN/                 the sample pictures drawn at that step
        pytorch_lora_weights.safetensors     the final LoRA for diffusers
        <name>.safetensors                   the final LoRA for ComfyUI, A1111 and Forge
    <output_dir>/priors/<digest>/            prior pictures, shared by the runs that ask for the same ones
"""
from __future__ import annotations

import json
import os
import socket
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from studio.lora import DIFFUSERS_WEIGHT_NAME

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
LOCK_FILE = "run.lock"
LOSS_FILE = "loss.jsonl"
LOGS = "logs"
CHECKPOINTS = "checkpoints"
SAMPLES = "samples"
PRIORS = "priors"
STATE_FILE = "trainer_state.json"  # written last into a checkpoint: a folder without it is not complete
# What run.json's "status" says; "interrupted" is never written: it is a "running" run whose process is gone.
STATUSES = ("running", "finished", "stopped", "failed", "interrupted")


def step_folder_name(step: int) -> str:
    """``step-000120``: the name of a checkpoint's and of a sample set's folder."""
    return f"step-{step:06d}"


def webui_file_name(output_name: str) -> str:
    """The WebUI/kohya LoRA's file name, in a run folder and in each checkpoint."""
    return f"{output_name}.safetensors"


def priors_cache(output_dir: str | os.PathLike, digest: str) -> Path:
    """The folder of generated prior pictures for one (model, prompts, count) ``digest``."""
    return Path(output_dir) / PRIORS / digest


def run_status(info: dict) -> str:
    """The status ``run.json`` records, except that a "running" run whose process is gone was interrupted."""
    status = info.get("status", "unknown")
    if status != "running" or info.get("host") != socket.gethostname():
        return status
    try:
        os.kill(int(info.get("pid", 0)), 0)
    except (ProcessLookupError, ValueError):
        return "interrupted"
    except PermissionError:
        return status
    return status if int(info.get("pid", 0)) > 0 else "interrupted"


@dataclass(frozen=True)
class RunFolder:
    """A run folder's paths, and what can be read from it without torch."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- finding and making run folders ---------------------------------------------------------------------
    @classmethod
    def create(cls, output_dir: str | os.PathLike, name: str) -> RunFolder:
        """A new ``output_dir/<name>-<YYYYmmdd-HHMMSS>`` (with a suffix if two runs start in the same second)."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        for suffix in range(1, 1000):
            candidate = Path(output_dir) / (f"{name}-{stamp}" if suffix == 1 else f"{name}-{stamp}-{suffix}")
            try:
                candidate.mkdir()  # fails if another run made it first, even in the same instant
            except FileExistsError:
                continue
            return cls(candidate)
        raise FileExistsError(f"{output_dir}: 999 run folders named {name}-{stamp}; set another output_name")

    @classmethod
    def runs_named(cls, output_dir: str | os.PathLike, name: str) -> list[RunFolder]:
        """The runs of ``name`` under ``output_dir`` that hold a config snapshot, newest first."""
        found = (cls(p) for p in Path(output_dir).glob(f"{name}-*") if p.is_dir())
        return sorted((run for run in found if run.config_file.is_file()), key=lambda r: r.path.name, reverse=True)

    @classmethod
    def all_under(cls, output_dir: str | os.PathLike) -> list[RunFolder]:
        """Every run under ``output_dir`` and one level below it (a folder per dataset), newest name first."""
        root = Path(output_dir)
        if not root.is_dir():
            return []
        candidates = sorted(root.glob("*/*-*")) + sorted(root.glob("*-*"))
        runs = [cls(p) for p in candidates if (p / CONFIG_FILE).is_file()]
        return sorted(runs, key=lambda r: r.path.name, reverse=True)

    @classmethod
    def containing(cls, path: str | os.PathLike) -> RunFolder | None:
        """The run a LoRA file or folder belongs to (the run folder itself, its final file or a checkpoint)."""
        path = Path(path).expanduser().resolve()
        for candidate in (path, path.parent, path.parent.parent, path.parent.parent.parent):
            if candidate.is_dir() and cls(candidate).is_run():
                return cls(candidate)
        return None

    def is_run(self) -> bool:
        """A training run: a config snapshot next to a final LoRA, a loss log, a run record or checkpoints."""
        return self.config_file.is_file() and any(
            p.exists() for p in (self.diffusers_lora, self.loss_file, self.run_file, self.checkpoints_dir))

    # -- the files ----------------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def config_file(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def lock_file(self) -> Path:
        return self.path / LOCK_FILE

    @property
    def loss_file(self) -> Path:
        return self.path / LOSS_FILE

    @property
    def logs_dir(self) -> Path:
        return self.path / LOGS

    @property
    def checkpoints_dir(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def diffusers_lora(self) -> Path:
        """The final diffusers LoRA (absent until the run finished, and for a WebUI-axis DoRA)."""
        return self.path / DIFFUSERS_WEIGHT_NAME

    def webui_lora(self, output_name: str) -> Path:
        """The final LoRA for ComfyUI, A1111 and Forge."""
        return self.path / webui_file_name(output_name)

    def final_files(self, output_name: str) -> tuple[Path | None, Path | None]:
        """(diffusers file, WebUI file) of a finished run, each None when it is not there."""
        diffusers, webui = self.diffusers_lora, self.webui_lora(output_name)
        return (diffusers if diffusers.is_file() else None), (webui if webui.is_file() else None)

    def checkpoint_dir(self, step: int) -> Path:
        return self.checkpoints_dir / step_folder_name(step)

    def samples_dir(self, step: int) -> Path:
        return self.path / SAMPLES / step_folder_name(step)

    def checkpoints(self) -> list[Path]:
        """Complete checkpoints, oldest first (folders still being written are never listed)."""
        if not self.checkpoints_dir.is_dir():
            return []
        found = [p for p in self.checkpoints_dir.iterdir()
                 if p.is_dir() and checkpoint_step(p) is not None and (p / STATE_FILE).is_file()]
        return sorted(found, key=checkpoint_step)

    def checkpoint_loras(self) -> list[tuple[int, Path]]:
        """(step, diffusers LoRA file) of every complete checkpoint that holds one, oldest first."""
        return [(checkpoint_step(folder), folder / DIFFUSERS_WEIGHT_NAME) for folder in self.checkpoints()
                if (folder / DIFFUSERS_WEIGHT_NAME).is_file()]

    # -- the records ----------------------------------------------------------------------------------------
    def info(self) -> dict:
        """``run.json`` ({} when it is missing or unreadable)."""
        try:
            info = json.loads(self.run_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            return {}
        return info if isinstance(info, dict) else {}

    def status(self) -> str:
        """"running", "finished", "stopped", "failed", "interrupted" (a running run's process is gone), or
        "unknown" before ``run.json`` is written."""
        return run_status(self.info())

    def loss_log(self) -> list[dict]:
        """Every record of ``loss.jsonl``; a torn last line (a killed writer) is skipped."""
        if not self.loss_file.is_file():
            return []
        records = []
        for line in self.loss_file.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records


def checkpoint_step(folder: str | os.PathLike) -> int | None:
    """The step of a ``step-NNNNNN`` folder; None for any other name."""
    prefix, _, number = Path(folder).name.partition("-")
    return int(number) if prefix == "step" and number.isdigit() else None


def checkpoint_lora_step(lora_path: str | os.PathLike) -> int | None:
    """The step of a LoRA file inside a run's ``checkpoints/step-NNNNNN/``; None for any other file."""
    path = Path(lora_path)
    return checkpoint_step(path.parent) if path.parent.parent.name == CHECKPOINTS else None
