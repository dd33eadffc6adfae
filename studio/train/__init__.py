"""Training: ``run.py`` drives a run (``TrainingRun``), ``loop.py`` trains one step, ``setup.py`` builds what a run
needs; ``events.py`` and ``control.py`` are what a caller sees and asks, ``run_folder.py`` what a run leaves on disk.

The names below are imported on first use, so ``studio.train.events`` and the run folder load without torch.
"""
from __future__ import annotations

from studio.util.lazy import lazy_exports

_WHERE = {
    "RunResult": "run", "TrainingFailed": "run", "TrainingRun": "run", "run_training": "run",
    "TrainEvent": "events", "TrainingCommands": "control", "RunFolder": "run_folder",
}

__all__ = list(_WHERE)

__getattr__ = lazy_exports(__name__, _WHERE)
