"""Read a training loss curve (``loss.jsonl``) and say what it means and what to change.

A diffusion loss is noisy step to step (each step draws its own timesteps), so the curve is judged on window
means: the run is cut into 4-12 equal windows and each window's mean compared with the noise of such a mean.

* rising      — the end is clearly above the lowest window: diverging or overfitting;
* oscillating — the window means swing up and down far more than noise, around any downward trend;
* falling     — the last half still drops clearly: not converged yet;
* plateau     — flat at the end (converged, or never learned when it hardly fell at all);
* too_short   — fewer than ``MIN_RECORDS`` steps logged.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

MIN_RECORDS = 20
KINDS = ("falling", "plateau", "oscillating", "rising", "too_short")


@dataclass
class LossDiagnosis:
    """``kind`` (see ``KINDS``), a one-sentence ``message``, the ``advice`` (what to change) and the numbers."""

    kind: str
    message: str
    advice: str
    details: dict = field(default_factory=dict)


def _series(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(steps, losses) in step order, one value per step (the last logged wins), finite values only."""
    by_step: dict[int, float] = {}
    for index, record in enumerate(records):
        try:
            loss = float(record["loss"])
        except (KeyError, TypeError, ValueError):
            continue
        if math.isfinite(loss):
            by_step[int(record.get("step", index + 1))] = loss
    steps = sorted(by_step)
    return np.array(steps, dtype=np.int64), np.array([by_step[s] for s in steps], dtype=np.float64)


def _decreasing_fit(values: np.ndarray) -> np.ndarray:
    """The closest non-increasing sequence (pool-adjacent-violators): the curve's downward trend."""
    blocks: list[list[float]] = []  # [mean, count]
    for value in values:
        blocks.append([float(value), 1.0])
        while len(blocks) > 1 and blocks[-2][0] < blocks[-1][0]:
            mean, count = blocks.pop()
            blocks[-1] = [(blocks[-1][0] * blocks[-1][1] + mean * count) / (blocks[-1][1] + count),
                          blocks[-1][1] + count]
    return np.concatenate([np.full(int(count), mean) for mean, count in blocks])


def _windows(losses: np.ndarray) -> tuple[list[np.ndarray], np.ndarray, float]:
    """(index windows, window means, noise of one window mean)."""
    count = max(4, min(12, len(losses) // 5))
    windows = np.array_split(np.arange(len(losses)), count)
    means = np.array([losses[w].mean() for w in windows])
    noise = float(np.median([losses[w].std(ddof=1) / math.sqrt(len(w)) for w in windows]))
    return windows, means, noise


def _numbers(steps, losses, windows, means, noise) -> dict:
    best = int(np.argmin(means))
    first, last = float(means[0]), float(means[-1])
    drop = first - last
    settled = next((i for i, v in enumerate(means) if v <= last + 0.1 * max(drop, 0.0)), len(means) - 1)
    return {
        "records": int(len(losses)), "first_step": int(steps[0]), "last_step": int(steps[-1]),
        "window_means": [round(float(v), 6) for v in means], "noise": round(noise, 6),
        "start_loss": round(first, 6), "end_loss": round(last, 6), "lowest_loss": round(float(means[best]), 6),
        "lowest_step": int(steps[windows[best][-1]]), "relative_drop": round(drop / abs(first), 4) if first else 0.0,
        "settled_step": int(steps[windows[settled][0]]),
    }


def _kind(means: np.ndarray, noise: float) -> str:
    level = max(float(np.median(np.abs(means))), 1e-12)
    best = int(np.argmin(means))
    rise = float(means[-2:].mean() - means[best])
    if best <= len(means) - 3 and rise > max(0.10 * abs(means[best]), 4 * noise) \
            and min(means[-2:]) - means[best] > max(0.05 * abs(means[best]), 2.5 * noise):
        return "rising"
    swings = means - _decreasing_fit(means)
    ups = int(np.sum(np.diff(means) > max(0.03 * level, 2 * noise)))
    if ups >= 2 and float(np.sqrt(np.mean(swings ** 2))) > max(0.05 * level, 2.5 * noise):
        return "oscillating"
    half = means[len(means) // 2:]
    x = np.arange(len(half), dtype=np.float64)
    slope = float(np.polyfit(x, half, 1)[0])
    late_fall = -slope * (len(half) - 1)
    fall_noise = noise * (len(half) - 1) / math.sqrt(float(np.sum((x - x.mean()) ** 2)))
    if late_fall > max(0.05 * level, 3.5 * fall_noise):
        return "falling"
    return "plateau"


def _words(kind: str, n: dict) -> tuple[str, str]:
    """(message, advice) in the words the evaluation guide uses."""
    if kind == "rising":
        return (f"The loss went back up after step {n['lowest_step']} (from {n['lowest_loss']:.4g} to "
                f"{n['end_loss']:.4g}): training is diverging or memorising the training images.",
                f"Lower the learning rate (halve it) and train fewer epochs: use the checkpoint near step "
                f"{n['lowest_step']}. If the grids distort at high weights, add more varied data.")
    if kind == "oscillating":
        return ("The loss swings up and down in large waves instead of settling: the learning rate is probably "
                "too high.",
                "Lower the learning rate (halve it), add warm-up steps, or raise the batch size / gradient "
                "accumulation so each step averages more images.")
    if kind == "falling":
        return (f"The loss is still falling at the end (from {n['start_loss']:.4g} to {n['end_loss']:.4g}): the "
                "LoRA has not converged yet.",
                "Train more steps or epochs and keep saving checkpoints. A falling loss alone is not proof of "
                "quality: if the grids start to distort or lose variety, stop there - the model is memorising.")
    if kind == "plateau" and n["relative_drop"] < 0.05:
        return (f"The loss never really fell ({n['relative_drop']:.0%} lower at the end than at the start): "
                "the LoRA learned little.",
                "Check that the captions describe the images accurately and consistently, raise the batch size "
                "(or gradient accumulation), or raise the learning rate a little.")
    if kind == "plateau":
        return (f"The loss levelled off around step {n['settled_step']} and stayed flat: training has converged.",
                f"Stop here: more epochs on a flat loss only memorise the training images. Fewer epochs (about "
                f"step {n['settled_step']}) would do; for a better LoRA add more varied data rather than steps.")
    return (f"Only {n.get('records', 0)} loss records: too few steps to judge the curve.",
            f"Train longer (at least {MIN_RECORDS * 5} steps) before reading the loss curve; judge this run by "
            "its grids.")


def diagnose_loss(records: list[dict]) -> LossDiagnosis:
    """What the loss records (``loss.jsonl`` lines: step, loss, …) say, and what to change."""
    steps, losses = _series(records)
    if len(losses) < MIN_RECORDS:
        details = {"records": int(len(losses))}
        message, advice = _words("too_short", details)
        return LossDiagnosis("too_short", message, advice, details)
    windows, means, noise = _windows(losses)
    numbers = _numbers(steps, losses, windows, means, noise)
    kind = _kind(means, noise)
    message, advice = _words(kind, numbers)
    return LossDiagnosis(kind, message, advice, numbers)


def diagnose_run(run_dir: str | os.PathLike) -> LossDiagnosis:
    """``diagnose_loss`` on a run folder's loss log."""
    from studio.train.run_folder import RunFolder

    return diagnose_loss(RunFolder(run_dir).loss_log())
