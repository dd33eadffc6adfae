"""The verdict (weight range, best checkpoint, reasons) and evaluation.md."""
from __future__ import annotations

import json

from PIL import Image

from studio.eval import GridResult, diagnose_loss, make_verdict, write_evaluation
from studio.eval.loss import LossDiagnosis
from studio.eval.report import answers
from studio.eval.verdict import pick_checkpoint

WEIGHTS = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def _by(values) -> dict:
    return dict(zip(WEIGHTS, values))


def test_eval_weight_range_from_concept_rate_and_clip_drop():
    metrics = {"columns": WEIGHTS, "concept_rate_by_weight": _by([0.1, 0.5, 0.8, 0.9, 0.9, 0.85]),
               "clip_score_by_weight": _by([30, 30, 29.5, 29, 28.5, 26]), "clip_score_base": 30.0,
               "change_by_weight": _by([0.01, 0.02, 0.03, 0.04, 0.05, 0.06]), "checkpoints": ["final"]}
    verdict = make_verdict(metrics)
    assert (verdict.weight_low, verdict.weight_high, verdict.weight_range) == (0.6, 0.8, "0.6-0.8")
    reasons = " ".join(verdict.weight_reasons)
    assert "checker reads the concept in 90%" in reasons and "from 0.9 the CLIP score falls" in reasons
    assert verdict.best_checkpoint == "final" and "only one checkpoint" in verdict.checkpoint_reasons[0]


def test_eval_weight_range_from_change_and_seed_scatter():
    metrics = {"columns": [0.0] + WEIGHTS, "change_by_weight": {0.0: 0.0, **_by([0.01, 0.02, 0.04, 0.05, 0.06, 0.07])},
               "seed_spread_by_weight": _by([0.1, 0.1, 0.11, 0.12, 0.14, 0.2]), "seed_spread_base": 0.1,
               "smooth": False, "checkpoints": ["final"]}
    verdict = make_verdict(metrics)
    assert verdict.weight_range == "0.6-0.8"
    reasons = " ".join(verdict.weight_reasons)
    assert "below 0.6" in reasons and "from 0.9 the seeds' pictures differ" in reasons and "switch" in reasons


def test_eval_best_checkpoint_is_the_earliest_near_the_best_and_respects_a_rising_loss():
    per = {"step 10": {"concept_rate_by_weight": _by([0.1, 0.2, 0.3, 0.3, 0.3, 0.3])},
           "step 20": {"concept_rate_by_weight": _by([0.6, 0.8, 0.88, 0.9, 0.9, 0.9])},
           "final": {"concept_rate_by_weight": _by([0.7, 0.85, 0.9, 0.92, 0.92, 0.92])}}
    metrics = {"checkpoints": list(per), "by_checkpoint": per}
    best, reasons = pick_checkpoint(metrics, 0.6, 0.9)
    assert best == "step 20"
    assert "concept rate at weights 0.6-0.9" in reasons[0] and "earliest" in reasons[1]
    rising = LossDiagnosis("rising", "", "", {"lowest_step": 15})
    best, reasons = pick_checkpoint(metrics, 0.6, 0.9, rising)
    assert best == "step 10" and "rises after step 15" in reasons[0]


def test_eval_write_evaluation_md_with_verdict_six_answers_and_grid(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "loss.jsonl").write_text("".join(
        json.dumps({"step": i + 1, "loss": 0.08 + 0.2 * 0.9 ** i}) + "\n" for i in range(100)))
    grid_dir = tmp_path / "grids"
    grid_dir.mkdir()
    Image.new("RGB", (64, 32), "white").save(grid_dir / "grid.png")
    per = {"step 10": {"change_by_weight": _by([0.01] * 6)}, "final": {"change_by_weight": _by([0.05] * 6)}}
    metrics = {"columns": WEIGHTS, "change_by_weight": _by([0.01, 0.02, 0.03, 0.04, 0.05, 0.06]),
               "monotonic_share": 1.0, "smooth": True, "checkpoints": list(per), "by_checkpoint": per,
               "seed_spread_by_weight": _by([0.05] * 6), "seed_spread_base": 0.1}
    result = GridResult(grid_dir / "grid.png", [], grid_dir / "grid.json", metrics, out_dir=grid_dir,
                        lora_path=run / "pytorch_lora_weights.safetensors", run_dir=run, base_model="tiny")
    path = write_evaluation(run, result)
    text = path.read_text()
    assert path == run / "evaluation.md"
    assert "**Recommended weight: 0.6-0.9**" in text and "**Best checkpoint: final**" in text
    assert "**Loss curve: plateau**" in text and diagnose_loss([]).kind == "too_short"
    for question in ("style consistent", "features kept", "generalise", "loss curve say", "strength controllable",
                     "follow the text"):
        assert question in text
    assert "a consistent style" in text and "like a dial" in text
    assert "![grid](evaluation/grid.png)" in text and (run / "evaluation" / "grid.png").is_file()
    assert "| 0.6 | 0.03 | 0.05 |" in text


