"""The Captioning tab's facade: findings beside each row, bulk edits with .bak and Undo, the prompt helper, and
auto-captioning in the background (progress, cancel, the offline sentence)."""
from __future__ import annotations

import threading

import pytest

from studio.app.caption_job import AutoCaptionBusy, AutoCaptionJob
from studio.app.captions import CaptionDesk, place_caption, structured_preview, table_rows, unsaved_rows
from studio.app.datasets import DEMO_ROOT
from studio.caption import EditError
from studio.caption.tokens import load_token_counter
from studio.data.scan import save_decisions
from studio.app import Studio

CSV = ('filename,prompt\n'
       'a.png,"**zq star**, a beautiful star, *calm*"\n'
       'b.jpg,"zq star, red, gray background"\n'
       'c.png,a blue star on white\n')


@pytest.fixture(scope="module")
def counter():
    return load_token_counter()


@pytest.fixture
def desk(tmp_path, counter):
    return CaptionDesk(Studio(tmp_path / "workspace"), counter=counter)


@pytest.fixture
def dataset(image_folder):
    """The conftest's five pictures; metadata.csv captions three of them (one with 'beautiful')."""
    (image_folder / "metadata.csv").write_text(CSV, encoding="utf-8")
    return image_folder


def _rules(findings):
    return [finding.rule for finding in findings]


def test_open_puts_each_finding_beside_its_row_and_draws_the_chart(desk, dataset):
    view = desk.open(str(dataset), required="zq star")
    assert [name for name, _ in view.rows] == ["a.png", "b.jpg", "c.png"]
    assert _rules(view.findings[0]) == ["subjective"] and "'beautiful'" in view.findings[0][0].message
    assert view.findings[1] == []
    assert _rules(view.findings[2]) == ["missing_keyword"]
    table = view.table()
    assert table[1] == ["b.jpg", "zq star, red, gray background", "✓"]
    assert table[0][2].startswith("⚠ subjective:") and table[2][2].startswith("✗ missing_keyword:")
    assert "1 error(s), 1 warning(s) in 2 of 3 captions" in view.summary()
    assert view.chart.is_file() and view.chart.is_relative_to(desk.studio.workspace)
    assert "2 image(s) have no row (e.webp, sub/d.png)" in view.note


def test_file_level_warnings_go_to_the_summary_and_row_problems_beside_the_row(desk, dataset):
    (dataset / "metadata.csv").write_text("filename,prompt,score\na.png,a star,5\na.png,a red star\n",
                                          encoding="utf-8")
    view = desk.open(str(dataset))
    assert "extra column(s) score" in view.summary()
    assert "csv" in _rules(view.findings[1]) and "listed again" in view.table()[1][2]


def test_without_metadata_csv_every_image_is_a_row_with_an_empty_caption(desk, image_folder):
    view = desk.open(str(image_folder))
    assert view.rows == [(name, "") for name in ["a.png", "b.jpg", "c.png", "e.webp", "sub/d.png"]]
    assert all(_rules(found) == ["empty"] for found in view.findings)
    assert "metadata.csv is missing" in view.note


def test_check_lints_the_table_as_shown_including_rows_without_a_name(desk, dataset):
    rows = [("a.png", "a cute star"), ("", "orphan caption"), ("c.png", "a cute star")]
    view = desk.check(str(dataset), rows)
    assert view.rows == rows
    assert _rules(view.findings[0]) == ["subjective"] and view.findings[1] == []
    assert _rules(view.findings[2]) == ["subjective", "duplicate"]
    assert "a.png (line 2)" in view.findings[2][1].message
    assert (dataset / "metadata.csv").read_text(encoding="utf-8") == CSV


def test_bulk_prefix_keeps_the_exact_previous_file_and_undo_restores_it(desk, dataset):
    csv_path = dataset / "metadata.csv"
    original = csv_path.read_bytes()
    rows = desk.open(str(dataset)).rows
    result, view = desk.edit(str(dataset), rows, "prefix", "zq style")
    assert result.changed_rows == 3 and (dataset / "metadata.csv.bak").read_bytes() == original
    assert [prompt for _, prompt in view.rows][1] == "zq style, zq star, red, gray background"
    undone, undone_view = desk.undo(str(dataset), view.rows)
    assert csv_path.read_bytes() == original and undone.changed_rows == 3
    assert [prompt for _, prompt in undone_view.rows][2] == "a blue star on white"
    with pytest.raises(EditError, match="Nothing to undo"):  # a second Undo does not re-apply the prefix
        desk.undo(str(dataset), undone_view.rows)
    desk.redo(str(dataset), undone_view.rows)
    assert csv_path.read_text(encoding="utf-8").count("zq style, ") == 3
    assert not list(dataset.glob("*.undo")) and desk.history(dataset).store.is_relative_to(desk.studio.workspace)


