"""A share-link user in Chromium (the remote-user rules forced on loopback with --remote-rules): every form that
names a host folder is refused with a sentence, a zip upload brings a dataset in, and nothing outside the roots is
read or written (a sentinel folder's sha256/mtime fingerprint stays the same)."""
from __future__ import annotations

import csv
import hashlib
import time
import zipfile
from pathlib import Path

import pytest

from ui_helpers import fill, open_tab, running_studio

SECRET = "root:$6$SECRETHASH:19000:0:99999:7:::"


def _fingerprint(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            if p.is_file() else "folder" for p in sorted(folder.rglob("*"))}


def _dataset(folder: Path) -> Path:
    from studio.data.synthetic import synthetic_image

    folder.mkdir(parents=True)
    with open(folder / "metadata.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "prompt"])
        for index in range(3):
            synthetic_image(index + 1, (64, 64)).save(folder / f"p{index}.png")
            writer.writerow([f"p{index}.png", "a" * 24 + "!"])
    return folder


@pytest.fixture(scope="module")
def remote_studio(tmp_path_factory):
    """(url, workspace, sentinel): a studio with the remote-user rules and a host folder no page may touch."""
    sentinel = tmp_path_factory.mktemp("host")
    _dataset(sentinel / "photos")
    (sentinel / "secret.txt").write_text(SECRET + "\n")
    workspace = tmp_path_factory.mktemp("workspace")
    with running_studio(workspace, "--remote-rules") as url:
        yield url, workspace, sentinel


@pytest.fixture
def remote_page(browser, remote_studio):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.goto(remote_studio[0])
    page.wait_for_selector("#dataset-folder", timeout=60_000)
    yield page
    context.close()


def _wait_text(page, elem_id: str, text: str, timeout: float = 30_000) -> str:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("([id, text]) => document.querySelector('#' + id).innerText.includes(text)",
                               arg=[elem_id, text], timeout=timeout)
    except PlaywrightTimeout:  # say what the page showed instead
        raise AssertionError(f"#{elem_id} never showed {text!r}; it shows {page.inner_text(f'#{elem_id}')!r}")
    return page.inner_text(f"#{elem_id}")


def test_a_share_link_user_reaches_only_the_workspace_and_brings_data_in_by_upload(remote_page, remote_studio,
                                                                                   tmp_path):
    page, (_, workspace, sentinel) = remote_page, remote_studio
    before = _fingerprint(sentinel)
    assert "This studio is shared" in page.inner_text("#studio-header")

    fill(page, "dataset-folder", str(sentinel / "photos"))
    page.click("#dataset-load")
    assert "outside the folders this studio shares" in _wait_text(page, "dataset-message", "outside")
    assert page.locator("#dataset-gallery img").count() == 0
    page.click("#dataset-scan")
    assert "outside" in _wait_text(page, "dataset-verdict", "outside")

    archive = tmp_path / "my pictures.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        for path in sorted(_dataset(tmp_path / "src").iterdir()):
            handle.write(path, f"src/{path.name}")
    page.set_input_files("#dataset-upload input[type=file]", str(archive))
    message = _wait_text(page, "dataset-message", "unpacked 3 picture(s)", timeout=60_000)
    uploaded = workspace / "datasets" / "my-pictures"
    assert str(uploaded) in message and sorted(p.name for p in uploaded.iterdir())[-1] == "p2.png"
    page.wait_for_function("() => document.querySelectorAll('#dataset-gallery img').length === 3")
    assert page.locator("#dataset-folder input, #dataset-folder textarea").first.input_value() == str(uploaded)

    fill(page, "dataset-resolution", "32")
    page.click("#dataset-scan")
    _wait_text(page, "dataset-verdict", "images scanned")
    fill(page, "dataset-prepare-out", "../../..")
    page.click("#dataset-prepare")
    assert "outside" in _wait_text(page, "dataset-prepare-message", "clean copy")

    open_tab(page, "Captioning")
    page.wait_for_function(  # the Captioning tab follows the Dataset tab's folder first, as a user sees it
        "(path) => document.querySelector('#caption-folder textarea, #caption-folder input').value === path",
        arg=str(uploaded))
    fill(page, "caption-folder", str(sentinel / "photos"))
    page.click("#caption-load")
    assert "outside" in _wait_text(page, "caption-message", "outside")
    fill(page, "caption-folder", str(uploaded))
    page.click("#caption-load")
    _wait_text(page, "caption-message", "3 captions")
    fill(page, "caption-find", "(a|a)+$")  # backtracks without end on 24 a's and a '!'
    page.locator("#caption-regex input").check()
    saved = (uploaded / "metadata.csv").read_bytes()
    started = time.time()
    page.click("#caption-replace-apply")
    assert "Simplify it" in _wait_text(page, "caption-message", "took more than", timeout=30_000)
    assert time.time() - started < 15 and (uploaded / "metadata.csv").read_bytes() == saved

    open_tab(page, "Training")
    fill(page, "form-train_data_dir", str(uploaded))
    yaml_text = page.evaluate("() => document.querySelector('#config-yaml .cm-content').innerText")
    assert "train_data_dir: " in yaml_text
    fill(page, "form-prior_data_dir", str(sentinel / "photos"))
    page.click("#train-start")
    refusal = _wait_text(page, "train-message", "prior_data_dir")
    assert "outside the folders" in refusal and "SECRETHASH" not in page.content()
    assert _fingerprint(sentinel) == before
    assert not list(workspace.glob("output/**/run.json"))


def test_failed_logins_are_slowed_down_and_logged(tmp_path):
    import urllib.error
    import urllib.parse
    import urllib.request

    def login(url, password):
        body = urllib.parse.urlencode({"username": "ana", "password": password}).encode()
        request = urllib.request.Request(f"{url}login", data=body,
                                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status, {}
        except urllib.error.HTTPError as error:
            return error.code, error.headers

    with running_studio(tmp_path, "--auth", "ana:a-long-password-1") as url:
        started, codes = time.time(), []
        while len(codes) < 60 and time.time() - started < 10:
            codes.append(login(url, "wrong")[0])
        checked = [code for code in codes if code != 429]
        assert len(checked) <= 6 and codes.count(429) >= len(codes) - 6, codes
        status, headers = login(url, "a-long-password-1")
        assert status == 429 and int(headers.get("Retry-After", 0)) >= 1, (status, codes)  # the right one waits too
        time.sleep(int(headers["Retry-After"]) + 0.2)
        assert login(url, "a-long-password-1")[0] == 200
        log = (tmp_path / "studio.log").read_text()
    assert "login failed from 127.0.0.1 (4 failed in a row; next try allowed in 1 s)" in log, log


def test_uploads_over_the_limit_are_refused(tmp_path):
    import urllib.error
    import urllib.request

    with running_studio(tmp_path, "--max-upload-mb", "1") as url:
        boundary = "studio-test-boundary"
        payload = b"x" * (2 << 20)
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.zip\"\r\n"
                "Content-Type: application/zip\r\n\r\n").encode() + payload + f"\r\n--{boundary}--\r\n".encode()
        request = urllib.request.Request(f"{url}gradio_api/upload", data=body,
                                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=30)
        assert refused.value.code == 413
        with urllib.request.urlopen(url, timeout=20) as page:
            assert page.status == 200  # refused, and the studio goes on serving
