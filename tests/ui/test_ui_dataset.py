"""The Dataset tab's quality report in Chromium: scan a folder of flawed pictures, see each flagged image with its
reason and numbers, keep one and drop another (saved with the dataset), and prepare a clean copy."""
from __future__ import annotations

import hashlib
import json
import re

from PIL import ImageFilter

from studio.app.datasets import DEMO_ROOT
from studio.data.quality import BLUR_THRESHOLD
from studio.data.synthetic import synthetic_image
from ui_helpers import fill, pick

DEMOS = sorted(path.name for path in DEMO_ROOT.iterdir() if (path / "metadata.csv").is_file())
VERDICT = "document.querySelector('#dataset-verdict').innerText"

REASONS = {  # file -> what its row must say
    "blurred.jpg": ["blurry (sharpness", f"< {BLUR_THRESHOLD:g})"],
    "small.png": ["too small (320x240, shorter side 240 < 512 px)"],
    "truncated.jpg": ["corrupt (", "truncated"],
    "copy.jpg": ["near-duplicate (of original.png"],
    "wide.jpg": ["extreme aspect ratio (4.0:1 > 3:1)"],
}


def _flawed_dataset(folder):
    """A sharp picture and its blurred copy, a small one, a cut-short JPEG, a near-copy, a 4:1 one, captions."""
    folder.mkdir()
    synthetic_image(1, (640, 512)).save(folder / "sharp.jpg", quality=92)
    synthetic_image(1, (640, 512)).filter(ImageFilter.GaussianBlur(4)).save(folder / "blurred.jpg", quality=92)
    synthetic_image(2, (320, 240)).save(folder / "small.png")
    synthetic_image(3, (640, 512)).save(folder / "whole.jpg", quality=92)
    (folder / "truncated.jpg").write_bytes((folder / "whole.jpg").read_bytes()[:-600])
    (folder / "whole.jpg").unlink()
    synthetic_image(5, (768, 576)).save(folder / "original.png")
    synthetic_image(5, (768, 576)).resize((700, 525)).save(folder / "copy.jpg", quality=70)
    synthetic_image(6, (2048, 512)).save(folder / "wide.jpg", quality=92)
    names = sorted(path.name for path in folder.iterdir())
    (folder / "metadata.csv").write_text("filename,prompt\n" + "".join(f"{name},a picture called {name}\n"
                                                                      for name in names))


def _checksums(folder):
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir() if path.is_file()}


def _row(page, name):
    """The table row whose file cell is exactly ``name`` (other rows may mention it as "of name")."""
    cell = page.locator(".body-cell", has_text=re.compile(rf"^\s*{re.escape(name)}\s*$"))
    return page.locator("#dataset-report .virtual-row", has=cell)


def _rows(page) -> int:
    return page.locator("#dataset-report .virtual-row").count()


def _click_keep(page, name, expected_message):
    _row(page, name).locator("input[type=checkbox]").click()
    page.wait_for_function("text => document.querySelector('#dataset-choice-message').innerText.includes(text)",
                           arg=expected_message, timeout=90_000)


def _decisions(folder) -> dict:
    return json.loads((folder / ".lora-studio" / "decisions.json").read_text())["decisions"]


