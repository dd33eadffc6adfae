"""The toy world: renderer, checker, demo datasets and model evaluation (see ``world.py``).

Names are imported on first use, so that ``python -m studio.toyworld.demo`` (or ``.evaluate``) does not import
the module it is about to run.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "Reading": "checker",
    "check_image": "checker",
    "score": "checker",
    "DEMO_DATASETS": "demo",
    "DEMO_TRIGGERS": "demo",
    "PRIOR_DATASET": "demo",
    "write_demo_dataset": "demo",
    "write_prior_dataset": "demo",
    "evaluate_base": "evaluate",
    "star_rate_by_weight": "evaluate",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
