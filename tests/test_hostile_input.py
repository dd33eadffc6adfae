"""A corpus of broken and odd input: each gets a clear error or a clean load, and no user file changes."""
from __future__ import annotations

import csv
import hashlib
import io
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import regex
from PIL import Image

from studio.caption import EditError, edit_metadata, find_replace, lint_file
from studio.caption import edits
from studio.cli import EXIT_USER_ERROR, main
from studio.config import ConfigError, load_config
from studio.data import CaptionRecord, DatasetError, TrainingImages, load_training_set, read_metadata, write_metadata
from studio.data.metadata import MAX_METADATA_BYTES, spreadsheet_csv
from studio.data.scan import scan_folder
from studio.app import Studio


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _bomb_png() -> bytes:
    """A valid 1x1 PNG whose header claims 40000 x 40000 pixels."""
    data = bytearray(_png_bytes(Image.new("RGB", (1, 1))))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", 40000, 40000)
    crc = zlib.crc32(bytes(data[ihdr : ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", crc)
    return bytes(data)


def broken_images() -> dict[str, bytes]:
    good = _png_bytes(Image.new("RGB", (64, 64), (200, 30, 30)))
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (30, 30, 200)).save(jpeg, format="JPEG")
    return {
        "truncated.png": good[: len(good) // 2],
        "truncated.jpg": jpeg.getvalue()[:-200],
        "zero.png": b"",
        "text.png": b"this is not an image\n",
        "bomb.png": _bomb_png(),
    }


def odd_images(folder: Path) -> list[str]:
    """Images that are valid but unusual: each must load as 8-bit RGB."""
    Image.new("CMYK", (40, 48), (0, 200, 200, 0)).save(folder / "cmyk.jpg")
    Image.fromarray((np.arange(48 * 40).reshape(48, 40) * 30).astype(np.uint16)).save(folder / "sixteen.png")
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    palette.info["transparency"] = 0
    palette.save(folder / "palette.png", transparency=0)
    frames = [Image.new("RGB", (40, 40), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100)
    Image.new("RGBA", (40, 40), (0, 255, 0, 0)).save(folder / "clear.png")
    return ["cmyk.jpg", "sixteen.png", "palette.png", "animated.gif", "clear.png"]


def _hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _write_csv(folder: Path, names: list[str]) -> None:
    (folder / "metadata.csv").write_text("filename,prompt\n" + "".join(f"{n},a picture\n" for n in names))


def test_odd_but_valid_images_load_as_rgb_without_changing_the_files(tmp_path):
    names = odd_images(tmp_path)
    _write_csv(tmp_path, names)
    before = _hashes(tmp_path)
    table = load_training_set(tmp_path)
    images = TrainingImages(tmp_path, table.records, resolution=32)
    for index in range(len(images)):
        pixels = images[index]["pixel_values"]
        assert pixels.shape[0] == 3 and pixels.min() >= -1 and pixels.max() <= 1
    assert _hashes(tmp_path) == before


def test_broken_images_are_all_named_in_one_clear_error_and_left_untouched(tmp_path):
    for name, data in broken_images().items():
        (tmp_path / name).write_bytes(data)
    Image.new("RGB", (40, 40)).save(tmp_path / "fine.png")
    _write_csv(tmp_path, [*broken_images(), "fine.png"])
    before = _hashes(tmp_path)
    with pytest.raises(DatasetError) as error:
        table = load_training_set(tmp_path)
        TrainingImages(tmp_path, table.records, resolution=32)
    message = str(error.value)
    for name in ("truncated.png", "truncated.jpg", "zero.png", "text.png", "bomb.png"):
        assert name in message
    assert "fine.png" not in message
    assert _hashes(tmp_path) == before


@pytest.mark.parametrize("name, text, expected", [
    ("bom_crlf", "\ufefffilename,prompt\r\na.png,\"red, round\"\r\n", None),
    ("missing_column", "filename,prompt\na.png\n", "line 2"),
    ("extra_columns", "filename,prompt\na.png,red,extra,more\n", None),
    ("unknown_file", "filename,prompt\na.png,red\nghost.png,blue\n", "ghost.png"),
    ("duplicate", "filename,prompt\na.png,red\na.png,blue\n", "a.png"),
    ("parent_path", "filename,prompt\na.png,red\n../outside.png,blue\n", "../outside.png"),
    ("absolute_path", "filename,prompt\na.png,red\n/etc/passwd,blue\n", "/etc/passwd"),
])
def test_metadata_quirks_load_or_fail_clearly_and_never_change_the_csv(tmp_path, name, text, expected):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    (tmp_path / "metadata.csv").write_bytes(text.encode("utf-8"))
    before = _hashes(tmp_path)
    if expected is None:
        table = load_training_set(tmp_path)
        assert [r.filename for r in table.records] == ["a.png"]
    else:
        with pytest.raises(DatasetError, match=expected.replace(".", r"\.")):
            load_training_set(tmp_path)
    assert _hashes(tmp_path) == before


ALIAS_BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8)
) + "target_modules: *i\n"  # 9**9 strings if expanded


@pytest.mark.parametrize("text, expected", [
    ("lora_rank: 8\nlearnin_rate: 1e-4\n", "learning_rate"),
    ("lora_rank: eight\n", "lora_rank"),
    ("lora_rank: 0\n", "lora_rank"),
    ("learning_rate: -1e-4\n", "learning_rate"),
    ("epochs: 0\n", "epochs"),
    ("training_config:\n\tbatch_size: 4\n", "tab"),
    (ALIAS_BOMB, "alias"),
    ("- just\n- a list\n", "key: value"),
    ("target_modules: " + "[" * 400 + "]" * 400 + "\n", "line 1: the YAML is nested deeper than 50 levels"),
    ("lora_rank: 8\nx:\n" + "".join("  " * i + "a:\n" for i in range(1, 400)), "line 52: the YAML is nested deeper"),
    ("lora_rank: 8\n" + "#" * (1 << 20), "larger than 1 MiB"),
])
def test_hostile_yaml_is_a_clear_error_naming_the_key_and_the_file_is_unchanged(tmp_path, text, expected, capsys):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    before = _hashes(tmp_path)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert expected.lower() in str(error.value).lower()
    assert main(["check-config", str(path)]) == EXIT_USER_ERROR
    assert "config.yaml" in capsys.readouterr().err
    assert _hashes(tmp_path) == before


def test_the_studio_service_reports_a_hostile_folder_instead_of_crashing(tmp_path):
    for name, data in broken_images().items():
        (tmp_path / name).write_bytes(data)
    (tmp_path / "metadata.csv").write_bytes(b"\xff\xfe not utf-8 \x00\x00")
    before = _hashes(tmp_path)
    studio = Studio(tmp_path / "workspace")
    with pytest.raises(DatasetError, match="metadata.csv"):
        studio.datasets.load(str(tmp_path))
    assert {k: v for k, v in _hashes(tmp_path).items() if not k.startswith("workspace")} == before


def _refused_in_time(call, error_type, seconds: float = 20.0) -> BaseException:
    """The ``error_type`` that ``call()`` raises, failing the test if it hangs (a named pipe blocks a plain read)."""
    caught: list[BaseException] = []

    def target():
        try:
            call()
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            caught.append(error)

    worker = threading.Thread(target=target, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still reading after {seconds} s"
    assert caught and isinstance(caught[0], error_type), caught
    return caught[0]


SPECIAL_FILES = {"device": "not a regular file but a character device", "pipe": "not a regular file but a named pipe",
                 "folder": "is a folder", "loop": "symlink loop", "huge": "MiB, the limit for a"}


def _special_file(folder: Path, kind: str, limit: int) -> Path:
    path = folder / f"special-{kind}"
    if kind == "device":
        return Path("/dev/zero")
    if kind == "pipe":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "loop":
        path.symlink_to(path.name)
    else:
        path.write_bytes(b"a" * (limit + 1))
    return path


@pytest.mark.parametrize("kind", SPECIAL_FILES)
def test_a_caption_file_that_is_no_ordinary_file_or_too_big_is_refused_unread(tmp_path, kind):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    path = _special_file(tmp_path, kind, MAX_METADATA_BYTES)
    error = _refused_in_time(lambda: load_training_set(tmp_path, path), DatasetError)
    assert SPECIAL_FILES[kind] in str(error) and str(path) in str(error)


@pytest.mark.parametrize("kind", SPECIAL_FILES)
def test_a_config_that_is_no_ordinary_file_or_too_big_is_refused_unread(tmp_path, kind, capsys):
    path = _special_file(tmp_path, kind, 1 << 20)
    error = _refused_in_time(lambda: load_config(path), ConfigError)
    assert SPECIAL_FILES[kind] in str(error) and str(path) in str(error)
    assert main(["check-config", str(path)]) == EXIT_USER_ERROR
    assert SPECIAL_FILES[kind] in capsys.readouterr().err


def _train(data: Path, *settings: str) -> int:
    argv = ["train", "--quiet", "--set", f"train_data_dir={data}", "--set", f"base_model={data / 'no-model'}",
            "--set", f"output_dir={data / 'runs'}", "--set", "resolution=32"]
    for setting in settings:
        argv += ["--set", setting]
    return main(argv)


@pytest.fixture
def no_model_loading(monkeypatch):
    """Training fails the test if it gets as far as loading a model: data problems must be found before."""
    import studio.models

    def refuse(*_args, **_kwargs):
        raise AssertionError("the model loader was called before the data was checked")

    monkeypatch.setattr(studio.models, "load_components", refuse)


def test_training_with_a_device_as_caption_file_exits_2_with_a_sentence(tmp_path, capsys, no_model_loading):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    assert _train(tmp_path, "metadata_path=/dev/zero") == EXIT_USER_ERROR
    assert "/dev/zero: is not a regular file" in capsys.readouterr().err


SHADOW = "root:$6$SECRETHASH:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nalice:x,SECRETHASH.png\n"


@pytest.mark.parametrize("name, shown", [("secret.txt", False), ("secret", False), ("secret.CSV", True)])
def test_errors_quote_lines_only_of_a_file_given_as_csv(tmp_path, capsys, no_model_loading, name, shown):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    (tmp_path / name).write_text(SHADOW)
    with pytest.raises(DatasetError) as error:
        load_training_set(tmp_path, tmp_path / name)
    assert _train(tmp_path, f"metadata_path={tmp_path / name}") == EXIT_USER_ERROR
    for message in (str(error.value), capsys.readouterr().err):
        message = message.replace(str(tmp_path), "<folder>")  # the folder's own path may hold "root"
        assert f"{name}, line 1:" in message and f"{name}, line 2:" in message and f"{name}, line 3:" in message
        assert ("root" in message and "SECRETHASH" in message) is shown
        assert ("root" in message or "SECRETHASH" in message) is shown


def test_a_scan_quotes_no_line_of_a_caption_file_that_is_not_csv(tmp_path):
    Image.new("RGB", (40, 40)).save(tmp_path / "a.png")
    (tmp_path / "secret.txt").write_text("a.png,fine\nSECRETHASH.png,x\n")
    report = scan_folder(tmp_path, workers=1, metadata_path=tmp_path / "secret.txt")
    assert [problem.message for problem in report.errors] == [
        f"line 2: the file named on this line has a caption but there is no such image in {tmp_path}; add the image "
        "or delete the row."]


def _loop_folder(folder: Path) -> None:
    Image.new("RGB", (40, 40)).save(folder / "good.png")
    (folder / "loop.png").symlink_to("loop.png")
    (folder / "ping.png").symlink_to("pong.png")
    (folder / "pong.png").symlink_to("ping.png")


def test_a_symlink_loop_is_named_by_scan_and_train_not_a_traceback(tmp_path, capsys, no_model_loading):
    _loop_folder(tmp_path)
    _write_csv(tmp_path, ["good.png", "loop.png", "ping.png"])
    assert main(["scan", str(tmp_path), "--workers", "1", "--quiet"]) in (0, 1)
    err = capsys.readouterr().err
    for name in ("loop.png", "ping.png", "pong.png"):
        assert f"note: {name} is a link that leads back to itself (a symlink loop)" in err
    assert _train(tmp_path) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "line 3: loop.png is a link that leads back to itself (a symlink loop); remove the link" in err
    assert "line 4: ping.png is a link that leads back to itself" in err


def test_a_named_pipe_among_the_pictures_is_refused_by_scan_and_train_without_waiting(tmp_path):
    Image.new("RGB", (40, 40)).save(tmp_path / "good.png")
    os.mkfifo(tmp_path / "pipe.png")
    _write_csv(tmp_path, ["good.png", "pipe.png"])
    error = _refused_in_time(lambda: load_training_set(tmp_path), DatasetError)
    assert "line 3: pipe.png is not a regular file" in str(error)
    images = _refused_in_time(lambda: TrainingImages(tmp_path, read_metadata(tmp_path / "metadata.csv").records, 32),
                              DatasetError)
    assert "pipe.png: is not a regular file but a named pipe" in str(images)
    report = scan_folder(tmp_path, workers=1)
    assert [(Path(p.path).name, p.code) for p in report.errors] == [("pipe.png", "corrupt")]
    assert "named pipe" in report.errors[0].message


def test_training_names_every_broken_picture_in_one_message_before_loading_a_model(tmp_path, capsys,
                                                                                   no_model_loading):
    for name, data in broken_images().items():
        (tmp_path / name).write_bytes(data)
    for index in range(4):
        Image.new("RGB", (40, 40), (index * 60, 0, 0)).save(tmp_path / f"fine{index}.png")
    _write_csv(tmp_path, [*broken_images(), *(f"fine{index}.png" for index in range(4))])
    assert _train(tmp_path, "validation_split=0.5") == EXIT_USER_ERROR  # broken files on both sides of the split
    err = capsys.readouterr().err
    assert err.count("The training data has 5 problems") == 1
    for name in broken_images():
        assert name in err
    assert "fine" not in err


def test_a_truncated_jpeg_alone_is_caught_before_the_model_loads(tmp_path, capsys, no_model_loading):
    photo = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(photo, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(photo.getvalue()[: len(photo.getvalue()) * 9 // 10])
    Image.new("RGB", (40, 40)).save(tmp_path / "good.png")
    _write_csv(tmp_path, ["cut.jpg", "good.png"])
    assert _train(tmp_path) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert "cut.jpg: cannot be read as an image (image file is truncated" in err and "good.png" not in err


def _caption_file(folder: Path, captions: list[str]) -> Path:
    records = [CaptionRecord(f"{index}.png", caption) for index, caption in enumerate(captions)]
    return write_metadata(folder / "metadata.csv", records)


@pytest.mark.parametrize("pattern, expected", [
    ("(a|a)+$", "took more than 0.3 s over the captions and was stopped; nothing was changed. Simplify it"),
    ("a" * 501, "501 characters long, over the limit of 500; simplify it"),
])
def test_a_hostile_regex_replace_stops_soon_and_leaves_the_captions_byte_identical(tmp_path, monkeypatch, pattern,
                                                                                   expected):
    monkeypatch.setattr(edits, "REGEX_SECONDS", 0.3)
    path = _caption_file(tmp_path, ["a" * 24 + "!"] * 20)
    before = path.read_bytes()
    started = time.perf_counter()
    with pytest.raises(EditError, match=expected.replace("(", r"\(").replace(".", r"\.")):
        edit_metadata(path, lambda rows: find_replace(rows, pattern, "x", regex=True))
    assert time.perf_counter() - started < 2.0  # stopped at the limit, not after 2**24 ways to match
    assert path.read_bytes() == before and not (tmp_path / "metadata.csv.bak").exists()


def test_the_regex_time_limit_is_for_the_whole_edit_not_for_each_caption(tmp_path, monkeypatch):
    slow = regex.compile("(a|a)+$")

    def seconds(length: int) -> float:
        started = time.perf_counter()
        slow.sub("x", "a" * length + "!")
        return time.perf_counter() - started

    length = next(length for length in range(10, 30) if seconds(length) >= 0.02)
    monkeypatch.setattr(edits, "REGEX_SECONDS", 0.3)
    path = _caption_file(tmp_path, ["a" * length + "!"] * 30)  # each caption well under 0.3 s, all together over
    before = path.read_bytes()
    with pytest.raises(EditError, match=r"took more than 0\.3 s"):
        edit_metadata(path, lambda rows: find_replace(rows, "(a|a)+$", "x", regex=True))
    assert path.read_bytes() == before


def test_the_regex_replace_from_the_issue_no_longer_holds_the_process():
    records = [CaptionRecord(f"{index}.png", "a" * 24 + "!") for index in range(3)]
    started = time.perf_counter()
    assert find_replace(records, "(a+)+$", "x", regex=True) == records  # no match: the captions end in "!"
    assert time.perf_counter() - started < 1.0  # the stdlib re takes about 10 s here


@pytest.mark.parametrize("caption, codes", [
    ("a cat\x00 on a sofa", ["U+0000"]),
    ("red\x1b[31m, grey\x7f", ["U+001B", "U+007F"]),
    ("a cat\ton a sofa, two lines\nof caption", []),
])
def test_control_characters_in_a_caption_are_a_lint_error_naming_row_and_character(tmp_path, caption, codes):
    path = _caption_file(tmp_path, ["a dog", caption])
    found = [str(finding) for finding in lint_file(path)
             if finding.rule == "control_character" and finding.severity == "error"]
    assert len(found) == (1 if codes else 0)
    for code in codes:
        assert found[0].startswith("line 3, 1.png: error") and code in found[0]


@pytest.mark.parametrize("filename, caption, row", [
    ("a.png", "=cmd|' /C calc'!A0", ["a.png", "'=cmd|' /C calc'!A0"]),
    ("a.png", "+1+1", ["a.png", "'+1+1"]),
    ("a.png", "-2+3", ["a.png", "'-2+3"]),
    ("a.png", "@SUM(A1:A9)", ["a.png", "'@SUM(A1:A9)"]),
    ("a.png", "\t=1+1", ["a.png", "'\t=1+1"]),
    ("a.png", "\r=1+1", ["a.png", "'\r=1+1"]),
    ("=1+1.png", "a cat, 50% grey", ["'=1+1.png", "a cat, 50% grey"]),
    ("a.png", "zq = style, a-b", ["a.png", "zq = style, a-b"]),
])
def test_the_spreadsheet_export_disarms_formulas_and_metadata_csv_keeps_them(tmp_path, filename, caption, row):
    records = [CaptionRecord(filename, caption)]
    assert list(csv.reader(io.StringIO(spreadsheet_csv(records), newline=""))) == [["filename", "prompt"], row]
    write_metadata(tmp_path / "metadata.csv", records)
    assert read_metadata(tmp_path / "metadata.csv").records[0].prompt == caption.strip()


@pytest.mark.parametrize("kind", ["pipe", "loop", "huge"])
def test_a_keep_drop_file_that_is_no_ordinary_file_or_too_big_is_refused_unread(tmp_path, kind):
    from studio.data.scan_report import DECISIONS_FILE, MAX_DECISIONS_BYTES, load_decisions

    path = tmp_path / DECISIONS_FILE
    path.parent.mkdir()
    if kind == "pipe":
        os.mkfifo(path)
    elif kind == "loop":
        path.symlink_to(path.name)
    else:
        path.write_bytes(b" " * (MAX_DECISIONS_BYTES + 1))
    error = _refused_in_time(lambda: load_decisions(tmp_path), DatasetError)
    assert str(path) in str(error) and "afresh" in str(error)


def test_a_config_file_not_named_yaml_is_told_by_line_number_without_its_text(tmp_path, capsys):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$SECRETHASH:19000:0:99999:7:::\ndaemon: SECRET2\nlora_rank: SECRET3\n")
    with pytest.raises(ConfigError) as error:
        load_config(secret)
    assert "line(s) 1, 2, 3" in str(error.value) and ".yaml" in str(error.value)
    assert main(["check-config", str(secret)]) == EXIT_USER_ERROR
    shown = str(error.value) + capsys.readouterr().err
    assert not any(word in shown.replace(str(tmp_path), "") for word in ("SECRET", "root", "daemon"))
    named = tmp_path / "mine.yaml"
    named.write_text("lora_rank: SECRET3\n")
    with pytest.raises(ConfigError, match="SECRET3"):  # a YAML file the user gave as such is quoted as before
        load_config(named)
