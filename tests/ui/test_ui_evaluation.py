"""The Evaluation tab's text: checkpoint names, the concept-rate table and the report shown on the page."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from ui_helpers import ROOT, fill, open_tab

from studio.service import Studio
from studio.ui.evaluation_tab import metrics_markdown, rate_table, report_for_page, run_details


def test_checkpoint_dropdown_shows_short_names_and_hands_over_full_paths(tmp_path):
    run = tmp_path / "workspace" / "output" / "demo-star" / "demo-star-20260101-120000"
    for step in (250, 500):
        folder = run / "checkpoints" / f"step-{step:06d}"
        folder.mkdir(parents=True)
        (folder / "trainer_state.json").write_text("{}")
        (folder / "pytorch_lora_weights.safetensors").write_bytes(b"")
    (run / "config.yaml").write_text("trigger_word: zq\n")
    (run / "pytorch_lora_weights.safetensors").write_bytes(b"")
    checkpoints, trigger = run_details(Studio(tmp_path / "workspace"), run.name)
    assert checkpoints["choices"][:3] == [
        ("final", "final"), ("step 500", str(run / "checkpoints" / "step-000500")),
        ("step 250", str(run / "checkpoints" / "step-000250"))]
    assert trigger["value"] == "zq"


def _result(metrics):
    from studio.eval import GridResult

    return GridResult(None, [], None, metrics)


def test_concept_rates_are_one_row_per_weight_with_and_without_the_trigger():
    metrics = {"columns": [0.8, 0.9], "concept_rate_by_weight": {0.8: 0.25, 0.9: 0.25},
               "trigger": {"with": {"concept_rate_by_weight": {0.8: 0.5, 0.9: 0.5}, "change_by_weight": {0.8: 0.1}},
                           "without": {"concept_rate_by_weight": {0.8: 0.0, 0.9: 0.0}}}, "trigger_word": "zq"}
    table = [line for line in rate_table(metrics) if line.startswith("|")]
    assert table == ["| weight | with the trigger | without it (leak) |", "|---:|---:|---:|",
                     "| 0.8 | 50% | 0% |", "| 0.9 | 50% | 0% |"]
    shown = metrics_markdown(_result(metrics))
    assert "25%" not in shown and "Numbers below: the rows with the trigger \"zq\"." in shown
    assert "change from base** — 0.8: 0.1" in shown
    plain = [line for line in rate_table({"concept_rate_by_weight": {0.5: 1.0}}) if line.startswith("|")]
    assert plain == ["| weight | concept rate |", "|---:|---:|", "| 0.5 | 100% |"]


def test_the_page_shows_the_report_without_the_grid_picture_it_cannot_load(tmp_path):
    report = ("# Evaluation: run\n\n## Verdict\n\n- **Recommended weight: 0.8-0.9**\n\n"
              "## Grid\n\n![grid](eval/g/grid.png)\n")
    shown = report_for_page(report, tmp_path)
    assert "![grid]" not in shown and "Recommended weight: 0.8-0.9" in shown
    assert shown.endswith(f"_The full report with the grid: `{tmp_path / 'evaluation.md'}`_")


@pytest.fixture(scope="module")
def demo_run(studio_server):
    """The demo preset cut to 500 steps, trained into the studio's workspace: it draws stars at the high weights."""
    _, workspace = studio_server
    command = [sys.executable, "studio.py", "train", "--config", "presets/demo/demo-star.yaml", "--quiet",
               "--set", f"output_dir={workspace / 'output' / 'demo-star'}", "--set", "max_steps=500",
               "--set", "save_steps=0", "--set", "validation_steps=0", "--set", "sample_steps=0"]
    done = subprocess.run(command, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-2000:]
    return next(workspace.glob("output/demo-star/demo-star-*"))


TABLE_JS = """() => [...document.querySelectorAll('#eval-metrics table tr')]
    .map(row => [...row.children].map(cell => cell.innerText.trim()))"""
BROKEN_WORDS_JS = """() => [...document.querySelectorAll('#eval-metrics :is(th, td), #eval-verdict :is(th, td)')]
    .filter(cell => {
        const text = document.createRange();
        text.selectNodeContents(cell);
        const lines = new Set([...text.getClientRects()].map(box => Math.round(box.top))).size;
        return lines > cell.innerText.trim().split(/\\s+/).length;
    })
    .map(cell => cell.innerText)"""


def test_the_verdict_agrees_with_the_with_trigger_table_on_the_page(demo_run, page):
    open_tab(page, "Evaluation")
    page.wait_for_function("() => document.querySelector('#eval-trigger textarea, #eval-trigger input')"
                           ".value === 'zq'")
    fill(page, "eval-prompts", "a red zq star on a white background\na blue star on a black background")
    fill(page, "eval-weights", "0.6, 0.7, 0.8, 0.9, 1")
    page.click("#eval-render")
    page.wait_for_function("() => document.querySelector('#eval-verdict').innerText.includes('Recommended weight')",
                           timeout=300_000)
    header, *rows = page.evaluate(TABLE_JS)
    assert header == ["weight", "with the trigger", "without it (leak)"]
    with_trigger = {float(weight): int(rate.rstrip("%")) for weight, rate, _ in rows}
    assert list(with_trigger) == [0.6, 0.7, 0.8, 0.9, 1.0]
    assert not page.evaluate(BROKEN_WORDS_JS), "a table beside or under the grid breaks its words"
    best = max(with_trigger.values())
    assert best > 0, f"the checker read no star in the demo LoRA's grid: {with_trigger}"

    verdict = page.inner_text("#eval-verdict")
    shown_range = re.search(r"Recommended weight: ([\d.]+)(?:-([\d.]+))?", verdict)
    low, high = float(shown_range.group(1)), float(shown_range.group(2) or shown_range.group(1))
    kept = [weight for weight, rate in with_trigger.items() if rate >= 0.8 * best]
    assert (low, high) == (min(kept), max(kept)), (verdict, with_trigger)
    top = next(weight for weight, rate in with_trigger.items() if rate == best)
    assert f"reads the concept in {best}% of the pictures with the trigger \"zq\" at weight {top:g}" in verdict
    generalise = verdict.split("Does it generalise?")[1].split("\n")[0]
    assert "a blue star on" not in generalise and "a red star on" not in generalise  # no-trigger rows: not read
    assert "a blue zq star on a black background" in page.inner_text("#eval-cells")  # trigger before "star"
    assert page.locator("#eval-verdict img").count() == 0  # no grid picture the page cannot load
