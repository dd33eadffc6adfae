"""A user's path through the real app in Chromium: dataset → presets → train → grid; and Stop mid-run."""
from __future__ import annotations

from ui_helpers import STATUS_JS, STEP_JS, configure_tiny_run, fill, open_tab, pick, run_configs, start_training

import json
import re

def test_dataset_to_trained_lora_to_weight_grid(page, studio_server, screenshot_dir):
    """On the embedded toy-world model, so the Evaluation tab can read stars with the checker."""
    _, workspace = studio_server
    pick(page, "dataset-demo", "star")
    page.wait_for_function("() => document.querySelectorAll('#dataset-gallery img').length >= 20")
    assert "20 pictures, 20 captions" in page.inner_text("#dataset-message")
    page.screenshot(path=str(screenshot_dir / "dataset.png"))

    open_tab(page, "Captioning")
    page.click("#caption-load")
    page.wait_for_function("() => document.querySelector('#caption-message').innerText.includes('20 captions')")
    assert "zq star" in page.inner_text("#caption-table")
    page.screenshot(path=str(screenshot_dir / "captioning.png"), full_page=True)

    configure_tiny_run(page)
    fill(page, "form-save_steps", "5")
    fill(page, "form-prior_count", "4")  # prior images drawn by the base model, without the trigger word
    start_training(page)
    page.wait_for_function(f"() => ({STEP_JS})() >= 2", timeout=120_000)
    page.wait_for_function(f"() => ({STATUS_JS})() === 'finished'", timeout=300_000)
    assert page.locator("#train-loss canvas, #train-loss svg").count() > 0, "no loss plot"
    assert "finished" in page.inner_text("#train-progress")
    assert "prior images: 4" in page.locator("#train-log textarea").input_value()
    page.screenshot(path=str(screenshot_dir / "training.png"), full_page=True)

    open_tab(page, "Evaluation")
    page.wait_for_function("() => document.querySelector('#eval-run input').value.length > 0")
    page.click("#eval-render")
    page.wait_for_function("() => document.querySelectorAll('#eval-cells img').length >= 6", timeout=180_000)
    captions = page.locator("#eval-cells").inner_text()
    for weight in ("0.4", "0.5", "0.6", "0.7", "0.8", "0.9"):
        assert f"weight {weight}" in captions
    assert "Concept rate" in page.inner_text("#eval-metrics")
    assert "Recommended" in page.inner_text("#eval-verdict") or "weight" in page.inner_text("#eval-verdict")
    page.screenshot(path=str(screenshot_dir / "evaluation.png"), full_page=True)

    pick(page, "eval-checkpoint", "all checkpoints")  # checkpoint x weight grid: steps 5, 10 and the final LoRA
    fill(page, "eval-trigger", "")
    page.locator("#eval-steps input[type=number]").fill("8")
    page.locator("#eval-steps input[type=number]").press("Enter")
    page.click("#eval-render")
    page.wait_for_function("() => document.querySelectorAll('#eval-cells img').length >= 18", timeout=180_000)
    captions = page.locator("#eval-cells").inner_text()
    # checkpoints every 5 steps (the newest 3 kept) and the final LoRA, each a row of the grid
    assert len(set(re.findall(r"step (\d+) ·", captions))) >= 2 and "final" in captions
    runs = list(workspace.glob("output/**/run.json"))
    assert any(json.loads(r.read_text())["status"] == "finished" for r in runs)
    snapshot = run_configs(workspace)[0]  # the form's edits reached the YAML the run used
    assert "save_steps: 5" in snapshot and "lora_rank: 4" in snapshot and "prior_count: 4" in snapshot
    finished = [json.loads(r.read_text()) for r in runs]
    assert any(info.get("prior_images") == 4 for info in finished)


def test_stop_mid_run_keeps_a_checkpoint(page, studio_server, tiny_sd_dir):
    _, workspace = studio_server
    configure_tiny_run(page, tiny_sd_dir)
    fill(page, "form-max_steps", "5000")
    fill(page, "form-sample_steps", "4")
    start_training(page)
    page.wait_for_function(f"() => ({STEP_JS})() >= 3", timeout=120_000)
    page.wait_for_function("() => document.querySelectorAll('#train-samples img').length >= 2", timeout=120_000)
    assert page.evaluate(STATUS_JS) == "running", "samples must show while the run is going"
    page.click("#train-stop")
    page.wait_for_function(f"() => ({STATUS_JS})() === 'stopped'", timeout=120_000)
    assert "checkpoint saved" in page.locator("#train-log textarea").input_value()
    stopped = [json.loads(r.read_text()) for r in workspace.glob("output/**/run.json")]
    stopped = [info for info in stopped if info["status"] == "stopped"]
    assert stopped and stopped[0]["last_checkpoint"]
