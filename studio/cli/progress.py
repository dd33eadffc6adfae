"""How ``train`` shows its events (a progress bar, or ``--json-events`` lines) and which commands it obeys
(Ctrl-C, ``--stop-file``, ``--command-file``)."""
from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from studio.train.events import (
    CheckpointEvent, DoneEvent, LogEvent, StartEvent, StepEvent, TrainEvent, WarningEvent,
)

if TYPE_CHECKING:
    from studio.train.control import TrainingCommands


class _ProgressBar:
    """tqdm progress for training events, with loss and learning rate in the postfix."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def __call__(self, event: TrainEvent) -> None:
        if self.quiet:
            if isinstance(event, (WarningEvent, CheckpointEvent, DoneEvent)):
                print(_event_line(event), file=sys.stderr)
            return
        match event:
            case StartEvent():
                from tqdm import tqdm

                self.bar = tqdm(total=event.total_steps, initial=event.step, unit="step", dynamic_ncols=True)
            case StepEvent() if self.bar is not None:
                self.bar.update(event.step - self.bar.n)
                self.bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.2e}", epoch=event.epoch)
            case WarningEvent() | CheckpointEvent() | LogEvent():
                text = _event_line(event)
                (self.bar.write(text, file=sys.stderr) if self.bar is not None else print(text, file=sys.stderr))
            case DoneEvent() if self.bar is not None:
                self.bar.close()


def _event_line(event: LogEvent | WarningEvent | CheckpointEvent | DoneEvent) -> str:
    """``[warning] …``, ``[log] …``, ``[checkpoint] <folder>``, ``[done] finished``."""
    match event:
        case CheckpointEvent():
            return f"[checkpoint] {event.path}"
        case DoneEvent():
            return f"[done] {event.status}"
        case _:
            return f"[{event.kind}] {event.message}"


def _print_json_event(event: TrainEvent) -> None:
    """``--json-events``: one JSON line per event on stdout, flushed (the studio reads them from a pipe)."""
    import json

    print(json.dumps(event.to_dict()), flush=True)


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def _training_commands(stop_file: str | None, command_file: str | None) -> TrainingCommands:
    """Ctrl-C's commands; with ``--stop-file`` / ``--command-file`` also the ones another process writes (the
    command file is read by the main process only: the run shares its requests with the other processes)."""
    from studio.train.control import FileCommands, TrainingCommands

    if not (stop_file or command_file):
        return TrainingCommands()
    return FileCommands(stop_file, command_file, follow_file=is_main_process())
