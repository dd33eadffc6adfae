"""Where the repository's own folders are: the one place that computes the repository root."""
from __future__ import annotations

from pathlib import Path


def repo_root() -> Path:
    """The repository root: the folder that holds ``studio/``, ``assets/`` and ``presets/``."""
    return Path(__file__).resolve().parents[2]
