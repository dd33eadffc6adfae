"""Numbers measured on a grid's pictures: strength response, seed consistency, CLIP score and concept rate.

Every cell is compared with the weight-0 picture of its own row (same prompt, seed and starting noise), which
the grid always draws, shown or not. ``METRIC_HELP`` holds the one-line explanation the UI shows for each;
``metric_help`` the same with the concept rate explained by the checker that reads the pictures.
"""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Sequence

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from .grid import GridRow

METRIC_HELP = {
    "change_from_base": "Strength response: how far each picture moves from the same seed's weight-0 picture "
                        "(mean pixel change, 0-1); it should rise steadily with the weight.",
    "monotonic_share": "Monotonic: share of rows whose change from weight 0 never falls as the weight rises "
                       "(1.0 = the weight works like a dial).",
    "steepest_step_share": "Smoothness: the share of the change from the lowest to the highest weight that happens "
                           "in one step between neighbouring weights (low = smooth; near 1 = an on/off switch).",
    "seed_spread": "Seed consistency: how different one prompt's pictures are across seeds at one weight (mean "
                   "distance of 8x8 thumbnails, 0-1); lower than at weight 0 = a consistent style.",
    "clip_score": "CLIP score: how well each picture matches its prompt's text (100 x cosine similarity of the "
                  "CLIP image and text embeddings); falling as the weight rises = the LoRA overrides the prompt.",
    "concept_rate": "Concept rate: share of pictures the concept checker reads as what the prompt names.",
    "loss_curve": "Loss curve: whether the training loss is still falling, has levelled off, swings or rises, "
                  "and what to change.",
}
THUMBNAIL = 8


def to_array(image: Image.Image) -> np.ndarray:
    """RGB pixels as float32 in 0..1."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0


def thumbnail(image: Image.Image, side: int = THUMBNAIL) -> np.ndarray:
    """The picture area-averaged to ``side`` x ``side``: its layout and colours without the fine detail."""
    return to_array(image.convert("RGB").resize((side, side), Image.BOX))


def change(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute pixel difference, 0 (identical) .. 1."""
    return float(np.abs(a - b).mean())


def metric_help(checker_name: str = "") -> dict[str, str]:
    """``METRIC_HELP`` with the concept rate as the checker ``checker_name`` explains it ("" = the checker that
    ``checker="on"`` uses, so a grid no checker read still says what its concept rate would mean)."""
    from .concepts import default_checker, get_checker

    checker = get_checker(checker_name) if checker_name else default_checker()
    if checker is None or not checker.help:
        return dict(METRIC_HELP)
    return {**METRIC_HELP, "concept_rate": checker.help}


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _curve_is_monotonic(curve: list[float]) -> bool:
    tolerance = max(0.02 * max(curve), 1e-4)
    return all(b >= a - tolerance for a, b in zip(curve, curve[1:]))


def strength_response(curves: list[list[float]], weights: list[float]) -> dict:
    """Monotonic share and smoothness of change-from-base curves (one per row, over ascending ``weights``)."""
    keep = [i for i, w in enumerate(weights) if w >= 0]  # negative ("anti") weights: not part of the dial
    weights = [weights[i] for i in keep]
    curves = [[c[i] for i in keep] for c in curves if c]
    if not curves or not weights:
        return {"monotonic_share": None, "steepest_step_share": None, "smooth": None}
    with_zero = curves if weights[0] == 0.0 else [[0.0] + c for c in curves]
    monotonic = sum(_curve_is_monotonic(c) for c in with_zero) / len(with_zero)
    positive = [i for i, w in enumerate(weights) if w > 0]  # the 0 -> first-weight gap is usually wider
    mean_curve = np.mean(np.array(curves), axis=0)[positive]
    rises = np.diff(mean_curve)
    total = float(mean_curve[-1] - mean_curve[0]) if len(positive) else 0.0
    if len(positive) < 3 or total <= 1e-6:
        share, smooth = None, None
    else:
        share = float(max(rises.max(), 0.0) / total)
        smooth = share <= max(0.5, 2.0 / (len(positive) - 1))
    return {"monotonic_share": round(monotonic, 4), "steepest_step_share": None if share is None else round(share, 4),
            "smooth": smooth}


def seed_spread(rows: Sequence[GridRow], cells: dict, weight: float) -> float | None:
    """Mean pairwise thumbnail distance between the seeds of each (checkpoint, prompt), averaged; None if 1 seed."""
    groups: dict[tuple, list] = {}
    for row in rows:
        cell = cells.get((row.index, weight))
        if cell is not None:
            groups.setdefault((row.group, row.prompt), []).append(cell["thumb"])
    spreads = [np.mean([change(a, b) for a, b in itertools.combinations(thumbs, 2)])
               for thumbs in groups.values() if len(thumbs) > 1]
    return float(np.mean(spreads)) if spreads else None


def _by_weight(rows, cells: dict, weights: list[float], key: str) -> dict[float, float]:
    result = {}
    for weight in weights:
        value = _mean(cells[(r.index, weight)].get(key) for r in rows if (r.index, weight) in cells)
        if value is not None:
            result[weight] = round(value, 4)
    return result


def summarise(rows: Sequence[GridRow], cells: dict, weights: list[float]) -> dict:
    """The grid's numbers for ``rows`` over the column ``weights`` (base = weight-0 values, shown or not).

    ``cells`` maps (row index, weight) to ``{"change", "thumb", "clip", "concept"}`` (clip / concept may be None).
    """
    weights = sorted(weights)
    complete = [r for r in rows if all((r.index, w) in cells for w in weights)]
    curves = [[cells[(r.index, w)]["change"] for w in weights] for r in complete]
    summary = {"change_by_weight": _by_weight(rows, cells, weights, "change")}
    summary.update(strength_response(curves, weights))
    spreads = {w: seed_spread(rows, cells, w) for w in weights}
    if any(v is not None for v in spreads.values()):
        summary["seed_spread_by_weight"] = {w: round(v, 4) for w, v in spreads.items() if v is not None}
        base = seed_spread(rows, cells, 0.0)
        summary["seed_spread_base"] = None if base is None else round(base, 4)
    for key, name in (("clip", "clip_score"), ("concept", "concept_rate")):
        values = _by_weight(rows, cells, weights, key)
        if values:
            summary[f"{name}_by_weight"] = values
            base = _by_weight(rows, cells, [0.0], key)
            summary[f"{name}_base"] = base.get(0.0)
    return summary
