"""Evaluation: weight x checkpoint grids, WebUI LoRA prompt syntax, metrics, loss-curve diagnosis and a verdict.

Names are imported on first use, so ``import studio.eval`` stays cheap for the CLI's argument parser.
"""
from __future__ import annotations

from studio.util.lazy import lazy_exports

_EXPORTS = {
    "EvalError": "spec",
    "GridSpec": "spec",
    "GridCell": "spec",
    "GridResult": "spec",
    "parse_weights": "spec",
    "parse_seeds": "spec",
    "render_grid": "grid",
    "resolve_lora": "resolve",
    "find_run_dir": "resolve",
    "parse_prompt": "prompts",
    "generate_from_prompt": "generate",
    "SAMPLER_LABELS": "samplers",
    "METRIC_HELP": "metrics",
    "metric_help": "metrics",
    "ConceptChecker": "concepts",
    "register_checker": "concepts",
    "ClipScorer": "clipscore",
    "load_clip_scorer": "clipscore",
    "LossDiagnosis": "loss",
    "diagnose_loss": "loss",
    "Verdict": "verdict",
    "make_verdict": "verdict",
    "write_evaluation": "report",
}
__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
