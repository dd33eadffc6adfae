"""Dataset scan: every flag has a hit and a miss, on pictures the tests generate."""
from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image, ImageFile, ImageFilter

from studio.app.datasets import DEMO_ROOT
from studio.data import DatasetError
from studio.data.decode import decode_rgb
from studio.data.quality import BLUR_THRESHOLD, calibrate_blur
from studio.data.scan import ScanReport, load_decisions, save_decisions, scan_folder
from studio.data.synthetic import synthetic_image

DEMOS = sorted(path for path in DEMO_ROOT.iterdir() if (path / "metadata.csv").is_file())


def _save(folder, name, seed=0, size=(640, 480), **options):
    image = synthetic_image(seed, size)
    image.save(folder / name, **options)
    return image


def _codes(report, relpath):
    return report.image(relpath).codes


def test_blurred_copy_is_flagged_and_its_sharp_original_is_not(tmp_path):
    for seed in range(4):  # one picture of each content kind
        image = _save(tmp_path, f"sharp{seed}.jpg", seed, quality=90)
        image.filter(ImageFilter.GaussianBlur(3)).save(tmp_path / f"soft{seed}.jpg", quality=90)
    report = scan_folder(tmp_path, workers=1, min_side=256)
    for seed in range(4):
        sharp, soft = report.image(f"sharp{seed}.jpg"), report.image(f"soft{seed}.jpg")
        assert "blurry" not in sharp.codes and sharp.sharpness > BLUR_THRESHOLD
        blurry = next(flag for flag in soft.flags if flag.code == "blurry")
        assert blurry.values["sharpness"] < blurry.values["threshold"] == BLUR_THRESHOLD
        assert not soft.keep and sharp.keep


def test_calibration_separates_sharp_pictures_from_blurred_copies():
    result = calibrate_blur(seeds=range(4), sizes=((640, 480),), radii=(2.0, 3.0))
    assert result.pairs == 8 and result.separated == 8
    assert result.blurred_max < BLUR_THRESHOLD < result.sharp_min


def test_resized_reencoded_copy_is_a_near_duplicate_and_other_pictures_are_not(tmp_path):
    original = _save(tmp_path, "original.png", seed=5)
    original.resize((400, 300), Image.Resampling.BICUBIC).save(tmp_path / "copy.jpg", quality=70)
    _save(tmp_path, "other.png", seed=6)
    report = scan_folder(tmp_path, workers=1, min_side=256)
    flag = next(flag for flag in report.image("copy.jpg").flags if flag.code == "near_duplicate")
    assert flag.values["of"] == "original.png" and flag.values["distance"] <= flag.values["max_distance"]
    assert _codes(report, "original.png") == [] and _codes(report, "other.png") == []
    [group] = report.duplicate_groups
    assert group.kind == "near" and group.members == ["copy.jpg", "original.png"] and group.keep == "original.png"


def test_exact_duplicate_found_by_content_hash_whatever_its_name(tmp_path):
    _save(tmp_path, "a.png", seed=1)
    shutil.copyfile(tmp_path / "a.png", tmp_path / "b.png")
    _save(tmp_path, "c.png", seed=2)
    report = scan_folder(tmp_path, workers=1, min_side=256)
    assert _codes(report, "b.png") == ["exact_duplicate"]
    assert _codes(report, "a.png") == [] and _codes(report, "c.png") == []
    assert [(group.kind, group.members) for group in report.duplicate_groups] == [("exact", ["a.png", "b.png"])]
    assert report.image("a.png").sha256 == report.image("b.png").sha256 != report.image("c.png").sha256


def test_jpeg_cut_short_by_one_byte_is_corrupt_and_the_whole_file_is_not(tmp_path):
    _save(tmp_path, "whole.jpg", seed=3, quality=90)
    data = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:-1])
    report = scan_folder(tmp_path, workers=1, min_side=256)
    assert _codes(report, "cut.jpg") == ["corrupt"] and "truncated" in report.image("cut.jpg").flags[0].message
    assert "corrupt" not in _codes(report, "whole.jpg")
    assert [(problem.code, problem.path.endswith("cut.jpg")) for problem in report.errors] == [("corrupt", True)]
    assert not report.image("cut.jpg").keep


