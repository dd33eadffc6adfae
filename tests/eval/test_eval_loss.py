"""Loss-curve diagnosis: a synthetic curve for every kind, and the advice each one gives."""
from __future__ import annotations

import json

import numpy as np
import pytest

from studio.eval import diagnose_loss
from studio.eval.loss import KINDS, diagnose_run

STEPS = np.arange(300)


def _records(values) -> list[dict]:
    return [{"step": i + 1, "epoch": i // 30 + 1, "loss": float(v), "lr": 1e-4, "time": i * 0.1}
            for i, v in enumerate(values)]


def _curve(kind: str, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, 0.004, len(STEPS))
    t = STEPS
    if kind == "falling":  # slow decay, far from done at the end
        return 0.05 + 0.2 * np.exp(-t / 250) + noise
    if kind == "plateau":  # fast decay, then flat
        return 0.08 + 0.2 * np.exp(-t / 15) + noise
    if kind == "oscillating":  # big waves on a gentle decay
        return 0.1 + 0.1 * np.exp(-t / 60) + 0.04 * np.sin(2 * np.pi * t / 50) + noise
    if kind == "rising":  # down to step 120, then back up
        bottom = 0.06 + 0.2 * np.exp(-120 / 20)
        return np.where(t < 120, 0.06 + 0.2 * np.exp(-t / 20), bottom + 0.0008 * (t - 120)) + noise
    raise ValueError(kind)


ADVICE = {
    "falling": ["more steps", "memorising"],
    "plateau": ["Stop here", "fewer epochs", "varied data"],
    "oscillating": ["Lower the learning rate", "batch size"],
    "rising": ["Lower the learning rate", "fewer epochs", "checkpoint"],
}


@pytest.mark.parametrize("kind", ["falling", "plateau", "oscillating", "rising"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eval_each_loss_kind_has_a_curve_that_triggers_it(kind, seed):
    diagnosis = diagnose_loss(_records(_curve(kind, seed)))
    assert diagnosis.kind == kind, diagnosis.message
    assert diagnosis.message and diagnosis.advice
    for words in ADVICE[kind]:
        assert words.lower() in diagnosis.advice.lower(), (words, diagnosis.advice)


def test_eval_too_short_and_bad_records():
    diagnosis = diagnose_loss(_records([0.2, 0.1, 0.1]))
    assert diagnosis.kind == "too_short" and "3" in diagnosis.message and "longer" in diagnosis.advice
    junk = [{"step": 1, "loss": float("nan")}, {"step": 2}, {"loss": "x"}] * 10
    assert diagnose_loss(junk).kind == "too_short"
    assert set(KINDS) == {"falling", "plateau", "oscillating", "rising", "too_short"}


def test_eval_noisy_flat_loss_is_a_plateau_not_oscillation():
    """Diffusion losses jump step to step; that noise alone must not read as oscillation or a trend."""
    rng = np.random.default_rng(5)
    for seed in range(20):
        values = 0.1 + 0.1 * np.exp(-STEPS / 15) + np.abs(np.random.default_rng(seed).normal(0, 0.06, len(STEPS)))
        assert diagnose_loss(_records(values)).kind == "plateau", seed
    never = diagnose_loss(_records(0.1 + rng.normal(0, 0.02, len(STEPS))))
    assert never.kind == "plateau" and "never" in never.message and "captions" in never.advice


def test_eval_plateau_names_the_step_it_levelled_off_and_diagnose_run_reads_loss_jsonl(tmp_path):
    diagnosis = diagnose_loss(_records(_curve("plateau", 0)))
    assert 20 <= diagnosis.details["settled_step"] <= 100
    rising = diagnose_loss(_records(_curve("rising", 0)))
    assert 90 <= rising.details["lowest_step"] <= 160
    lines = "".join(json.dumps(r) + "\n" for r in _records(_curve("rising", 1)))
    (tmp_path / "loss.jsonl").write_text(lines + '{"step": 301, "lo')  # a torn last line is skipped
    assert diagnose_run(tmp_path).kind == "rising"
