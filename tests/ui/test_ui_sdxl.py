"""SDXL in the real app, in Chromium: the family shows for the chosen model, the SDXL presets fill the form, a run
trains on the SDXL toy world and the Evaluation tab draws its grid."""
from __future__ import annotations

import pytest
from ui_helpers import ROOT, STATUS_JS, fill, open_tab, pick, run_configs, start_training

SDXL_TOY = ROOT / "assets" / "toy-world-sdxl"
pytestmark = pytest.mark.skipif(not (SDXL_TOY / "model_index.json").is_file(), reason="assets/toy-world-sdxl not built")
FAMILY_JS = "(text) => document.querySelector('#model-family').innerText.includes(text)"


def _form(page, name: str) -> str:
    return page.locator(f"#form-{name} input, #form-{name} textarea").first.input_value()


def test_sdxl_family_presets_training_and_grid(page, studio_server, screenshot_dir):
    _, workspace = studio_server
    open_tab(page, "Training")
    page.wait_for_function(FAMILY_JS, arg="SD 1.x")  # the built-in SD 1.x toy world by default
    pick(page, "preset-model", "sdxl")
    page.click("#preset-apply")
    page.wait_for_function("() => document.querySelector('#preset-notes').innerText.includes('model: sdxl')")
    assert (_form(page, "resolution"), _form(page, "lora_rank"), _form(page, "batch_size")) == ("1024", "16", "1")
    assert not page.locator("#form-train_text_encoder input").is_checked()

    fill(page, "form-base_model", str(SDXL_TOY))
    page.wait_for_function(FAMILY_JS, arg="SDXL")
    assert "v-prediction" in page.inner_text("#model-family")
    fill(page, "form-base_model", str(ROOT / "README.md"))
    page.wait_for_function(FAMILY_JS, arg="not recognised")

    pick(page, "preset-model", "sdxl")
    pick(page, "preset-demo", "demo-star-sdxl")
    pick(page, "preset-epochs", "short")
    page.click("#preset-apply")
    page.wait_for_function("() => document.querySelector('#preset-notes').innerText.includes('demo-star-sdxl')")
    page.wait_for_function(FAMILY_JS, arg="SDXL")
    assert _form(page, "resolution") == "32" and _form(page, "base_model").endswith("toy-world-sdxl")
    fill(page, "form-max_steps", "12")
    fill(page, "form-save_steps", "6")
    fill(page, "form-prior_count", "0")
    start_training(page)
    page.wait_for_function(f"() => ({STATUS_JS})() === 'finished'", timeout=480_000)
    page.screenshot(path=str(screenshot_dir / "training-sdxl.png"), full_page=True)
    snapshot = run_configs(workspace)[0]
    assert "toy-world-sdxl" in snapshot and "max_steps: 12" in snapshot

    open_tab(page, "Evaluation")
    page.wait_for_function("() => document.querySelector('#eval-run input').value.length > 0")
    page.locator("#eval-steps input[type=number]").fill("6")
    page.locator("#eval-steps input[type=number]").press("Enter")
    page.click("#eval-render")
    page.wait_for_function("() => document.querySelectorAll('#eval-cells img').length >= 6", timeout=480_000)
    captions = page.locator("#eval-cells").inner_text()
    assert all(f"weight {w}" in captions for w in ("0.4", "0.6", "0.9"))
    assert "Concept rate" in page.inner_text("#eval-metrics")
    page.screenshot(path=str(screenshot_dir / "evaluation-sdxl.png"), full_page=True)
