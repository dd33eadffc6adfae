"""The toy world: renderer, checker, demo datasets and model evaluation (see ``world.py``).

Names are imported on first use, so that ``python -m studio.toyworld.demo`` (or ``.evaluate``) does not import
the module it is about to run.
"""
from __future__ import annotations

from studio.util.lazy import lazy_exports

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

__getattr__ = lazy_exports(__name__, _EXPORTS)
