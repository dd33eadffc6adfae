"""The verdict on a LoRA: a recommended weight range, the best checkpoint, and the reasons for both.

The weight range starts where the LoRA clearly shows (a concept checker reads its concept in most pictures,
or the pictures have moved at least half as far from weight 0 as at the top weight) and ends before it hurts
(the CLIP score drops below the base model's, or the seeds' pictures scatter). The best checkpoint is the
earliest one that does (nearly) as well as the best in that range: later ones only risk memorising.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loss import LossDiagnosis

CONCEPT_KEEP = 0.8  # keep weights whose concept rate is at least this share of the best
EFFECT_KEEP = 0.5  # ... or whose change from weight 0 is at least this share of the largest
CLIP_DROP = 2.0  # CLIP points below the base model's score that count as "overrides the prompt"
SCATTER = 1.5  # seed spread this many times the base model's counts as "scattered"


@dataclass
class Verdict:
    """``weight_low``..``weight_high`` (None when nothing was drawn), ``best_checkpoint`` and why."""

    weight_low: float | None
    weight_high: float | None
    best_checkpoint: str | None
    weight_reasons: list[str] = field(default_factory=list)
    checkpoint_reasons: list[str] = field(default_factory=list)

    @property
    def weight_range(self) -> str:
        if self.weight_low is None:
            return "none found"
        if self.weight_low == self.weight_high:
            return f"{self.weight_low:g}"
        return f"{self.weight_low:g}-{self.weight_high:g}"


GRID_KEYS = ("columns", "checkpoints", "checker", "clip_model", "trigger", "trigger_word", "trigger_placement")


def rows_read(metrics: dict) -> dict:
    """The numbers the verdict and the report read: with a trigger, those of the rows with it only.

    The concept in a row without the trigger is a leak, not the LoRA working: averaged in, it would halve the
    concept rate of a LoRA that keeps its concept on its trigger, and count that row's prompt as one it fails on.
    ``rows`` says which rows the numbers are from ("" = all of them).
    """
    with_trigger = (metrics.get("trigger") or {}).get("with")
    if not with_trigger:
        return {**metrics, "rows": ""}
    grid = {key: metrics[key] for key in GRID_KEYS if key in metrics}
    word = metrics.get("trigger_word") or ""
    return {**grid, **with_trigger, "rows": f"with the trigger \"{word}\"" if word else "with the trigger"}


def _positive(values: dict) -> dict[float, float]:
    return {float(w): float(v) for w, v in (values or {}).items() if float(w) > 0 and v is not None}


def _span(weights: list[float]) -> str:
    return f"{min(weights):g}" if min(weights) == max(weights) else f"{min(weights):g}-{max(weights):g}"


def _lower_bound(metrics: dict, weights: list[float], reasons: list[str]) -> list[float]:
    """Weights at which the LoRA clearly shows: by concept rate when the checker read the pictures, else by change."""
    concept = _positive(metrics.get("concept_rate_by_weight"))
    if concept and max(concept.values()) > 0:
        best = max(concept.values())
        kept = [w for w in weights if concept.get(w, 0.0) >= CONCEPT_KEEP * best]
        top = max(concept, key=concept.get)
        rows = f" {metrics['rows']}" if metrics.get("rows") else ""
        reasons.append(f"the checker reads the concept in {best:.0%} of the pictures{rows} at weight {top:g}, and in "
                       f"at least {CONCEPT_KEEP * best:.0%} at {_span(kept)}")
        return kept
    if concept:
        reasons.append("the checker never read the concept at these weights: the LoRA has not learned it - "
                       "train longer, or check the trigger word in the prompts")
    change = _positive(metrics.get("change_by_weight"))
    if not change or max(change.values()) <= 0:
        reasons.append("the pictures do not change with the weight at all: the LoRA has no visible effect")
        return weights
    top = max(change.values())
    kept = [w for w in weights if change.get(w, 0.0) >= EFFECT_KEEP * top]
    if len(kept) < len(weights):
        reasons.append(f"below {min(kept):g} the pictures move less than half as far from the base picture as at "
                       f"the top weight: the LoRA barely shows")
    else:
        reasons.append(f"the LoRA shows at every weight drawn ({_span(weights)})")
    return kept


def _upper_bound(metrics: dict, kept: list[float], reasons: list[str]) -> list[float]:
    """Drop weights where the LoRA overrides the prompt (CLIP) or scatters across seeds."""
    clip, base_clip = _positive(metrics.get("clip_score_by_weight")), metrics.get("clip_score_base")
    if clip and base_clip is not None:
        over = [w for w in kept if clip.get(w, base_clip) < base_clip - CLIP_DROP]
        if over and len(over) < len(kept):
            reasons.append(f"from {min(over):g} the CLIP score falls more than {CLIP_DROP:g} points below the base "
                           f"model's ({base_clip:.1f}): the LoRA starts to override the prompt")
            kept = [w for w in kept if w < min(over)]
    spread, base_spread = _positive(metrics.get("seed_spread_by_weight")), metrics.get("seed_spread_base")
    if spread and base_spread:
        scattered = [w for w in kept if spread.get(w, 0.0) > SCATTER * base_spread]
        if scattered and len(scattered) < len(kept):
            reasons.append(f"from {min(scattered):g} the seeds' pictures differ {SCATTER:g}x more than the base "
                           "model's: the style is no longer consistent")
            kept = [w for w in kept if w < min(scattered)]
    return kept


def recommend_weights(metrics: dict) -> tuple[float | None, float | None, list[str]]:
    """(low, high, reasons) over the grid's positive column weights."""
    weights = sorted(w for w in (float(c) for c in metrics.get("columns", [])) if w > 0)
    if not weights:
        return None, None, ["no LoRA weight above 0 was drawn"]
    reasons: list[str] = []
    kept = _upper_bound(metrics, _lower_bound(metrics, weights, reasons), reasons)
    if not kept:
        change = _positive(metrics.get("change_by_weight"))
        fallback = max(change, key=change.get) if change else weights[-1]
        reasons.append(f"no weight passes every test; {fallback:g} shows the LoRA most")
        kept = [fallback]
    if metrics.get("smooth") is False:
        reasons.append("most of the change happens in one step between neighbouring weights: the LoRA acts like a "
                       "switch, so fine control inside this range is limited")
    return min(kept), max(kept), reasons


