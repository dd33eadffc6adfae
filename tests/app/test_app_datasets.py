"""The Dataset tab's review facade without a browser: reasons with numbers, stored report, choices, prepare."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from studio.app.datasets import TOY_WORLD_RESOLUTION
from studio.app.review import thumbnail
from studio.data.scan import save_decisions
from studio.data.synthetic import synthetic_image
from studio.app.errors import StudioError


@pytest.fixture
def folder(tmp_path):
    data = tmp_path / "photos"
    data.mkdir()
    synthetic_image(1, (600, 520)).save(data / "good.png")
    synthetic_image(2, (300, 200)).save(data / "small.png")
    synthetic_image(3, (2048, 512)).save(data / "wide.png")
    (data / "cut.png").write_bytes((data / "good.png").read_bytes()[:300])
    (data / "metadata.csv").write_text("filename,prompt\ngood.png,a good one\nsmall.png,a small one\n")
    return data


def test_reasons_carry_their_numbers_and_the_report_is_kept_in_the_workspace(studio, folder):
    review = studio.datasets.scan(str(folder), resolution=512)
    assert review.report_path.is_relative_to(studio.workspace) and review.report_path.is_file()
    rows = {row.relpath: row for row in review.rows(show_all=True)}
    texts = {relpath: [text for _, text, _, _ in row.reasons] for relpath, row in rows.items()}
    assert texts["small.png"] == ["too small (300x200, shorter side 200 < 512 px)"]
    assert texts["wide.png"] == ["extreme aspect ratio (4.0:1 > 3:1)", "no caption"]
    assert texts["cut.png"][0].startswith("corrupt (") and rows["cut.png"].thumbnail == ""
    assert texts["good.png"] == [] and rows["good.png"].thumbnail.startswith("data:image/jpeg;base64,")
    assert [row.reasons[0][3] for row in (rows["cut.png"], rows["small.png"])] == ["unreadable", "drop"]
    assert rows["wide.png"].reasons[1][3] == "advice"  # a missing caption does not leave the image out
    assert ("too small", 1, "drop") in review.counts() and ("corrupt", 1, "unreadable") in review.counts()
    assert [image.relpath for image in review.listed()] == ["cut.png", "small.png", "wide.png"]
    assert studio.datasets.load_review(str(folder)).report.verdict == review.report.verdict


def test_choices_merge_with_saved_ones_refuse_unreadable_files_and_reach_prepare(studio, folder):
    save_decisions(folder, {"wide.png": True})  # made earlier, e.g. with the CLI
    studio.datasets.scan(str(folder), resolution=512)
    result = studio.datasets.save_choices(str(folder), {"small.png": True, "cut.png": True, "good.png": True,
                                                        "ghost.png": False})
    assert result.saved == {"small.png": True}  # good.png was kept already: no change to record
    assert set(result.refused) == {"cut.png", "ghost.png"}
    saved = json.loads((folder / ".lora-studio" / "decisions.json").read_text())["decisions"]
    assert saved == {"small.png": True, "wide.png": True}
    assert (folder / ".lora-studio" / "decisions.json.bak").is_file()
    assert studio.datasets.load_review(str(folder)).report.image("small.png").keep is True

    studio.datasets.save_choices(str(folder), {"wide.png": False})
    copy = studio.datasets.prepare_copy(str(folder), "")
    assert copy.out_dir == str(studio.workspace / "prepared" / "photos")
    assert sorted(item.source for item in copy.written) == ["good.png", "small.png"]
    assert copy.skipped["wide.png"] == "dropped by your keep/drop choice."


def test_demo_datasets_stay_read_only(studio):
    demo = studio.datasets.demos()["star"]
    review = studio.datasets.scan("star")
    assert review.read_only and review.report.images
    first = review.report.images[0].relpath
    result = studio.datasets.save_choices("star", {first: not review.report.images[0].keep})
    assert result.saved == {} and "read-only" in result.refused[first]
    assert not (demo / ".lora-studio").exists()


def test_output_folder_and_unscanned_folder(studio, folder, tmp_path):
    assert studio.datasets.output_folder(folder, "  ") == studio.workspace / "prepared" / "photos"
    assert studio.datasets.output_folder(folder, "clean") == studio.workspace / "clean"
    assert studio.datasets.output_folder(folder, str(tmp_path / "x")) == tmp_path / "x"
    with pytest.raises(StudioError, match="has not been scanned yet"):
        studio.datasets.load_review(str(folder))
    studio.datasets.scan(str(folder))
    with pytest.raises(StudioError, match="inside the dataset folder"):
        studio.datasets.prepare_copy(str(folder), str(folder / "out"))


def test_thumbnail_enlarges_tiny_pictures_without_blur(tmp_path):
    Image.new("RGB", (8, 4), (10, 200, 30)).save(tmp_path / "tiny.png")
    image = thumbnail(tmp_path / "tiny.png", 96)
    assert image.size == (96, 48) and image.getpixel((50, 20)) == (10, 200, 30)
    assert thumbnail(tmp_path / "missing.png") is None


def test_a_folder_without_metadata_csv_counts_pictures_only_and_no_captions(studio, tmp_path):
    data = tmp_path / "uncaptioned"
    data.mkdir()
    for seed in range(3):
        synthetic_image(seed, (64, 64)).save(data / f"p{seed}.png")
    (data / "x.png").write_text("not a picture, only text")
    view = studio.datasets.load(str(data))
    assert [path.name for path in view.images] == ["p0.png", "p1.png", "p2.png"] and view.rows == []
    assert any(problem.startswith("x.png is not a picture") for problem in view.problems)
    assert any("metadata.csv is missing" in problem for problem in view.problems)


def test_the_resolution_follows_what_a_folder_is_for(studio, folder, tmp_path):
    """The demos are for the toy worlds (their presets train at 32 px); a clean copy was made for its side."""
    import yaml

    from studio.app.configs import REPO_ROOT

    preset_sides = {yaml.safe_load(path.read_text())["resolution"] for path in (REPO_ROOT / "presets" / "demo").glob(
        "*.yaml")}
    assert {studio.datasets.suggested_resolution(name)[0] for name in ("star", "striped", "priors")} == preset_sides
    assert studio.datasets.suggested_resolution(str(folder)) is None
    assert studio.datasets.suggested_resolution(str(tmp_path / "no-such-folder")) is None
    studio.datasets.scan(str(folder), resolution=256)
    copy = studio.datasets.prepare_copy(str(folder), str(tmp_path / "copy-256"))
    assert {min(item.width, item.height) for item in copy.written} == {256}
    assert studio.datasets.suggested_resolution(str(tmp_path / "copy-256"))[0] == 256


def test_the_demo_scanned_at_its_resolution_is_ready_and_its_clean_copy_complete(studio):
    review = studio.datasets.scan("star", resolution=TOY_WORLD_RESOLUTION)
    assert review.report.verdict == "All 20 images are ready for training" and review.resolution == 32
    copy = studio.datasets.prepare_copy("star", "")
    assert len(copy.written) == 20 and copy.skipped == {} and copy.summary().startswith("Wrote 20 image(s)")
