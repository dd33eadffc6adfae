"""The Training tab's process count in Chromium: offered through ``LORA_STUDIO_MAX_PROCESSES`` on this CPU, a
2-process run (gloo) started from the page finishes with its loss plot."""
from __future__ import annotations

import json

import pytest
from ui_helpers import STATUS_JS, configure_tiny_run, fill, pick, running_studio, start_training

from studio.app.processes import MAX_PROCESSES_ENV

EFFECTIVE_JS = "() => document.querySelector('#train-effective-batch').innerText"


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory):
    """This module's studio offers up to 2 processes (``page`` from conftest opens it)."""
    workspace = tmp_path_factory.mktemp("workspace-processes")
    with running_studio(workspace, **{MAX_PROCESSES_ENV: "2"}) as url:
        yield url, workspace


def test_pick_two_processes_and_train(page, studio_server, tiny_sd_dir):
    _, workspace = studio_server
    configure_tiny_run(page, tiny_sd_dir)
    assert page.locator("#train-processes").is_visible(), "the process count is offered"
    page.wait_for_function(f"() => ({EFFECTIVE_JS})().includes('16 = 8 per device × 2 processes')")
    pick(page, "train-processes", "1")
    page.wait_for_function(f"() => ({EFFECTIVE_JS})().includes('8 = 8 per device × 1 process ')")
    pick(page, "train-processes", "2")
    page.wait_for_function(f"() => ({EFFECTIVE_JS})().includes('× 2 processes')")
    fill(page, "form-max_steps", "6")
    start_training(page)
    assert "in 2 processes" in page.inner_text("#train-message")
    page.wait_for_function(f"() => ({STATUS_JS})() === 'finished'", timeout=480_000)
    assert page.locator("#train-loss canvas, #train-loss svg").count() > 0, "no loss plot"
    assert "6/6" in page.inner_text("#train-progress")
    assert "2 process(es)" in page.locator("#train-log textarea").input_value()
    infos = [json.loads(path.read_text()) for path in workspace.glob("output/**/run.json")]
    assert [(info["status"], info["num_processes"], info["effective_batch"]) for info in infos] == [("finished", 2, 16)]


def test_one_device_hides_the_control(monkeypatch):
    from studio.ui.training_processes import on_page_load

    monkeypatch.setenv(MAX_PROCESSES_ENV, "1")
    row, dropdown = on_page_load()
    assert row["visible"] is False and dropdown["choices"] == [1]
    monkeypatch.setenv(MAX_PROCESSES_ENV, "4")
    row, dropdown = on_page_load()
    assert row["visible"] is True and dropdown["value"] == 4 and dropdown["choices"] == [1, 2, 3, 4]