def _step_of(label: str) -> float:
    parts = label.split()
    return float(parts[1]) if len(parts) == 2 and parts[0] == "step" and parts[1].isdigit() else math.inf


def _score(summary: dict, low: float, high: float) -> tuple[str, float | None]:
    """(what was scored, mean over the range) for one checkpoint: concept rate, else CLIP, else change."""
    for key, name in (("concept_rate_by_weight", "concept rate"), ("clip_score_by_weight", "CLIP score"),
                      ("change_by_weight", "change from weight 0")):
        values = [v for w, v in _positive(summary.get(key)).items() if low <= w <= high]
        if values and (key != "concept_rate_by_weight" or max(values) > 0):
            return name, sum(values) / len(values)
    return "", None


def pick_checkpoint(metrics: dict, low: float | None, high: float | None,
                    diagnosis: LossDiagnosis | None = None) -> tuple[str | None, list[str]]:
    """(label, reasons): the earliest checkpoint within reach of the best score over the recommended range."""
    labels = list(metrics.get("checkpoints") or [])
    per = metrics.get("by_checkpoint") or {}
    if len(labels) <= 1 or not per or low is None:
        return (labels[0] if labels else None), ["only one checkpoint was drawn; draw checkpoints 'all' to compare"]
    scored = {label: _score(per[label], low, high) for label in labels if label in per}
    name = next((n for n, v in scored.values() if v is not None), "")
    values = {label: v for label, (n, v) in scored.items() if v is not None and n == name}
    if not values:
        return labels[-1], ["no checkpoint could be scored; the last one is listed"]
    reasons = []
    if diagnosis is not None and diagnosis.kind == "rising" and "lowest_step" in diagnosis.details:
        turn = diagnosis.details["lowest_step"]
        early = {label: v for label, v in values.items() if _step_of(label) <= turn}
        if early:
            reasons.append(f"the loss rises after step {turn}, so later checkpoints are left out")
            values = early
    best = max(values.values())
    margin = 0.05 if name == "concept rate" else (1.0 if name == "CLIP score" else 0.1 * abs(best))
    chosen = min((label for label, v in values.items() if v >= best - margin), key=_step_of)
    shown = ", ".join(f"{label} {values[label]:.3g}" for label in values)
    reasons.append(f"{name} at weights {low:g}-{high:g}: {shown}")
    if values[chosen] < best:
        reasons.append(f"{chosen} is the earliest checkpoint within {margin:.2g} of the best: later ones only "
                       "risk memorising the training images")
    return chosen, reasons


def make_verdict(metrics: dict, diagnosis: LossDiagnosis | None = None) -> Verdict:
    """The recommended weight range and best checkpoint for a grid's ``metrics`` (and loss ``diagnosis``), read
    from the rows with the trigger when the grid has them (``rows_read``)."""
    metrics = rows_read(metrics)
    low, high, weight_reasons = recommend_weights(metrics)
    best, checkpoint_reasons = pick_checkpoint(metrics, low, high, diagnosis)
    return Verdict(low, high, best, weight_reasons, checkpoint_reasons)
