"""Shared by the browser tests: a free port, waiting for HTTP, and driving gradio widgets."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, timeout: float = 60) -> float:
    """Seconds until ``url`` answers 200."""
    started = time.time()
    while time.time() - started < timeout:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return time.time() - started
        except OSError:
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


@contextlib.contextmanager
def running_studio(workspace: Path, *args: str, **env: str):
    """``python studio.py`` on a free port with ``workspace`` (and ``args`` and ``env`` added); yields its URL."""
    port = free_port()
    log = open(workspace / "studio.log", "w")
    process = subprocess.Popen(
        [sys.executable, "studio.py", "--port", str(port), "--workspace", str(workspace), *args],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1", **env},
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


STATUS_JS = "() => document.querySelector('#train-progress .train-progress')?.dataset.status"
STEP_JS = "() => Number(document.querySelector('#train-progress .train-progress')?.dataset.step || 0)"


def pick(page, elem_id: str, option: str) -> None:
    page.click(f"#{elem_id} input")
    page.locator("ul[role=listbox] li", has_text=option).first.click()
    page.wait_for_timeout(300)


def fill(page, elem_id: str, value: str) -> None:
    field = page.locator(f"#{elem_id} input, #{elem_id} textarea").first
    for _ in range(3):  # on a busy machine a field that has just appeared can get its first value after the clear
        field.fill("")
        field.type(value)  # key by key: gradio's input event follows typing
        if field.input_value() == value:
            break
        page.wait_for_timeout(500)
    assert field.input_value() == value, f"#{elem_id} shows {field.input_value()!r} after typing {value!r}"
    field.press("Tab")
    page.wait_for_timeout(700)


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_timeout(500)


def run_configs(workspace) -> list[str]:
    return [p.read_text() for p in workspace.glob("output/**/config.yaml")]


def configure_tiny_run(page, tiny_sd_dir=None) -> None:
    """Demo-star + rank-4 + short presets; on ``tiny_sd_dir`` (a random tiny model) or the embedded model."""
    open_tab(page, "Training")
    pick(page, "preset-demo", "demo-star")
    pick(page, "preset-rank", "rank-4")
    pick(page, "preset-epochs", "short")
    page.click("#preset-apply")
    page.wait_for_function("() => document.querySelector('#preset-notes').innerText.includes('rank-4')")
    if tiny_sd_dir is not None:
        fill(page, "form-base_model", str(tiny_sd_dir))
    assert page.locator("#form-lora_rank input").input_value() == "4", "the rank preset did not reach the form"




def start_training(page) -> None:
    """Click Start and wait until this run (not a previous one) is the one the page shows."""
    page.click("#train-start")
    page.wait_for_function("() => document.querySelector('#train-message').innerText.includes('training started')")
    page.wait_for_function(f"() => ['starting', 'running'].includes(({STATUS_JS})())", timeout=60_000)