def test_undo_walks_back_through_a_save_and_two_edits_one_step_at_a_time(desk, dataset):
    rows = desk.open(str(dataset)).rows
    rows[2] = ("c.png", "a blue star on a white background")
    _, view = desk.save(str(dataset), rows)
    _, view = desk.edit(str(dataset), view.rows, "prefix", "zq")
    _, view = desk.edit(str(dataset), view.rows, "suffix", "flat colours")
    captions = []
    for _ in range(3):
        _, view = desk.undo(str(dataset), view.rows)
        captions.append(view.rows[2][1])
    assert captions == ["zq, a blue star on a white background", "a blue star on a white background",
                        "a blue star on white"]
    assert (dataset / "metadata.csv").read_text(encoding="utf-8") == CSV
    _, view = desk.redo(str(dataset), view.rows)
    assert view.rows[2][1] == "a blue star on a white background" and desk.history(dataset).steps() == (1, 2)


@pytest.mark.parametrize("kind, args, expected", [
    ("template", ("{caption}, high quality",), "a blue star on white, high quality"),
    ("suffix", ("flat colours",), "a blue star on white, flat colours"),
    ("replace", ("blue", "green", False, False), "a green star on white"),
    ("replace", (r"a (\w+) star", r"one \1 star", True, False), "one blue star on white"),
    ("replace", ("BLUE", "red", False, True), "a red star on white"),
])
def test_every_bulk_edit_writes_the_file(desk, dataset, kind, args, expected):
    result, view = desk.edit(str(dataset), desk.open(str(dataset)).rows, kind, *args)
    assert view.rows[2] == ("c.png", expected) and result.backup.is_file()
    assert expected in (dataset / "metadata.csv").read_text(encoding="utf-8")


@pytest.mark.parametrize("kind, args, words", [
    ("prefix", ("  ",), "The prefix is empty"),
    ("template", ("no field",), "{caption}"),
    ("replace", ("(", "x", True, False), "not a valid regular expression"),
    ("replace", ("", "x", False, False), "needs something to find"),
])
def test_a_bad_edit_changes_nothing(desk, dataset, kind, args, words):
    with pytest.raises(EditError, match=words.replace("(", r"\(").replace("{", r"\{")):
        desk.edit(str(dataset), desk.open(str(dataset)).rows, kind, *args)
    assert (dataset / "metadata.csv").read_text(encoding="utf-8") == CSV
    assert not (dataset / "metadata.csv.bak").exists()


def test_edits_undo_and_auto_caption_refuse_while_the_table_has_unsaved_changes(desk, dataset):
    rows = desk.open(str(dataset)).rows
    rows[1] = ("b.jpg", "edited on the page")
    with pytest.raises(EditError, match=r"unsaved changes \(b.jpg\); bulk edits change .*click Save first"):
        desk.edit(str(dataset), rows, "prefix", "zq")
    desk.edit(str(dataset), desk.open(str(dataset)).rows, "suffix", "flat")  # a step to undo
    edited = [(name, "edited on the page" if name == "b.jpg" else prompt) for name, prompt in desk.open(
        str(dataset)).rows]
    with pytest.raises(EditError, match=r"unsaved changes \(b.jpg\); Undo replaces"):
        desk.undo(str(dataset), edited)
    desk.undo(str(dataset), desk.open(str(dataset)).rows)
    with pytest.raises(EditError, match=r"unsaved changes \(b.jpg\); auto-captioning rewrites"):
        desk.start_auto_caption(str(dataset), rows, "any", 8, replace_all=False)
    assert (dataset / "metadata.csv").read_text(encoding="utf-8") == CSV and desk.auto.state().status == "idle"
    path, view = desk.save(str(dataset), rows)
    assert view.rows[1] == ("b.jpg", "edited on the page") and unsaved_rows(path, rows) == []
    desk.edit(str(dataset), rows, "prefix", "zq")
    assert desk.open(str(dataset)).rows[1] == ("b.jpg", "zq, edited on the page")


def test_nothing_to_undo_is_a_clear_sentence(desk, dataset):
    with pytest.raises(EditError, match="Nothing to undo: no caption change was made here"):
        desk.undo(str(dataset), desk.open(str(dataset)).rows)
    with pytest.raises(EditError, match="Nothing to redo"):
        desk.redo(str(dataset), desk.open(str(dataset)).rows)


def test_without_metadata_csv_captions_typed_in_the_table_count_as_unsaved(desk, image_folder):
    rows = desk.open(str(image_folder)).rows
    assert unsaved_rows(image_folder / "metadata.csv", rows) == []
    rows[0] = ("a.png", "typed but not saved")
    with pytest.raises(EditError, match=r"unsaved changes \(a.png\)"):
        desk.start_auto_caption(str(image_folder), rows, "any", 8, replace_all=False)
    with pytest.raises(EditError, match="does not exist yet; click Save"):
        desk.edit(str(image_folder), rows, "prefix", "zq")


