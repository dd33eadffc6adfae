"""Prepare: a clean, resized copy of the kept images in a new folder; the originals are never touched."""
from __future__ import annotations

import hashlib

import pytest
from PIL import Image, ImageFilter

from studio.data import read_metadata
from studio.data.prepare import PREPARED_MARKER, PrepareError, prepare_dataset
from studio.data.scan import save_decisions, scan_folder
from studio.data.synthetic import synthetic_image


def _checksums(folder):
    return {path.relative_to(folder).as_posix(): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture
def dataset(tmp_path):
    """big.jpg (1024x768, EXIF, ICC), tall.png (RGBA 600x900, a clear corner), small.png (300x200), soft.jpg (blurred), captions."""
    folder = tmp_path / "data"
    folder.mkdir()
    exif = Image.Exif()
    exif[0x010F] = "TestCam"
    synthetic_image(1, (1024, 768)).save(folder / "big.jpg", quality=92, exif=exif.tobytes(),
                                         icc_profile=_srgb_profile())
    tall = synthetic_image(2, (600, 900)).convert("RGBA")
    tall.paste((0, 0, 0, 0), (0, 0, 40, 40))
    tall.save(folder / "tall.png")
    synthetic_image(3, (300, 200)).save(folder / "small.png")
    synthetic_image(4, (800, 600)).filter(ImageFilter.GaussianBlur(4)).save(folder / "soft.jpg", quality=90)
    (folder / "metadata.csv").write_text('filename,prompt\nbig.jpg,"a, big one"\ntall.png,a tall one\n'
                                         "small.png,a small one\n")
    return folder


def _srgb_profile():
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def test_prepare_resizes_strips_metadata_carries_captions_and_leaves_originals_identical(dataset, tmp_path):
    before = _checksums(dataset)
    out = tmp_path / "prepared"
    result = prepare_dataset(scan_folder(dataset, workers=1), out, workers=1)
    assert _checksums(dataset) == before
    assert sorted(item.output for item in result.written) == ["big.png", "tall.png"]
    assert result.skipped == {"small.png": "flagged: small.", "soft.jpg": "flagged: blurry."}
    with Image.open(out / "big.png") as big, Image.open(out / "tall.png") as tall:
        assert big.size == (683, 512) and tall.size == (512, 768)
        assert big.mode == tall.mode == "RGB"
        assert not big.getexif() and "icc_profile" not in big.info and "exif" not in big.info
        assert tall.getpixel((0, 0)) == (255, 255, 255)  # transparency composited on the scan's background
    table = read_metadata(out / "metadata.csv", out)
    assert [(record.filename, record.prompt) for record in table.records] == [("big.png", "a, big one"),
                                                                             ("tall.png", "a tall one")]
    assert table.problems == []
    assert (out / PREPARED_MARKER).is_file() and "Wrote 2 image(s)" in result.summary()


def test_small_images_are_never_upscaled_unless_asked_and_then_flagged(dataset, tmp_path):
    report = scan_folder(dataset, workers=1)
    kept = prepare_dataset(report, tmp_path / "a", keep_flagged=True, workers=1)
    assert {item.output: (item.width, item.height) for item in kept.written}["small.png"] == (300, 200)
    assert kept.upscaled == [] and len(kept.written) == 4
    grown = prepare_dataset(report, tmp_path / "b", keep_flagged=True, upscale=True, format="jpg", workers=1)
    small = next(item for item in grown.written if item.source == "small.png")
    assert (small.output, small.width, small.height) == ("small.jpg", 768, 512)
    assert [flag.code for flag in small.flags] == ["upscaled"] and small.flags[0].values["from"] == [300, 200]
    assert grown.upscaled == ["small.png"]
    with Image.open(tmp_path / "b" / "small.jpg") as image:
        assert image.format == "JPEG" and image.size == (768, 512)


def test_output_inside_the_dataset_or_over_other_files_is_refused_and_nothing_is_written(dataset, tmp_path):
    before = _checksums(dataset)
    report = scan_folder(dataset, workers=1)
    for target in (dataset, dataset / "prepared", dataset / "sub" / "deeper"):
        with pytest.raises(PrepareError, match="inside the dataset folder"):
            prepare_dataset(report, target, workers=1)
    with pytest.raises(PrepareError, match="contains the dataset folder"):
        prepare_dataset(report, tmp_path, workers=1)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(PrepareError, match="did not prepare"):
        prepare_dataset(report, foreign, workers=1)
    with pytest.raises(PrepareError, match="format"):
        prepare_dataset(report, tmp_path / "new", format="gif", workers=1)
    assert _checksums(dataset) == before and [path.name for path in foreign.iterdir()] == ["notes.txt"]
    assert not (tmp_path / "new").exists()


def test_decisions_override_flags_and_preparing_again_replaces_the_old_copy(dataset, tmp_path):
    out = tmp_path / "out"
    save_decisions(dataset, {"small.png": True, "tall.png": False})
    first = prepare_dataset(dataset, out, workers=1)  # a folder is scanned first
    assert sorted(item.source for item in first.written) == ["big.jpg", "small.png"]
    assert first.skipped["tall.png"] == "dropped by your keep/drop choice."
    second = prepare_dataset(scan_folder(dataset, workers=1), out, decisions={"small.png": False}, workers=1)
    assert [item.source for item in second.written] == ["big.jpg"]
    assert not (out / "small.png").exists() and (out / "big.png").exists()
    assert [record.filename for record in read_metadata(out / "metadata.csv").records] == ["big.png"]


def test_names_that_clash_in_the_new_format_stay_apart(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    synthetic_image(1, (96, 96)).save(folder / "a.png")
    synthetic_image(2, (96, 96)).save(folder / "a.jpg", quality=95)
    result = prepare_dataset(scan_folder(folder, workers=1, min_side=64), tmp_path / "out", target_side=64,
                             workers=1)
    assert sorted((item.source, item.output) for item in result.written) == [("a.jpg", "a.png"),
                                                                             ("a.png", "a-png.png")]
    assert sorted(path.name for path in (tmp_path / "out").glob("*.png")) == ["a-png.png", "a.png"]


def test_a_copy_without_any_picture_says_so_instead_of_reporting_success(dataset, tmp_path):
    result = prepare_dataset(scan_folder(dataset, workers=1, min_side=2048), tmp_path / "out", workers=1)
    assert result.written == [] and len(result.skipped) == 4
    assert result.summary().startswith("Wrote no images to ") and "all 4 were left out" in result.summary()
