"""A dataset zip from a remote user: unpacked into the workspace, or refused whole with a sentence naming the entry;
nothing lands outside ``<workspace>/datasets`` and a refused upload leaves no folder behind."""
from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest
from PIL import Image

from studio.app.uploads import UploadError, UploadLimits, unpack_dataset_zip
from studio.app import Studio


def _png(colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path: Path, entries: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
        for name, target in (links or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


GOOD = {"set/a.png": _png(), "set/b.png": _png((0, 90, 200)), "set/metadata.csv": b"filename,prompt\na.png,red\n"
        b"b.png,blue\n", "set/notes.docx": b"PK...", "__MACOSX/set/._a.png": b"junk", "set/.DS_Store": b"junk"}


def test_a_zipped_folder_becomes_a_dataset_in_the_workspace(tmp_path):
    studio = Studio(tmp_path / "workspace", remote=True)
    result = studio.datasets.import_zip(_zip(tmp_path / "my set.zip", GOOD))
    assert result.folder == studio.workspace / "datasets" / "my-set"
    assert sorted(p.name for p in result.folder.iterdir()) == ["a.png", "b.png", "metadata.csv"]
    assert result.skipped == ["notes.docx"] and "skipped 1 other file(s) (notes.docx)" in result.summary()
    assert [row for row in studio.datasets.load(str(result.folder)).rows] == [("a.png", "red"), ("b.png", "blue")]
    again = studio.datasets.import_zip(tmp_path / "my set.zip")
    assert again.folder.name == "my-set-2"  # never unpacked over an earlier upload


def _entries_with(name: str, data: bytes = b"x") -> dict[str, bytes]:
    return {"a.png": _png(), name: data}


BOMB = b"\0" * (40 << 20)  # 40 MiB of zeros packs to about 40 KiB


@pytest.mark.parametrize("case, entries, links, limits, expected", [
    ("climbs out", _entries_with("../../outside.png", _png()), None, None, "points outside"),
    ("climbs out inside", _entries_with("set/../../outside.png", _png()), None, None, "points outside"),
    ("absolute", _entries_with("/tmp/outside.png", _png()), None, None, "points outside"),
    ("windows drive", _entries_with("C:/outside.png", _png()), None, None, "points outside"),
    ("backslashes", _entries_with("..\\..\\outside.png", _png()), None, None, "points outside"),
    ("link", {"a.png": _png()}, {"b.png": "/etc/passwd"}, None, "is a link"),
    ("zip bomb", _entries_with("captions.txt", BOMB), None, None, "zip bomb"),
    ("too many files", {f"{i}.png": _png() for i in range(12)}, None, UploadLimits(max_files=10), "12 files"),
    ("too big", _entries_with("c.txt", b"y" * 5000), None, UploadLimits(max_total_bytes=4000), "more than 4 kB"),
    ("too deep", _entries_with("/".join("d" * 12) + "/x.png", _png()), None, UploadLimits(max_depth=8), "deep"),
    ("no pictures", {"metadata.csv": b"filename,prompt\n"}, None, None, "no pictures"),
])
def test_hostile_zips_are_refused_whole_and_leave_nothing_behind(tmp_path, case, entries, links, limits, expected):
    archive = _zip(tmp_path / "upload.zip", entries, links)
    datasets = tmp_path / "workspace" / "datasets"
    with pytest.raises(UploadError, match=expected):
        unpack_dataset_zip(archive, datasets, limits=limits or UploadLimits())
    assert list(datasets.iterdir()) == [] if datasets.exists() else True
    assert not (tmp_path / "outside.png").exists() and not Path("/tmp/outside.png").exists()


def test_an_encrypted_entry_is_refused_before_anything_is_read(tmp_path):
    archive = _zip(tmp_path / "upload.zip", {"a.png": _png()})
    data = bytearray(archive.read_bytes())
    for header in (b"PK\x03\x04", b"PK\x01\x02"):  # set the "encrypted" bit in both headers
        at = data.index(header)
        flags_at = at + (6 if header == b"PK\x03\x04" else 8)
        data[flags_at] |= 0x1
    archive.write_bytes(bytes(data))
    with pytest.raises(UploadError, match="encrypted"):
        unpack_dataset_zip(archive, tmp_path / "datasets")


def test_a_file_that_is_not_a_zip_gets_a_sentence(tmp_path):
    fake = tmp_path / "pictures.zip"
    fake.write_bytes(b"this is not a zip file")
    with pytest.raises(UploadError, match="not a readable zip"):
        unpack_dataset_zip(fake, tmp_path / "datasets")
