"""Which failures of the training side are the user's to fix (a config, a dataset, a model, a run folder, memory):
their message says what to do, so a front end shows it alone, without a traceback.

The CLI (``studio train``, ``check-config``) and the studio's training job both ask :func:`user_errors`. The error
classes are imported when it is called, so that importing this module loads neither torch nor the trainer.
"""
from __future__ import annotations


def user_errors() -> tuple[type[BaseException], ...]:
    """Exceptions of the training side that mean "fix your input", not "the trainer broke"."""
    from studio.config import ConfigError
    from studio.data import DatasetError
    from studio.models import ModelLoadError
    from studio.train.adapters import AdapterError
    from studio.train.lock import RunFolderError
    from studio.train.memory import NotEnoughMemory
    from studio.train.resume import ResumeError

    return (ConfigError, DatasetError, ModelLoadError, ResumeError, AdapterError, RunFolderError, NotEnoughMemory,
            FileNotFoundError)