def _demo_grid(star_cells: dict) -> dict:
    """The grid metrics of a demo-like grid: two star prompts with and without the trigger, seeds 0 and 1, at
    every weight; ``star_cells`` maps (checkpoint, prompt, seed) to the weights whose picture is a star."""
    import numpy as np

    from studio.eval.grid import GridRow, grid_metrics
    from studio.eval.spec import GridSpec

    prompts = [("a red zq star on a white background", True), ("a red star on a white background", False),
               ("a blue zq star on a black background", True), ("a blue star on a black background", False)]
    checkpoints = sorted({key[0] for key in star_cells}, key=lambda label: label != "step 10")
    rows = [GridRow(0, group, None, prompt, prompt, (), seed, trigger)
            for group in checkpoints for prompt, trigger in prompts for seed in (0, 1)]
    rows = [GridRow(i, r.group, r.lora, r.prompt, r.text, r.extra, r.seed, r.trigger) for i, r in enumerate(rows)]
    cells = {}
    for row in rows:
        stars = star_cells.get((row.group, row.prompt, row.seed), ())
        for weight in [0.0] + WEIGHTS:
            cells[(row.index, weight)] = {"change": weight / 10, "thumb": np.full((8, 8, 3), weight), "clip": None,
                                          "concept": weight in stars}
    return grid_metrics(rows, cells, WEIGHTS, True, GridSpec(lora="x", prompts=["p"], trigger="zq"))


def test_eval_verdict_and_answers_read_the_rows_with_the_trigger():
    """The demo's case: stars with the trigger at 0.8 and 0.9 on half the seeds, never without the trigger.

    Averaged with the star-free rows without the trigger the rate would read 25 %, and the prompt "a red star"
    (no trigger, rightly no star) would count as one the LoRA fails to generalise to."""
    stars = {("final", "a red zq star on a white background", 0): (0.8, 0.9),
             ("final", "a blue zq star on a black background", 1): (0.8, 0.9)}
    metrics = _demo_grid(stars)
    verdict = make_verdict(metrics)
    assert verdict.weight_range == "0.8-0.9"
    assert ("the checker reads the concept in 50% of the pictures with the trigger \"zq\" at weight 0.8"
            in verdict.weight_reasons[0])
    said = dict(answers(metrics, verdict, None))
    assert said["Are its features kept?"].startswith("The checker reads the concept in 50% of the pictures with")
    assert said["Does it generalise?"] == "The LoRA acts on every prompt (concept rate 0.5-0.5)."
    assert "with the trigger word concept rate 0.5, without 0 - the trigger word works" in said[
        "Does it follow the text?"]


def test_eval_best_checkpoint_is_scored_on_the_rows_with_the_trigger():
    """step 10 leaks (stars without the trigger too); final keeps the star on its trigger and draws more of them."""
    red, plain_red = "a red zq star on a white background", "a red star on a white background"
    blue, plain_blue = "a blue zq star on a black background", "a blue star on a black background"
    everywhere = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    stars = {("step 10", red, 0): everywhere, ("step 10", plain_red, 0): everywhere,
             ("step 10", plain_red, 1): everywhere, ("step 10", plain_blue, 0): everywhere,
             ("step 10", plain_blue, 1): everywhere,
             ("final", red, 0): everywhere, ("final", red, 1): everywhere, ("final", blue, 0): everywhere}
    verdict = make_verdict(_demo_grid(stars))
    assert verdict.best_checkpoint == "final"
    assert "concept rate at weights 0.4-0.9: step 10 0.25, final 0.75" in verdict.checkpoint_reasons[0]


def test_eval_report_numbers_are_the_rows_with_the_trigger_and_the_leak_beside_them(tmp_path):
    stars = {("final", "a red zq star on a white background", 0): (0.8, 0.9),
             ("final", "a blue zq star on a black background", 1): (0.8, 0.9),
             ("final", "a blue star on a black background", 0): (0.9,)}
    grid_dir = tmp_path / "grid"
    grid_dir.mkdir()
    Image.new("RGB", (64, 32), "white").save(grid_dir / "grid.png")
    result = GridResult(grid_dir / "grid.png", [], grid_dir / "grid.json", _demo_grid(stars), out_dir=grid_dir)
    text = write_evaluation(None, result).read_text()
    numbers = text.split("## Numbers per weight")[1]
    assert "Rows with the trigger \"zq\"." in numbers
    assert "| weight | change from weight 0 | seed spread | concept rate | concept rate without the trigger (leak) |" \
        in numbers
    assert "| 0.8 | 0.08 | 0 | 0.5 | 0 |" in numbers and "| 0.9 | 0.09 | 0 | 0.5 | 0.25 |" in numbers