def test_table_rows_read_a_dataframe_and_ignore_the_lint_column():
    pandas = pytest.importorskip("pandas")
    frame = pandas.DataFrame([["a.png", "a star", "✓"], ["b.png", None, "✗ empty"]],
                             columns=["filename", "prompt", "lint"])
    assert table_rows(frame) == [("a.png", "a star"), ("b.png", "")]


def test_structured_preview_marks_core_and_mood_and_escapes_html():
    html = structured_preview([("a<b>.png", "**zq star**, <script>x</script>, *calm*")])
    assert '<strong class="core">zq star</strong>' in html and '<em class="mood">calm</em>' in html
    assert "<script>" not in html and "a&lt;b&gt;.png" in html


def test_place_caption_replaces_or_appends_the_selected_row():
    rows = [("a.png", "a star"), ("b.png", "old")]
    assert place_caption(rows, 1, "zq star, red", append=False)[1] == ("b.png", "zq star, red")
    assert place_caption(rows, 1, "zq star, red", append=True)[1] == ("b.png", "old, zq star, red")
    with pytest.raises(EditError, match="No row is selected"):
        place_caption(rows, None, "zq star", append=False)
    with pytest.raises(EditError, match="write at least the subject"):
        place_caption(rows, 0, " ", append=False)


def test_auto_caption_fills_only_images_without_a_caption(desk, dataset, tiny_blip_dir):
    desk.start_auto_caption(str(dataset), desk.open(str(dataset)).rows, str(tiny_blip_dir), 2, replace_all=False)
    state = desk.auto.wait(120)
    assert state.status == "finished" and (state.done, state.total) == (2, 2), state.message
    assert "Captioned 2 image(s)" in state.message and "Undo puts it back" in state.message
    rows = dict(desk.open(str(dataset)).rows)
    assert rows["a.png"] == "**zq star**, a beautiful star, *calm*" and set(rows) >= {"e.webp", "sub/d.png"}
    assert (dataset / "metadata.csv.bak").read_text(encoding="utf-8") == CSV
    desk.start_auto_caption(str(dataset), desk.open(str(dataset)).rows, str(tiny_blip_dir), 8, replace_all=False)
    assert "already has a caption" in desk.auto.wait(60).message


def test_auto_caption_all_replaces_every_caption(desk, dataset, tiny_blip_dir):
    desk.start_auto_caption(str(dataset), desk.open(str(dataset)).rows, str(tiny_blip_dir), 8, replace_all=True)
    state = desk.auto.wait(120)
    assert (state.status, state.done) == ("finished", 5)
    assert "beautiful" not in (dataset / "metadata.csv").read_text(encoding="utf-8")


def test_auto_caption_without_a_model_offline_gives_the_engine_sentence(desk, dataset):
    desk.start_auto_caption(str(dataset), desk.open(str(dataset)).rows, "nobody/no-such-blip", 8, replace_all=True)
    state = desk.auto.wait(60)
    assert state.status == "failed" and state.message.startswith("No BLIP model here: nobody/no-such-blip")
    assert "BLIP model field" in state.message and "--model" not in state.message  # the studio's field, no CLI flag
    assert (dataset / "metadata.csv").read_text(encoding="utf-8") == CSV


class _GatedCaptioner:
    """Captions instantly but waits at the second batch until the test lets it go."""

    source, device = "gated", "cpu"

    def __init__(self):
        self.second_batch, self.release, self.calls = threading.Event(), threading.Event(), 0

    def caption(self, images, **_options):
        self.calls += 1
        if self.calls == 2:
            self.second_batch.set()
            self.release.wait(30)
        return [f"caption {self.calls}"] * len(images)


def test_cancel_stops_between_batches_and_writes_what_was_captioned(tmp_path, counter, image_folder):
    captioner = _GatedCaptioner()
    desk = CaptionDesk(Studio(tmp_path / "ws"), counter=counter, auto=AutoCaptionJob(loader=lambda _m: captioner))
    desk.start_auto_caption(str(image_folder), [], "any", 2, replace_all=False)
    assert captioner.second_batch.wait(30)
    state = desk.auto.state()
    assert (state.status, state.done, state.total) == ("captioning", 2, 5)
    with pytest.raises(AutoCaptionBusy, match="already captioning"):
        desk.start_auto_caption(str(image_folder), [], "any", 2, replace_all=False)
    assert desk.auto.cancel()
    captioner.release.set()
    state = desk.auto.wait(30)
    assert state.status == "stopped" and "Stopped after 4 of 5 images" in state.message
    assert [prompt for _, prompt in desk.open(str(image_folder)).rows] == ["caption 1"] * 2 + ["caption 2"] * 2


