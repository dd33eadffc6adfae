"""The real studio in a subprocess and a real Chromium driven by Playwright."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # ui_helpers, shared by the test modules

from ui_helpers import ROOT, free_port, wait_for_http  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def studio_server(tmp_path_factory):
    """``python studio.py`` on a free port with a fresh workspace; yields (url, workspace)."""
    workspace = tmp_path_factory.mktemp("workspace")
    port = free_port()
    log = open(workspace / "studio.log", "w")
    process = subprocess.Popen(
        [sys.executable, "studio.py", "--port", str(port), "--workspace", str(workspace)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(url)
        yield url, workspace
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="module")
def browser():
    playwright_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    with playwright_api.sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture
def page(browser, studio_server):
    url, _ = studio_server
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(url)
    page.wait_for_selector("#dataset-folder", timeout=60_000)
    yield page
    context.close()


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    """Where the tab screenshots go: ``STUDIO_SCREENSHOT_DIR`` (docs/screenshots for the README) or a temp dir."""
    folder = Path(os.environ.get("STUDIO_SCREENSHOT_DIR") or tmp_path_factory.mktemp("screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder
