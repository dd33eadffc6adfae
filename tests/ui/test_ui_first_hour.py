"""The first hour, in Chromium, as the README walks it on the shipped demo: scan the star dataset, read its
captions, train with the demo preset, and read the grid and the verdict — asserting at each step on what the page
says and shows. It also makes the README's screenshots (``STUDIO_SCREENSHOT_DIR=docs/screenshots``)."""
from __future__ import annotations

import json
import re

from plot_reading import assert_plot_matches_log
from ui_helpers import ROOT, STATUS_JS, STEP_JS, fill, open_tab, pick
from studio.train.run_folder import RunFolder


STAR = ROOT / "assets" / "demo-datasets" / "star"
TEXT_JS = "([selector, text]) => document.querySelector(selector).innerText.includes(text)"
RATE_TABLE_JS = """() => [...document.querySelectorAll('#eval-metrics table tr')]
    .map(row => [...row.children].map(cell => cell.innerText.trim()))"""


def _wait_text(page, selector: str, text: str, timeout: int = 120_000) -> str:
    page.wait_for_function(TEXT_JS, arg=[selector, text], timeout=timeout)
    return page.inner_text(selector)


def _scan_the_demo(page, screenshot_dir) -> None:
    pick(page, "dataset-demo", "star")
    page.wait_for_function("() => document.querySelectorAll('#dataset-gallery img').length >= 20")
    assert "20 pictures, 20 captions" in page.inner_text("#dataset-message")
    assert page.locator("#dataset-resolution input").first.input_value() == "32"  # the toy world's size
    page.click("#dataset-scan")
    verdict = _wait_text(page, "#dataset-verdict", "ready for training")
    assert "All 20 images are ready for training" in verdict, verdict
    page.screenshot(path=str(screenshot_dir / "dataset.png"), full_page=True)


def _read_the_captions(page, screenshot_dir) -> None:
    open_tab(page, "Captioning")
    fill(page, "caption-folder", str(STAR))
    page.click("#caption-load")
    _wait_text(page, "#caption-message", "20 captions", timeout=60_000)
    table = page.inner_text("#caption-table")
    assert table.count("zq star") == 20, "every demo caption names the trigger before the class word"
    page.screenshot(path=str(screenshot_dir / "captioning.png"), full_page=True)


STEPS = 600  # the demo trains 1700; 600 draw stars at the high weights and keep the suite within its time


def _train_the_demo(page, workspace, screenshot_dir):
    """Apply the demo preset, cut to ``STEPS`` steps in the form; returns the run folder."""
    open_tab(page, "Training")
    pick(page, "preset-demo", "demo-star")
    page.click("#preset-apply")
    notes = _wait_text(page, "#preset-notes", "demo-star", timeout=60_000)
    assert "⚠" not in notes, f"the demo preset alone breaks no advice: {notes}"
    assert page.locator("#form-max_steps input, #form-max_steps textarea").first.input_value() == "1700"
    fill(page, "form-max_steps", str(STEPS))
    fill(page, "form-save_steps", "200")
    page.click("#train-start")
    _wait_text(page, "#train-message", "training started", timeout=60_000)
    page.wait_for_function(f"() => ({STEP_JS})() >= 8", timeout=300_000)
    page.wait_for_timeout(1500)  # the next poll draws what the step counter already shows
    run_dir = next(path.parent for path in workspace.glob("output/**/run.json"))
    assert_plot_matches_log(page, run_dir, at_least=8, lines=2)  # numeric axes; the validation line too
    page.wait_for_function(f"() => ({STATUS_JS})() === 'finished'", timeout=1_200_000)
    message = _wait_text(page, "#train-message", "✓ training finished", timeout=30_000)
    assert f"{STEPS}/{STEPS} steps" in message, message
    drawn = assert_plot_matches_log(page, run_dir, at_least=STEPS, lines=2, step_tolerance=2)
    assert drawn == STEPS == len(RunFolder(run_dir).loss_log())  # both lines seen at the end, a point a step
    assert "prior images: 20" in page.locator("#train-log textarea").input_value()
    assert page.locator("#train-samples img").count() >= 2, "the validation prompts' samples are shown"
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    page.screenshot(path=str(screenshot_dir / "training.png"), full_page=True)
    return run_dir


def _with_trigger_rates(page) -> dict[float, int]:
    header, *rows = page.evaluate(RATE_TABLE_JS)
    assert header == ["weight", "with the trigger", "without it (leak)"], header
    return {float(weight): int(rate.rstrip("%")) for weight, rate, _ in rows}


def _grid_and_verdict(page, screenshot_dir) -> None:
    """A prompt with the trigger and one without (the studio inserts it where the captions have it)."""
    open_tab(page, "Evaluation")
    page.wait_for_function("() => document.querySelector('#eval-trigger textarea, #eval-trigger input')"
                           ".value === 'zq'")
    fill(page, "eval-prompts", "a red zq star on a white background\na blue star on a black background")
    page.click("#eval-render")
    verdict = _wait_text(page, "#eval-verdict", "Recommended weight", timeout=600_000)
    rates = _with_trigger_rates(page)
    assert list(rates) == [0.4, 0.5, 0.6, 0.7, 0.8, 0.9], rates
    assert rates[0.9] >= 50, f"the trained demo draws stars at weight 0.9: {rates}"
    best = max(rates.values())
    low, high = re.search(r"Recommended weight: ([\d.]+)(?:-([\d.]+))?", verdict).groups()
    kept = [weight for weight, rate in rates.items() if rate >= 0.8 * best]
    assert (float(low), float(high or low)) == (min(kept), max(kept)), (verdict, rates)
    assert "a blue zq star on a black background" in page.inner_text("#eval-cells")  # trigger before "star"
    assert page.locator("#eval-cells img").count() >= 12
    page.screenshot(path=str(screenshot_dir / "evaluation.png"), full_page=True)


def _checkpoint_grid(page) -> None:
    pick(page, "eval-checkpoint", "all checkpoints")  # checkpoint x weight: the kept checkpoints and the final LoRA
    fill(page, "eval-prompts", "a red zq star on a white background")
    fill(page, "eval-trigger", "")
    page.locator("#eval-steps input[type=number]").fill("8")
    page.locator("#eval-steps input[type=number]").press("Enter")
    page.click("#eval-render")
    captions = _wait_text(page, "#eval-cells", "step 400 ·", timeout=300_000)  # the new grid, not the last
    assert page.locator("#eval-cells img").count() >= 3 * 6, "2 checkpoints and the final LoRA, 6 weights"
    assert set(re.findall(r"step (\d+) ·", captions)) == {"200", "400"} and "final" in captions


def test_the_first_hour_on_the_demo(page, studio_server, screenshot_dir):
    _, workspace = studio_server
    shipped = {path.name: path.read_bytes() for path in STAR.iterdir()}
    _scan_the_demo(page, screenshot_dir)
    _read_the_captions(page, screenshot_dir)
    _train_the_demo(page, workspace, screenshot_dir)
    _grid_and_verdict(page, screenshot_dir)
    _checkpoint_grid(page)
    assert {path.name: path.read_bytes() for path in STAR.iterdir()} == shipped  # the demo is as it ships