def test_auto_caption_refuses_a_bad_batch_size_and_a_folder_without_images(desk, tmp_path):
    with pytest.raises(ValueError, match="batch size must be 1 or more"):
        desk.start_auto_caption(str(tmp_path), [], "any", 0, replace_all=False)
    (tmp_path / "empty").mkdir()
    desk.start_auto_caption(str(tmp_path / "empty"), [], "any", 8, replace_all=False)
    state = desk.auto.wait(30)
    assert state.status == "failed" and "has no images" in state.message


def test_the_spreadsheet_export_disarms_formulas_and_leaves_metadata_csv_verbatim(desk, dataset):
    import csv
    import io

    rows = [("a.png", "=cmd|' /C calc'!A0"), ("b.jpg", "+SUM(1,2)"), ("c.png", "a blue star on white")]
    desk.save(str(dataset), rows)
    saved = (dataset / "metadata.csv").read_text(encoding="utf-8")
    path = desk.export_spreadsheet(str(dataset), rows)
    assert path.is_relative_to(desk.studio.workspace) and path.suffix == ".csv"
    cells = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert cells[1:] == [["a.png", "'=cmd|' /C calc'!A0"], ["b.jpg", "'+SUM(1,2)"], ["c.png", "a blue star on white"]]
    assert (dataset / "metadata.csv").read_text(encoding="utf-8") == saved and "=cmd|" in saved


def _checksums(folder):
    import hashlib

    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in folder.iterdir()}


def test_saving_a_shipped_demo_saves_a_copy_in_the_workspace_and_the_demo_stays_as_it_was(desk):
    demo = DEMO_ROOT / "star"
    before = _checksums(demo)
    rows = desk.open("star").rows
    rows[0] = (rows[0][0], "a orange zq star, flat colours")
    path, view = desk.save(str(demo), rows)
    copy = desk.studio.workspace / "datasets" / "star"
    assert path == copy / "metadata.csv" and view.folder == copy and view.rows[0][1] == "a orange zq star, flat colours"
    assert f"copied (pictures and captions) to {copy}" in view.copied and "stays read-only" in view.copied
    assert len(list(copy.glob("*.png"))) == 20 and _checksums(demo) == before
    result, view = desk.edit(str(copy), view.rows, "suffix", "toy world")  # the copy is the user's now
    assert result.changed_rows == 20 and view.copied == "" and _checksums(demo) == before
    _, view = desk.undo(str(copy), view.rows)
    _, view = desk.undo(str(copy), view.rows)  # back to the demo's own captions, in the copy
    assert (copy / "metadata.csv").read_bytes() == (demo / "metadata.csv").read_bytes()
    with pytest.raises(EditError, match="Nothing to undo"):
        desk.undo("star", desk.open("star").rows)
    _, second = desk.edit("star", desk.open("star").rows, "prefix", "zq")  # another change of the demo: a new copy
    assert second.folder == copy.with_name("star-2") and _checksums(demo) == before


def test_unreadable_and_dropped_pictures_are_left_out_of_captioning(desk, image_folder, tmp_path):
    (image_folder / "x.png").write_text("a text file named like a picture")
    save_decisions(image_folder, {"b.jpg": False, "c.png": True})
    view = desk.open(str(image_folder))
    assert [name for name, _ in view.rows] == ["a.png", "c.png", "e.webp", "sub/d.png"]
    assert "x.png is not a picture" in view.note and "b.jpg is dropped in the Dataset tab" in view.note
    (image_folder / "metadata.csv").write_text("filename,prompt\na.png,a red one\nx.png,text\nb.jpg,a green one\n")
    lint = dict((row[0], row[2]) for row in desk.open(str(image_folder)).table())
    assert lint["x.png"].startswith("✗ left_out: x.png is not a picture") and lint["a.png"] == "✓"
    assert lint["b.jpg"].startswith("⚠ left_out: b.jpg is dropped")
    captioner = _GatedCaptioner()
    captioner.release.set()
    auto = CaptionDesk(desk.studio, counter=desk.counter(), auto=AutoCaptionJob(loader=lambda _m: captioner))
    auto.start_auto_caption(str(image_folder), auto.open(str(image_folder)).rows, "any", 8, replace_all=False)
    state = auto.auto.wait(30)
    assert state.status == "finished" and state.done == 3, state.message  # c.png, e.webp, sub/d.png
    captioned = {name for name, prompt in auto.open(str(image_folder)).rows}
    assert captioned == {"a.png", "x.png", "b.jpg", "c.png", "e.webp", "sub/d.png"}
