"""FLUX.1 in the real app, in Chromium: a tiny FLUX-shaped folder chosen as the base model shows its family and its
memory setting, trains a few steps with its base weights in bf16, and the Evaluation tab draws its grid with the
flow-matching sampler."""
from __future__ import annotations

import json
import re

import pytest
from ui_helpers import ROOT, STATUS_JS, fill, open_tab, pick, run_configs, start_training

FAMILY_JS = "(text) => document.querySelector('#model-family').innerText.includes(text)"
STAR = ROOT / "assets" / "demo-datasets" / "star"


@pytest.fixture(scope="module")
def flux_model(studio_server):
    """The trained FLUX toy world when it is built, else a tiny random dev-shaped one (guidance embedding)."""
    built = ROOT / "assets" / "toy-world-flux"
    if (built / "model_index.json").is_file():
        return built
    from studio.toyworld.flux_parts import build_flux_pipeline

    _, workspace = studio_server
    folder = workspace / "models" / "tiny-flux"
    build_flux_pipeline(workspace / "models" / "tiny-flux-tokenizers", guidance_embeds=True).save_pretrained(folder)
    return folder


def test_flux_family_memory_setting_training_and_grid(page, studio_server, flux_model, screenshot_dir):
    _, workspace = studio_server
    open_tab(page, "Training")
    fill(page, "form-base_model", str(flux_model))
    page.wait_for_function(FAMILY_JS, arg="FLUX.1")
    assert "base weights: auto" in page.inner_text("#model-family")
    pick(page, "form-base_weights", "bf16")
    page.wait_for_function(FAMILY_JS, arg="base weights: bf16")
    for name, value in (("train_data_dir", str(STAR)), ("resolution", "32"), ("lora_rank", "4"),
                        ("batch_size", "4"), ("max_steps", "6"), ("save_steps", "3"), ("prior_count", "0"),
                        ("trigger_word", "zq"), ("learning_rate", "0.01")):  # high: 6 steps must move the pictures
        fill(page, f"form-{name}", value)
    page.wait_for_function(FAMILY_JS, arg="FLUX.1")
    start_training(page)
    page.wait_for_function(f"() => ({STATUS_JS})() === 'finished'", timeout=300_000)
    page.screenshot(path=str(screenshot_dir / "training-flux.png"), full_page=True)
    snapshot = run_configs(workspace)[0]
    assert "base_weights: bf16" in snapshot and "max_steps: 6" in snapshot

    open_tab(page, "Evaluation")
    page.wait_for_function("() => document.querySelector('#eval-run input').value.length > 0")
    page.wait_for_function("() => document.querySelector('#eval-sampler input').value.includes('euler')")
    config = json.loads((flux_model / "transformer" / "config.json").read_text())
    assert page.locator("#eval-guidance input").input_value() == ("3.5" if config["guidance_embeds"] else "1")
    page.locator("#eval-weights input, #eval-weights textarea").first.fill("0.5, 1")
    page.locator("#eval-steps input[type=number]").fill("5")
    page.locator("#eval-steps input[type=number]").press("Enter")
    page.click("#eval-render")
    page.wait_for_function("() => document.querySelectorAll('#eval-cells img').length >= 2", timeout=300_000)
    captions = page.locator("#eval-cells").inner_text()
    assert "weight 0.5" in captions and "weight 1" in captions
    assert "images →" in page.inner_text("#eval-message")
    change = re.search(r"change from base\W+0\.5: ([\d.e-]+), 1: ([\d.e-]+)", page.inner_text("#eval-metrics"))
    assert change and 0 < float(change[1]) < float(change[2]), page.inner_text("#eval-metrics")  # the LoRA acts
    page.screenshot(path=str(screenshot_dir / "evaluation-flux.png"), full_page=True)
