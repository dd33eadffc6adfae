"""The Training tab in Chromium, read as a user reads it: what a preset combination set and what it breaks, empty
optional numbers shown empty, the loss plot's drawn line against the run's loss log, and the progress and message
lines before, during and after a run."""
from __future__ import annotations

import json

from plot_reading import assert_plot_matches_log
from ui_helpers import STATUS_JS, STEP_JS, fill, open_tab, pick

NOTES_JS = "(text) => document.querySelector('#preset-notes').innerText.includes(text)"
MESSAGE_JS = "(text) => document.querySelector('#train-message').innerText.includes(text)"


def _form(page, name: str) -> str:
    return page.locator(f"#form-{name} input, #form-{name} textarea").first.input_value()


def test_unset_optional_numbers_show_empty_not_zero(page):
    open_tab(page, "Training")
    for name, hint in (("lora_alpha", "empty = equal to the rank"), ("max_steps", "empty")):
        assert _form(page, name) == "", f"{name} is unset and must show empty"
        placeholder = page.locator(f"#form-{name} textarea, #form-{name} input").first.get_attribute("placeholder")
        assert hint in (placeholder or ""), (name, placeholder)


def test_presets_show_what_each_set_what_was_overridden_and_the_advice_broken(page):
    open_tab(page, "Training")
    pick(page, "preset-demo", "demo-star")
    pick(page, "preset-rank", "rank-8")
    pick(page, "preset-epochs", "short")
    page.click("#preset-apply")
    page.wait_for_function(NOTES_JS, arg="demo-star → rank-8 → short")
    notes = page.inner_text("#preset-notes")
    assert "this combination trains about 15 (5 epochs × 3 steps of batch 8 over 20 pictures)" in notes
    assert "short advises learning_rate at most 0.0003" in notes and "it is 0.003, set by demo-star" in notes
    rows = {line.split("\t")[0]: line.split("\t")[1:] for line in notes.splitlines() if "\t" in line}
    assert rows["lora_rank"][:3] == ["8", "rank-8", "demo-star: 16"], rows["lora_rank"]
    assert rows["max_steps"][:3] == ["empty", "short", "demo-star: 1700"], rows["max_steps"]
    assert rows["learning_rate"][:3] == ["0.003", "demo-star", "—"], rows["learning_rate"]
    assert rows["epochs"][:2] == ["5", "short"], rows["epochs"]
    assert (_form(page, "lora_rank"), _form(page, "lora_alpha"), _form(page, "max_steps")) == ("8", "", "")

    for elem_id in ("preset-rank", "preset-epochs"):  # back to the demo alone: nothing overridden, no advice broken
        page.click(f"#{elem_id} input")
        page.locator("ul[role=listbox] li").first.click()  # the empty choice
        page.wait_for_timeout(300)
    page.click("#preset-apply")
    page.wait_for_function(NOTES_JS, arg="a later preset winning: demo-star.")
    notes = page.inner_text("#preset-notes")
    assert "⚠" not in notes and "advises" not in notes
    assert (_form(page, "lora_rank"), _form(page, "lora_alpha"), _form(page, "max_steps")) == ("16", "32", "1700")


def _short_demo_run(page, steps: int) -> None:
    """The star demo on the embedded toy model, cut to ``steps`` steps without priors, samples or validation."""
    pick(page, "preset-demo", "demo-star")
    page.click("#preset-apply")
    page.wait_for_function(NOTES_JS, arg="demo: demo-star")
    for name, value in (("max_steps", str(steps)), ("prior_count", "0"), ("sample_steps", "0"),
                        ("validation_steps", "0"), ("save_steps", "0")):
        fill(page, f"form-{name}", value)


RECORD_JS = """() => {
  window.seenAfterStart = [];
  const read = () => [document.querySelector('#train-message').innerText,
                      document.querySelector('#train-progress .train-progress')?.dataset.status];
  new MutationObserver(() => window.seenAfterStart.push(read()))
    .observe(document.querySelector('#tab-training'), {subtree: true, childList: true, characterData: true,
                                                      attributes: true});
}"""


def _run_dir(workspace, total_steps: int):
    return next(path.parent for path in workspace.glob("output/**/run.json")
                if json.loads(path.read_text())["total_steps"] == total_steps)


def test_loss_plot_draws_the_loss_log_at_step_8_and_at_the_end(page, studio_server):
    _, workspace = studio_server
    open_tab(page, "Training")
    _short_demo_run(page, 40)
    page.click("#train-start")
    page.wait_for_function(f"() => ({STEP_JS})() >= 8", timeout=300_000)
    page.wait_for_timeout(1500)  # the next poll draws what the page's step counter already shows
    run_dir = _run_dir(workspace, 40)
    early = assert_plot_matches_log(page, run_dir, at_least=8)
    page.wait_for_function(f"() => ({STATUS_JS})() === 'finished'", timeout=300_000)
    page.wait_for_timeout(2500)
    assert assert_plot_matches_log(page, run_dir, at_least=40) == 40 > early
    assert "CPU threads: 1 (OMP_NUM_THREADS=1)" in page.locator("#train-log textarea").input_value()


def test_after_start_the_page_shows_the_new_run_and_after_the_end_how_it_ended(page):
    open_tab(page, "Training")
    _short_demo_run(page, 2)
    page.click("#train-start")
    page.wait_for_function(f"() => ({STATUS_JS})() === 'finished'", timeout=300_000)
    page.wait_for_function(MESSAGE_JS, arg="✓ training finished: 2/2 steps", timeout=30_000)
    assert "training started" not in page.inner_text("#train-message")

    fill(page, "form-max_steps", "3")
    page.evaluate(RECORD_JS)
    page.click("#train-start")
    page.wait_for_function(MESSAGE_JS, arg="training started")
    started = [status for message, status in page.evaluate("window.seenAfterStart") if "training started" in message]
    assert started and "finished" not in started, f"the previous run's bar showed after Start: {started}"
    page.wait_for_function(MESSAGE_JS, arg="✓ training finished: 3/3 steps", timeout=300_000)
    assert "3/3" in page.inner_text("#train-progress")


LOG_JS = "(text) => document.querySelector('#train-log textarea').value.includes(text)"


def test_save_now_and_sample_now_work_while_a_run_is_active(page):
    open_tab(page, "Training")
    assert page.locator("#train-save-now").is_disabled() and page.locator("#train-sample-now").is_disabled()
    _short_demo_run(page, 2000)
    page.click("#train-start")
    page.wait_for_function(f"() => ({STEP_JS})() >= 2", timeout=300_000)
    page.wait_for_function("() => !document.querySelector('#train-save-now').disabled", timeout=30_000)
    page.click("#train-save-now")
    page.wait_for_function(MESSAGE_JS, arg="a checkpoint will be saved after this step")
    page.wait_for_function(LOG_JS, arg="checkpoint saved at step", timeout=120_000)
    page.click("#train-sample-now")
    page.wait_for_function(LOG_JS, arg="samples at step", timeout=120_000)
    page.wait_for_function("() => document.querySelectorAll('#train-samples img').length > 0", timeout=30_000)
    assert page.evaluate(f"({STATUS_JS})()") == "running", "the run goes on after both"
    page.click("#train-stop")
    page.wait_for_function(f"() => ({STATUS_JS})() === 'stopped'", timeout=120_000)
    page.wait_for_function("() => document.querySelector('#train-save-now').disabled", timeout=30_000)
    assert page.locator("#train-sample-now").is_disabled()