def _png_claiming(width, height):
    """A valid 1x1 PNG whose IHDR (and its CRC) is rewritten to claim ``width`` x ``height``."""
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = bytearray(data[12:29])  # chunk type + 13 data bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def test_png_claiming_40000_squared_pixels_is_refused_without_decoding(tmp_path, monkeypatch):
    (tmp_path / "bomb.png").write_bytes(_png_claiming(40000, 40000))

    def no_decoding(self):
        raise AssertionError("the bomb was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    report = scan_folder(tmp_path, workers=1)
    [flag] = report.image("bomb.png").flags
    assert flag.code == "bomb" and flag.values["pixels"] == 40000 * 40000 and flag.values["limit"] == 89_478_485
    assert "1,600 megapixels, over the 89 megapixel limit" in flag.message
    assert report.errors[0].code == "bomb" and report.counts_by_flag == {"bomb": 1}


def test_pixel_limit_is_checked_from_the_header_and_is_configurable(tmp_path):
    Image.new("RGB", (100, 80), (200, 30, 30)).save(tmp_path / "a.png")
    assert "bomb" not in _codes(scan_folder(tmp_path, workers=1), "a.png")
    [flag] = scan_folder(tmp_path, workers=1, max_pixels=7999).image("a.png").flags
    assert flag.code == "bomb" and flag.values == {"width": 100, "height": 80, "pixels": 8000, "limit": 7999}


def test_small_threshold_is_configurable(tmp_path):
    _save(tmp_path, "a.png", size=(300, 200))
    flag = scan_folder(tmp_path, workers=1).image("a.png").flags[0]
    assert flag.code == "small" and flag.values["shorter_side"] == 200 and flag.values["min_side"] == 512
    assert "small" not in _codes(scan_folder(tmp_path, workers=1, min_side=200), "a.png")


def test_extreme_aspect_beyond_three_to_one(tmp_path):
    _save(tmp_path, "wide.png", seed=1, size=(1000, 300))
    _save(tmp_path, "three.png", seed=2, size=(900, 300))
    report = scan_folder(tmp_path, workers=1, min_side=256)
    assert "extreme_aspect" in _codes(report, "wide.png") and "extreme_aspect" not in _codes(report, "three.png")


def test_greyscale_is_flagged_only_in_a_colour_set(tmp_path):
    for seed in range(3):
        _save(tmp_path, f"colour{seed}.jpg", seed, quality=90)
    synthetic_image(7, (640, 480)).convert("L").save(tmp_path / "grey.png")
    synthetic_image(8, (640, 480)).convert("L").convert("RGB").save(tmp_path / "grey_rgb.jpg", quality=90)
    report = scan_folder(tmp_path, workers=1, min_side=256)
    assert "grayscale" in _codes(report, "grey.png") and "grayscale" in _codes(report, "grey_rgb.jpg")
    assert all("grayscale" not in _codes(report, f"colour{seed}.jpg") for seed in range(3))
    for name in ("colour0.jpg", "colour1.jpg", "colour2.jpg"):
        (tmp_path / name).unlink()
    assert scan_folder(tmp_path, workers=1, min_side=256).counts_by_flag.get("grayscale") is None


def test_captions_missing_either_way(tmp_path):
    _save(tmp_path, "a.png", seed=1)
    _save(tmp_path, "b.png", seed=2)
    report = scan_folder(tmp_path, workers=1, min_side=256)
    assert report.counts_by_flag == {} and any("captions were not checked" in note for note in report.notes)
    (tmp_path / "metadata.csv").write_text('filename,prompt\na.png,"a cat"\nghost.png,"a dog"\n')
    report = scan_folder(tmp_path, workers=1, min_side=256)
    assert _codes(report, "a.png") == [] and _codes(report, "b.png") == ["no_caption"]
    assert report.image("b.png").keep  # a missing caption can still be written
    [problem] = report.errors
    assert problem.code == "caption_without_image" and "ghost.png" in problem.message and "line 3" in problem.message
    assert report.counts_by_flag == {"no_caption": 1, "caption_without_image": 1}


def test_formats_orientation_background_and_first_gif_frame(tmp_path):
    names = ["p.jpg", "p.jpeg", "p.png", "p.webp", "p.bmp", "p.tiff"]
    for name in names:
        _save(tmp_path, name, seed=4, size=(96, 64))
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (60, 20)).save(tmp_path / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(np.arange(64 * 48, dtype=np.uint16).reshape(48, 64) * 20).save(tmp_path / "deep.png")
    report = scan_folder(tmp_path, workers=1, min_side=16)
    assert sorted(image.relpath for image in report.images) == sorted(names + ["anim.gif", "deep.png", "rotated.jpg"])
    assert report.errors == [] and (report.image("rotated.jpg").width, report.image("rotated.jpg").height) == (20, 60)
    first = decode_rgb((tmp_path / "anim.gif").read_bytes()).image
    assert first.getpixel((5, 5)) == (255, 0, 0)
    clear = io.BytesIO()
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(clear, "PNG")
    assert decode_rgb(clear.getvalue(), background=(10, 200, 30)).image.getpixel((3, 3)) == (10, 200, 30)


def test_recursive_option_and_hidden_folders(tmp_path):
    _save(tmp_path, "top.png", seed=1, size=(64, 64))
    (tmp_path / "sub").mkdir()
    _save(tmp_path / "sub", "inner.png", seed=2, size=(64, 64))
    (tmp_path / ".lora-studio").mkdir()
    _save(tmp_path / ".lora-studio", "hidden.png", seed=3, size=(64, 64))
    flat = scan_folder(tmp_path, workers=1, min_side=32)
    assert [image.relpath for image in flat.images] == ["top.png"]
    assert any("sub-folders were not scanned" in note for note in flat.notes)
    deep = scan_folder(tmp_path, workers=1, min_side=32, recursive=True)
    assert [image.relpath for image in deep.images] == ["sub/inner.png", "top.png"]
    outside = tmp_path.parent / f"{tmp_path.name}-outside.png"
    _save(tmp_path.parent, outside.name, seed=4, size=(64, 64))
    (tmp_path / "link.png").symlink_to(outside)
    linked = scan_folder(tmp_path, workers=1, min_side=32)
    assert [image.relpath for image in linked.images] == ["top.png"]
    assert any("link.png is a link to a file outside" in note for note in linked.notes)


def test_scan_modules_start_without_torch():
    code = ("import sys, studio.data.scan, studio.data.prepare, studio.data.commands; "
            "sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_report_round_trips_through_json_and_has_a_one_line_verdict(tmp_path):
    _save(tmp_path, "a.jpg", seed=1, quality=90)
    synthetic_image(1, (640, 480)).filter(ImageFilter.GaussianBlur(3)).save(tmp_path / "b.jpg", quality=90)
    _save(tmp_path, "c.png", seed=2, size=(200, 200))
    report = scan_folder(tmp_path, workers=1, min_side=256)
    assert ScanReport.from_json(report.to_json()) == report
    assert "\n" not in report.verdict
    assert report.verdict.startswith("1 of 3 images are ready;") and "1 blurry" in report.verdict
    assert "1 too small" in report.verdict and "drop or replace them" in report.verdict
    with pytest.raises(ValueError, match="not a LoRA Studio scan report"):
        ScanReport.from_json('{"folder": 1}')


def test_keep_drop_decisions_are_saved_with_the_dataset_and_applied(tmp_path):
    _save(tmp_path, "good.png", seed=1)
    _save(tmp_path, "small.png", seed=2, size=(100, 100))
    path = save_decisions(tmp_path, {"good.png": False, "small.png": True})
    assert path == tmp_path / ".lora-studio" / "decisions.json"
    assert load_decisions(tmp_path) == {"good.png": False, "small.png": True}
    report = scan_folder(tmp_path, workers=1, min_side=256)
    assert not report.image("good.png").keep and report.image("good.png").decision is False
    assert report.image("small.png").keep and report.image("small.png").codes == ["small"]
    path.write_text("{not json")
    with pytest.raises(DatasetError, match="decisions.json"):
        load_decisions(tmp_path)
    report = scan_folder(tmp_path, workers=1, min_side=256)
    assert report.image("good.png").keep and any("decisions.json" in note for note in report.notes)


def test_process_pool_gives_the_same_report_with_progress(tmp_path):
    for seed in range(5):
        _save(tmp_path, f"{seed}.jpg", seed, size=(320, 240), quality=90)
    calls = []
    pooled = scan_folder(tmp_path, workers=2, min_side=200, progress=lambda done, total: calls.append((done, total)))
    assert pooled == scan_folder(tmp_path, workers=1, min_side=200)
    assert calls[-1] == (5, 5)


def test_stop_request_ends_the_scan_early(tmp_path):
    for seed in range(4):
        _save(tmp_path, f"{seed}.png", seed, size=(64, 64))
    seen = []
    report = scan_folder(tmp_path, workers=1, min_side=32, progress=lambda done, total: seen.append(done),
                         should_stop=lambda: len(seen) >= 2)
    assert not report.complete and len(report.images) == 2 and report.verdict.startswith("Stopped after 2 of 4")


def test_missing_folder_and_bad_settings_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        scan_folder(tmp_path / "nope")
    with pytest.raises(DatasetError, match="not an RGB colour"):
        scan_folder(tmp_path, background=(300, 0, 0))
    assert np.isclose(scan_folder(tmp_path, workers=1).ready_count, 0)


@pytest.mark.parametrize("demo", DEMOS, ids=lambda path: path.name)
def test_every_shipped_demo_is_ready_at_the_toy_worlds_training_resolution(demo):
    """The demos are for the toy worlds, which train at 32 px: nothing small, blurry or duplicated there."""
    report = scan_folder(demo, workers=1, min_side=32)
    assert report.verdict == "All 20 images are ready for training"
    assert report.counts_by_flag == {} and report.duplicate_groups == [] and not report.needs_action


def test_the_same_shape_in_other_colours_is_no_near_duplicate(tmp_path):
    """A yellow and a red star on white hash 4 bits apart (pHash sees brightness structure only); a resized,
    re-saved copy of one of them is still a near-duplicate."""
    for name in ("star_12.png", "star_15.png"):
        shutil.copy(DEMO_ROOT / "star" / name, tmp_path / name)
    Image.open(tmp_path / "star_15.png").resize((28, 28), Image.Resampling.BICUBIC).save(tmp_path / "copy.jpg",
                                                                                          quality=90)
    report = scan_folder(tmp_path, workers=1, min_side=16)
    assert _codes(report, "star_12.png") == [] and _codes(report, "star_15.png") == []
    assert [(group.kind, group.members) for group in report.duplicate_groups] == [("near", ["copy.jpg",
                                                                                           "star_15.png"])]


def test_a_tiny_picture_soft_everywhere_is_blurry_and_a_sharp_flat_one_is_not(tmp_path):
    """32 px pictures are measured with tiles scaled to their size: a flat sharp square is sharp."""
    square = Image.new("RGB", (32, 32), (128, 128, 128))
    square.paste((30, 160, 40), (6, 6, 26, 26))
    square.save(tmp_path / "square.png")
    square.filter(ImageFilter.GaussianBlur(2)).save(tmp_path / "soft.png")
    report = scan_folder(tmp_path, workers=1, min_side=32)
    assert _codes(report, "square.png") == [] and "blurry" in _codes(report, "soft.png")


@pytest.mark.parametrize("content, words", [(b"hello, this is text", "is not a picture"),
                                            (b"", "is an empty file")])
def test_a_file_that_is_no_picture_gets_a_reason_in_plain_words(tmp_path, content, words):
    (tmp_path / "x.png").write_bytes(content)
    [flag] = scan_folder(tmp_path, workers=1, min_side=32).image("x.png").flags
    assert flag.code == "corrupt" and words in flag.message
    for internal in ("Pillow", "BytesIO", "0x", "<", "Error"):
        assert internal not in flag.message, flag.message
