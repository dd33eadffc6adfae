"""Helpers for tests that drive ``run_training`` the way a user does."""
from __future__ import annotations

from studio.train.control import TrainingCommands
from studio.train.events import StepEvent, TrainEvent


def stop_after(step: int, also=None) -> dict:
    """``run_training`` keywords that press Stop once step ``step`` is reported (the run stops after it);
    ``also(event)`` hears every event too."""
    commands = TrainingCommands()

    def emit(event: TrainEvent) -> None:
        if also is not None:
            also(event)
        if isinstance(event, StepEvent) and event.step == step:
            commands.stop()

    return {"emit": emit, "commands": commands}
