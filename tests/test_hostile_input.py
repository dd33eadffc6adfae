"""A corpus of broken and odd input: each gets a clear error or a clean load, and no user file changes."""
from __future__ import annotations

import hashlib
import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.cli import EXIT_USER_ERROR, main
from studio.config import ConfigError, load_config
from studio.data import DatasetError, TrainingImages, load_training_set
from studio.service import Studio


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
    for name in ("truncated.png", "zero.png", "text.png", "bomb.png"):
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
        studio.load_dataset(str(tmp_path))
    assert {k: v for k, v in _hashes(tmp_path).items() if not k.startswith("workspace")} == before