def test_scan_shows_flagged_images_with_reasons_saves_keep_drop_and_prepares(page, studio_server, screenshot_dir):
    _, workspace = studio_server
    folder = workspace / "flawed-photos"
    _flawed_dataset(folder)
    before = _checksums(folder)

    fill(page, "dataset-folder", str(folder))
    page.click("#dataset-scan")
    page.wait_for_function("() => document.querySelector('#dataset-verdict').innerText.includes('images are ready')",
                           timeout=120_000)
    verdict = page.inner_text("#dataset-verdict")
    assert "2 of 7 images are ready" in verdict
    for count in ("too small: 1", "blurry: 1", "near-duplicates: 2", "corrupt: 1", "extreme aspect ratio: 1"):
        assert count in verdict, count
    page.wait_for_function("() => document.querySelectorAll('#dataset-report .virtual-row').length === 5")
    for name, texts in REASONS.items():
        row = _row(page, name).inner_text()
        assert all(text in row for text in texts), (name, row)
    assert "near-duplicate (of sharp.jpg" in _row(page, "blurred.jpg").inner_text()
    assert _row(page, "sharp.jpg").count() == 0 and _row(page, "original.png").count() == 0  # not flagged
    assert page.locator("#dataset-report .virtual-row img[src^='data:image/jpeg']").count() == 4  # not the cut one
    assert _row(page, "truncated.jpg").locator("img").count() == 0
    page.screenshot(path=str(screenshot_dir / "dataset-report.png"), full_page=True)

    _click_keep(page, "small.png", "small.png: keep")
    assert _decisions(folder) == {"small.png": True}
    _click_keep(page, "truncated.jpg", "cannot be decoded")  # an unreadable file cannot be kept
    assert _decisions(folder) == {"small.png": True}
    assert not _row(page, "truncated.jpg").locator("input[type=checkbox]").is_checked()  # redrawn unticked

    page.click("#dataset-show-all input")
    page.wait_for_function("() => document.querySelectorAll('#dataset-report .virtual-row').length === 7")
    assert "no problems found" in _row(page, "sharp.jpg").inner_text()
    _click_keep(page, "sharp.jpg", "sharp.jpg: drop")
    assert _decisions(folder) == {"small.png": True, "sharp.jpg": False}
    assert (folder / ".lora-studio" / "decisions.json.bak").is_file()

    [report_path] = workspace.glob("scans/flawed-photos-*/report.json")
    report = {image["relpath"]: image for image in json.loads(report_path.read_text())["images"]}
    assert report["small.png"]["keep"] is True and report["sharp.jpg"]["keep"] is False
    assert report["blurred.jpg"]["flags"][0]["values"]["sharpness"] < BLUR_THRESHOLD
    assert page.locator("#dataset-report-json a").count() >= 1  # the report is offered for download

    fill(page, "dataset-prepare-out", "clean-copy")
    page.click("#dataset-prepare")
    page.wait_for_function("() => document.querySelector('#dataset-prepare-message').innerText.includes('Wrote')",
                           timeout=120_000)
    message = page.inner_text("#dataset-prepare-message")
    assert "Wrote 2 image(s)" in message and "sharp.jpg: dropped by your keep/drop choice" in message
    out = workspace / "clean-copy"
    assert sorted(path.name for path in out.iterdir() if not path.name.startswith(".")) == [
        "metadata.csv", "original.png", "small.png"]
    assert "small.png,a picture called small.png" in (out / "metadata.csv").read_text()
    assert _checksums(folder) == before  # the originals were only read


def _wait_verdict(page, text: str, timeout: int = 120_000) -> str:
    try:
        page.wait_for_function(f"text => {VERDICT}.includes(text)", arg=text, timeout=timeout)
    except Exception:  # say what the page showed instead
        raise AssertionError(f"waited for {text!r}; the verdict is {page.inner_text('#dataset-verdict')!r}")
    return page.inner_text("#dataset-verdict")


def _resolution(page) -> str:
    return page.locator("#dataset-resolution input").first.input_value()


def test_every_shipped_demo_scans_ready_at_the_resolution_the_tab_fills_in(page, studio_server):
    """Picking a demo sets the training resolution to the toy worlds' 32 px; each demo is then ready, its clean copy
    has every picture, and the next folder starts without the previous folder's report."""
    _, workspace = studio_server
    before = {name: _checksums(DEMO_ROOT / name) for name in DEMOS}
    for name in DEMOS:
        pick(page, "dataset-demo", name)
        assert "Training resolution set to 32 px" in _wait_verdict(page, "Press Scan")
        assert _resolution(page) == "32"
        page.click("#dataset-scan")
        verdict = _wait_verdict(page, "images are ready")
        assert "All 20 images are ready for training" in verdict and "for training at 32 px" in verdict, verdict
        assert _rows(page) == 0  # nothing flagged
        page.click("#dataset-prepare")
        page.wait_for_function("() => document.querySelector('#dataset-prepare-message').innerText.includes('Wrote')",
                               timeout=120_000)
        assert page.inner_text("#dataset-prepare-message").startswith(f"✓ Wrote 20 image(s) to {workspace}")
    pick(page, "dataset-demo", DEMOS[0])  # another folder: nothing of the last one's report stays
    _wait_verdict(page, "Press Scan")
    assert "ready" not in page.inner_text("#dataset-verdict") and _rows(page) == 0
    assert page.inner_text("#dataset-prepare-message").strip() == ""
    assert {name: _checksums(DEMO_ROOT / name) for name in DEMOS} == before


def test_a_clean_copy_without_pictures_is_a_failure_not_a_success(page, studio_server):
    """The star demo scanned for a 512 px training: every picture is too small, and the copy says it wrote none."""
    pick(page, "dataset-demo", "star")
    _wait_verdict(page, "Press Scan")
    fill(page, "dataset-resolution", "512")
    page.click("#dataset-scan")
    assert "0 of 20 images are ready; 20 too small" in _wait_verdict(page, "images are ready")
    fill(page, "dataset-prepare-out", "star-at-512")
    page.click("#dataset-prepare")
    page.wait_for_function("() => document.querySelector('#dataset-prepare-message').innerText.includes('Wrote')",
                           timeout=120_000)
    message = page.inner_text("#dataset-prepare-message")
    assert message.startswith("✗ Wrote no images") and "all 20 were left out" in message and "✓" not in message
