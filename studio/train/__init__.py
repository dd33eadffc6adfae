"""Training: the loop (``loop.py``), what it needs (``setup.py``), checkpoints, exports and run folders."""
from .events import TrainEvent
from .run import RunResult, TrainingFailed, run_training

__all__ = ["RunResult", "TrainEvent", "TrainingFailed", "run_training"]
