"""Stop mid-run in the real app in Chromium (the whole path from dataset to grid: test_ui_first_hour)."""
from __future__ import annotations

import json

from ui_helpers import STATUS_JS, STEP_JS, configure_tiny_run, fill, start_training


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
