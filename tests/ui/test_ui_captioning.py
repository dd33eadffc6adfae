"""The Captioning tab in Chromium: lint beside each row, the keyword chart, a bulk prefix with Undo, the prompt
helper, and auto-captioning with a tiny BLIP model (and the offline sentence when there is no model)."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from ui_helpers import ROOT, fill, open_tab

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "caption"))

from tiny_blip import build_tiny_blip  # noqa: E402

STAR = ROOT / "assets" / "demo-datasets" / "star"
CAPTIONS = ('filename,prompt\n'
            'star_00.png,"**orange zq star**, a beautiful star, *calm*, gray background"\n'
            'star_01.png,a red zq star on a gray background\n'
            'star_02.png,a orange zq star on a white background\n')
MESSAGE = "document.querySelector('#caption-message').innerText"
STATUS = "document.querySelector('#caption-auto-progress .caption-progress')?.dataset.status"


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return build_tiny_blip(tmp_path_factory.mktemp("ui-blip") / "blip")


@pytest.fixture
def dataset(studio_server):
    """Four star pictures in the workspace, three of them captioned (one with 'beautiful'), one without a row."""
    _, workspace = studio_server
    folder = workspace / "caption-test"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for index in range(4):
        shutil.copy(STAR / f"star_{index:02d}.png", folder)
    (folder / "metadata.csv").write_text(CAPTIONS, encoding="utf-8")
    return folder


def _wait_message(page, text: str, timeout: int = 60_000) -> str:
    try:
        page.wait_for_function(f"(text) => {MESSAGE}.includes(text)", arg=text, timeout=timeout)
    except Exception:  # say what the page showed instead
        raise AssertionError(f"waited {timeout / 1000:g} s for {text!r}; the message is "
                             f"{page.inner_text('#caption-message')!r}, the auto-caption line "
                             f"{page.inner_text('#caption-auto-progress')!r}, the model field "
                             f"{page.locator('#caption-model textarea, #caption-model input').first.input_value()!r}")
    return page.inner_text("#caption-message")


def _row_text(page, filename: str) -> str:
    return page.locator("#caption-table [role=row]", has_text=filename).first.inner_text()


def _load(page, folder: Path) -> None:
    open_tab(page, "Captioning")
    fill(page, "caption-folder", str(folder))
    page.click("#caption-load")
    _wait_message(page, "3 captions")


def test_lint_chart_bulk_prefix_and_undo(page, dataset):
    _load(page, dataset)
    assert "star_03.png" in page.inner_text("#caption-message"), "the image without a row is named"
    assert "subjective" in _row_text(page, "star_00.png") and "beautiful" in _row_text(page, "star_00.png")
    assert "✓" in _row_text(page, "star_01.png")
    assert "1 warning" in page.inner_text("#caption-lint")
    page.wait_for_function("() => document.querySelector('#caption-chart img')?.naturalWidth > 100")
    assert page.locator("#caption-preview strong.core", has_text="orange zq star").count() == 1
    assert page.locator("#caption-preview em.mood", has_text="calm").count() == 1

    csv_path = dataset / "metadata.csv"
    original = csv_path.read_bytes()
    fill(page, "caption-prefix", "zq style")
    page.click("#caption-prefix-apply")
    assert "changed 3 of 3" in _wait_message(page, "changed")
    assert (dataset / "metadata.csv.bak").read_bytes() == original
    assert csv_path.read_text(encoding="utf-8").count("zq style, ") == 3
    assert "zq style, a red zq star" in _row_text(page, "star_01.png")

    page.click("#caption-undo")
    assert "went back one step" in _wait_message(page, "went back one step")
    assert csv_path.read_bytes() == original
    assert "zq style" not in page.inner_text("#caption-table")
    page.click("#caption-undo")  # a second Undo goes further back (there is nothing before), never re-applies
    assert "Nothing to undo" in _wait_message(page, "Nothing to undo")
    assert csv_path.read_bytes() == original and "zq style" not in page.inner_text("#caption-table")
    page.click("#caption-redo")
    assert "went forward one step" in _wait_message(page, "went forward one step")
    assert csv_path.read_text(encoding="utf-8").count("zq style, ") == 3
    assert "zq style, a red zq star" in _row_text(page, "star_01.png")


def test_the_template_starts_empty_so_one_click_rewrites_nothing(page, dataset):
    _load(page, dataset)
    assert page.locator("#caption-template textarea, #caption-template input").first.input_value() == ""
    page.click("#caption-template-apply")
    assert "The template is empty" in _wait_message(page, "The template is empty")
    assert (dataset / "metadata.csv").read_text(encoding="utf-8") == CAPTIONS


def test_saving_the_shipped_demo_saves_a_copy_in_the_workspace(page, studio_server):
    """The demo stays as it ships; the page says where the copy is and works on it from then on."""
    _, workspace = studio_server
    shipped = {path.name: path.read_bytes() for path in STAR.iterdir()}
    open_tab(page, "Captioning")
    fill(page, "caption-folder", str(STAR))
    page.click("#caption-load")
    _wait_message(page, "20 captions")
    page.click("#caption-save")
    copy = workspace / "datasets" / "star"
    message = _wait_message(page, "✓ saved")
    assert f"✓ saved {copy / 'metadata.csv'}" in message and "ships with the studio and stays read-only" in message
    assert f"copied (pictures and captions) to {copy}" in message
    folder_field = page.locator("#caption-folder textarea, #caption-folder input").first
    page.wait_for_function("(path) => document.querySelector('#caption-folder textarea, #caption-folder input')"
                           ".value === path", arg=str(copy))
    assert folder_field.input_value() == str(copy)
    fill(page, "caption-suffix", "toy world")
    page.click("#caption-suffix-apply")
    assert "changed 20 of 20 captions" in _wait_message(page, "changed 20 of 20")
    assert (copy / "metadata.csv").read_text(encoding="utf-8").count(', toy world"\n') == 20
    assert {path.name: path.read_bytes() for path in STAR.iterdir()} == shipped  # no new file, no change, no .bak


def test_prompt_helper_fills_the_selected_row(page, dataset):
    _load(page, dataset)
    page.get_by_role("button", name="Prompt helper").click()
    page.locator("#caption-table [role=gridcell]", has_text="a red zq star").first.click()
    page.wait_for_function("() => document.querySelector('#caption-selected').innerText.includes('star_01.png')")
    page.keyboard.press("Escape")
    for name, value in (("subject", "zq star"), ("attributes", "red, five points"), ("scene", "gray background"),
                        ("style", "flat colours")):
        fill(page, f"caption-formula-{name}", value)
    built = "zq star, red, five points, gray background, flat colours"
    assert page.locator("#caption-formula-result textarea").input_value() == built
    page.click("#caption-formula-insert")
    _wait_message(page, "not saved yet")
    assert built in _row_text(page, "star_01.png")
    assert (dataset / "metadata.csv").read_text(encoding="utf-8") == CAPTIONS, "nothing is written before Save"
    fill(page, "caption-prefix", "zq style")
    page.click("#caption-prefix-apply")
    assert "unsaved changes (star_01.png)" in _wait_message(page, "unsaved")
    page.click("#caption-save")
    _wait_message(page, "✓ saved")  # not "saved" alone: the message before it says "unsaved"
    assert f"star_01.png,\"{built}\"" in (dataset / "metadata.csv").read_text(encoding="utf-8")


def test_auto_caption_offline_message_then_tiny_model(page, dataset, blip_dir):
    _load(page, dataset)
    page.get_by_role("button", name="Auto-caption with BLIP").click()
    fill(page, "caption-model", "nobody/no-such-blip")
    page.click("#caption-auto-start")
    # The first auto-caption imports transformers' BLIP classes in the studio process: slow on a busy 2-core CI.
    assert "No BLIP model here" in _wait_message(page, "No BLIP model here", timeout=150_000)
    assert page.evaluate(f"() => {STATUS}") == "failed"

    fill(page, "caption-model", str(blip_dir))
    page.locator("#caption-batch input").fill("2")
    page.click("#caption-auto-start")
    page.wait_for_function(f"() => {STATUS} === 'finished'", timeout=120_000)
    assert "Captioned 1 image(s)" in _wait_message(page, "Captioned")
    rows = (dataset / "metadata.csv").read_text(encoding="utf-8").splitlines()
    assert len(rows) == 5 and rows[1:4] == CAPTIONS.splitlines()[1:], "only the image without a caption is captioned"
    assert rows[4].startswith("star_03.png,") and len(rows[4]) > len("star_03.png,")
    assert (dataset / "metadata.csv.bak").read_text(encoding="utf-8") == CAPTIONS
    assert "star_03.png" in page.inner_text("#caption-table")
