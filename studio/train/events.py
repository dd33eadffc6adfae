"""What a training run reports while it works: one event type, read by the CLI's progress bar and the UI."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

# kinds: "start", "step", "validation", "sample" (PNG paths in ``message``, one per line), "checkpoint", "log",
# "warning", "done" (status in ``message``)
EVENT_KINDS = ("start", "step", "validation", "sample", "checkpoint", "log", "warning", "done")


@dataclass
class TrainEvent:
    kind: str
    step: int = 0
    total_steps: int = 0
    epoch: int = 0
    loss: float | None = None
    val_loss: float | None = None  # the deterministic validation loss, on steps where it was scored
    lr: float | None = None
    elapsed_s: float = 0.0
    eta_s: float | None = None  # seconds left at this session's average pace
    message: str = ""
    path: str = ""
    wall_time: float = field(default_factory=time.time)

    def to_dict(self) -> dict:
        return asdict(self)


Emit = Callable[[TrainEvent], None]
ShouldStop = Callable[[], bool]


def ignore_event(_event: TrainEvent) -> None:
    """The default ``emit``: report nothing."""


def never_stop() -> bool:
    """The default ``should_stop``: run to the end."""
    return False
