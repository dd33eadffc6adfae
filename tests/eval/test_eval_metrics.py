"""Metrics: strength response, seed spread, toy-world concept rate and the CLIP score (tiny CLIP from config)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from studio.eval import EvalError, GridSpec, load_clip_scorer, render_grid
from studio.eval.grid import GridRow, measure
from studio.eval.metrics import METRIC_HELP, seed_spread, strength_response, summarise
from studio.toyworld.concepts import TOY_WORLD_CHECKER
from studio.toyworld.world import Scene, render

STAR = "a red zq star on a white background"
CIRCLE = "a blue circle on a gray background"


def test_eval_strength_response_monotonic_and_smooth():
    weights = [0.4, 0.5, 0.6, 0.7, 0.8]
    steady = strength_response([[0.1, 0.2, 0.3, 0.4, 0.5], [0.2, 0.3, 0.4, 0.5, 0.6]], weights)
    assert steady == {"monotonic_share": 1.0, "steepest_step_share": 0.25, "smooth": True}
    switch = strength_response([[0.01, 0.01, 0.5, 0.5, 0.51]], weights)
    assert switch["smooth"] is False and switch["steepest_step_share"] > 0.9
    mixed = strength_response([[0.1, 0.2, 0.3, 0.4, 0.5], [0.5, 0.3, 0.2, 0.4, 0.6]], weights)
    assert mixed["monotonic_share"] == 0.5


def _rows(prompts_seeds, group="final"):
    return [GridRow(i, group, Path("x"), p, p, (), s, None) for i, (p, s) in enumerate(prompts_seeds)]


def test_eval_concept_rate_is_the_star_rate_by_weight_column():
    """Rows asking for a zq star: a circle at weight 0 and 0.4, a star at 0.8 -> star rate 0, 0, 1."""
    rows = _rows([(STAR, 0), (STAR, 1), (CIRCLE, 0)])
    star, circle = render(Scene("red", "star", "white")), render(Scene("red", "circle", "white"))
    blue_circle = render(Scene("blue", "circle", "gray"))
    images = {}
    for row in rows[:2]:
        images.update({(row.index, 0.0): circle, (row.index, 0.4): circle, (row.index, 0.8): star})
    images.update({(2, 0.0): blue_circle, (2, 0.4): blue_circle, (2, 0.8): star})
    cells = measure(GridSpec(lora="x", prompts=[STAR]), rows, images, checker=TOY_WORLD_CHECKER)
    assert cells[(0, 0.8)]["checker"]["is_star"] and cells[(0, 0.8)]["concept"] is True
    assert cells[(2, 0.4)]["concept"] is True and cells[(2, 0.8)]["concept"] is False
    star_rows = summarise(rows[:2], cells, [0.4, 0.8])
    assert star_rows["concept_rate_by_weight"] == {0.4: 0.0, 0.8: 1.0}
    assert star_rows["concept_rate_base"] == 0.0
    assert star_rows["seed_spread_by_weight"] == {0.4: 0.0, 0.8: 0.0}  # the same picture for both seeds
    everything = summarise(rows, cells, [0.4, 0.8])["concept_rate_by_weight"]  # + the circle row: 1 of 3, 2 of 3
    assert everything == {0.4: pytest.approx(1 / 3, abs=1e-4), 0.8: pytest.approx(2 / 3, abs=1e-4)}


def test_eval_seed_spread_needs_two_seeds():
    rows = _rows([(CIRCLE, 0), (CIRCLE, 1)])
    cells = {(0, 0.5): {"thumb": np.zeros((8, 8, 3))}, (1, 0.5): {"thumb": np.ones((8, 8, 3))}}
    assert seed_spread(rows, cells, 0.5) == 1.0
    assert seed_spread(rows[:1], cells, 0.5) is None


def test_eval_tiny_clip_scores_text_image_pairs(tiny_clip_dir):
    cache: dict = {}
    scorer = load_clip_scorer(str(tiny_clip_dir), cache=cache)
    assert load_clip_scorer(str(tiny_clip_dir), cache=cache) is scorer
    images = [render(Scene("red", "circle", "white")), render(Scene("blue", "square", "black"))]
    scores = scorer.score(images, ["a red circle on a white background", "a blue square on a black background"])
    assert len(scores) == 2 and all(0.0 <= s <= 100.0 for s in scores)
    assert scorer.score(images[:1], ["a red circle on a white background"]) == scores[:1]
    with pytest.raises(EvalError, match="cannot be loaded"):
        load_clip_scorer(str(tiny_clip_dir.parent / "tokenizer"))
    with pytest.raises(EvalError, match="not a folder or a hub id"):
        load_clip_scorer("./no/such/clip")


def test_eval_grid_with_clip_and_checker(trained_run, tiny_clip_dir, tmp_path, pipeline_cache):
    spec = GridSpec(lora=str(trained_run), prompts=[STAR, CIRCLE], seeds=[0, 1], weights=[0.5, 1.0], steps=2,
                    clip_model=str(tiny_clip_dir), checker="on")
    result = render_grid(spec, tmp_path / "grid", pipeline_cache=pipeline_cache)
    metrics = result.metrics
    assert set(metrics["clip_score_by_weight"]) == {0.5, 1.0} and metrics["clip_score_base"] is not None
    assert set(metrics["concept_rate_by_weight"]) == {0.5, 1.0}
    assert set(metrics["seed_spread_by_weight"]) == {0.5, 1.0}
    assert set(metrics["by_prompt"]) == {STAR, CIRCLE}
    cell = result.cells[0].metrics
    assert {"change_from_base", "clip_score", "checker", "concept"} <= set(cell)
    assert metrics["checker"] is True
    auto = render_grid(GridSpec(lora=str(trained_run), prompts=[STAR], weights=[0.5], steps=2),
                       tmp_path / "auto", pipeline_cache=pipeline_cache)
    assert auto.metrics["checker"] is False, "a random model's pictures are not toy-world pictures"
    assert "concept_rate_by_weight" not in auto.metrics
    assert all(key in METRIC_HELP for key in ("change_from_base", "seed_spread", "clip_score", "concept_rate"))
