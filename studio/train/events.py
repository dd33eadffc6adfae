"""What a training run reports while it works: one event type per happening, read by the CLI and the studio.

Importing this module does not import torch. ``to_dict`` / ``event_from_dict`` carry an event between processes
as JSON (``studio.py train --json-events``): the dict holds the event's fields and its ``kind``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, ClassVar


@dataclass(frozen=True, kw_only=True)
class TrainEvent:
    """What every event carries: the step it happened at, of how many, and when."""

    kind: ClassVar[str] = ""
    step: int = 0
    total_steps: int = 0
    wall_time: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


@dataclass(frozen=True, kw_only=True)
class StartEvent(TrainEvent):
    """The run folder is ready and the first step is next (``step``: the step it continues from)."""

    kind: ClassVar[str] = "start"
    run_dir: str = ""


@dataclass(frozen=True, kw_only=True)
class StepEvent(TrainEvent):
    """One optimizer step done."""

    kind: ClassVar[str] = "step"
    epoch: int = 0
    loss: float = 0.0
    val_loss: float | None = None  # the deterministic validation loss, on steps where it was scored
    lr: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None  # seconds left at this session's average pace


@dataclass(frozen=True, kw_only=True)
class ValidationEvent(TrainEvent):
    """The validation loss before the session's first step (the base model, or the resumed checkpoint)."""

    kind: ClassVar[str] = "validation"
    val_loss: float = 0.0


@dataclass(frozen=True, kw_only=True)
class SampleEvent(TrainEvent):
    """Sample pictures drawn at ``step``."""

    kind: ClassVar[str] = "sample"
    paths: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        return str(Path(self.paths[0]).parent) if self.paths else ""


@dataclass(frozen=True, kw_only=True)
class CheckpointEvent(TrainEvent):
    """A checkpoint written at ``step`` (``epoch`` counts from 1)."""

    kind: ClassVar[str] = "checkpoint"
    epoch: int = 0
    path: str = ""


@dataclass(frozen=True, kw_only=True)
class LogEvent(TrainEvent):
    kind: ClassVar[str] = "log"
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class WarningEvent(TrainEvent):
    kind: ClassVar[str] = "warning"
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class DoneEvent(TrainEvent):
    """The run ended: ``status`` "finished" or "stopped" (a failure raises instead)."""

    kind: ClassVar[str] = "done"
    status: str = ""
    run_dir: str = ""


EVENT_TYPES: dict[str, type[TrainEvent]] = {cls.kind: cls for cls in (
    StartEvent, StepEvent, ValidationEvent, SampleEvent, CheckpointEvent, LogEvent, WarningEvent, DoneEvent)}


def event_from_dict(values: dict) -> TrainEvent:
    """The event ``to_dict`` gave; ``ValueError`` for an unknown kind or field."""
    values = dict(values)
    cls = EVENT_TYPES.get(values.pop("kind", None))
    if cls is None:
        raise ValueError(f"not a training event: {values!r}")
    known = {f.name for f in fields(cls)}
    unknown = set(values) - known
    if unknown:
        raise ValueError(f"{cls.__name__} has no field(s) {', '.join(sorted(unknown))}")
    if "paths" in values:
        values["paths"] = tuple(str(p) for p in values["paths"])
    return cls(**values)


Emit = Callable[[TrainEvent], None]


def ignore_event(_event: TrainEvent) -> None:
    """The default ``emit``: report nothing."""
