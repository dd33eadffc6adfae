"""Bulk caption edits: pure functions, then applied to metadata.csv with a backup (Undo and Redo over many steps:
test_caption_history)."""
from __future__ import annotations

import pytest

from studio.caption import (
    CaptionHistory,
    EditError,
    add_prefix,
    add_suffix,
    apply_template,
    backup_path,
    edit_metadata,
    find_replace,
    set_caption,
)
from studio.data import CaptionRecord, read_metadata

TEMPLATE = "**{caption}**, high quality, detailed"


def _records(*prompts):
    return [CaptionRecord(f"{i}.png", prompt, i + 2) for i, prompt in enumerate(prompts)]


def _prompts(records):
    return [record.prompt for record in records]


def test_apply_template_wraps_once_and_skips_empty():
    records = apply_template(_records("a cat", " a dog ", ""), TEMPLATE)
    assert _prompts(records) == ["**a cat**, high quality, detailed", "**a dog**, high quality, detailed", ""]
    assert _prompts(apply_template(records, TEMPLATE)) == _prompts(records)


@pytest.mark.parametrize("template", ["no field here", "{caption} and {caption}", "{Caption}"])
def test_apply_template_needs_caption_field_once(template):
    with pytest.raises(EditError, match=r"\{caption\}"):
        apply_template(_records("a cat"), template)


def test_add_prefix_no_double_prefix():
    records = add_prefix(_records("a cat", "zq style, a dog", "**ZQ style**, a cow", "zq stylish hat", ""), "zq style")
    assert _prompts(records) == ["zq style, a cat", "zq style, a dog", "**ZQ style**, a cow",
                                 "zq style, zq stylish hat", "zq style"]
    assert _prompts(add_prefix(records, "zq style, ")) == _prompts(records)


def test_add_suffix_no_double_suffix():
    records = add_suffix(_records("a cat,", "a dog, watercolor", "a cow, *Watercolor*"), "watercolor")
    assert _prompts(records) == ["a cat, watercolor", "a dog, watercolor", "a cow, *Watercolor*"]


def test_find_replace_plain_treats_pattern_and_replacement_literally():
    records = find_replace(_records("a (red) cat", "red.dog", "a cat"), "(red)", r"\1 blue")
    assert _prompts(records) == [r"a \1 blue cat", "red.dog", "a cat"]
    assert _prompts(find_replace(_records("CG artwork, CG art"), "cg art", "digital art", ignore_case=True)) == [
        "digital artwork, digital art"]


def test_find_replace_regex_with_groups_and_tidy_after_delete():
    records = find_replace(_records("a cute cat, beautiful, sofa", "a dog"), r"\b(cute|beautiful)\b", "", regex=True)
    assert _prompts(records) == ["a cat, sofa", "a dog"]
    swapped = find_replace(_records("red eyes, blue hair"), r"(\w+) (eyes|hair)", r"\2 of \1", regex=True)
    assert _prompts(swapped) == ["eyes of red, hair of blue"]


@pytest.mark.parametrize("pattern, repl, needle", [("(unclosed", "x", "not a valid regular expression"),
                                                   ("(a)", r"\2", "not valid for"), ("", "x", "needs something")])
def test_find_replace_bad_input_is_a_clear_error(pattern, repl, needle):
    with pytest.raises(EditError, match=needle):
        find_replace(_records("a cat"), pattern, repl, regex=True)


def test_set_caption_one_row_and_unknown_name():
    records = set_caption(_records("a cat", "a dog"), "1.png", "  a brown dog  ")
    assert _prompts(records) == ["a cat", "a brown dog"]
    with pytest.raises(EditError, match="nope.png"):
        set_caption(records, "nope.png", "x")


def _write(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


def test_edit_metadata_keeps_the_previous_file_as_backup(tmp_path):
    original = "filename,prompt\na.png,a cat\nb.png,\"a dog, grass\"\n"
    csv_path = _write(tmp_path / "metadata.csv", original)
    result = edit_metadata(csv_path, lambda rows: add_prefix(rows, "zq"))
    assert (result.changed_rows, result.changed_files) == (2, ("a.png", "b.png"))
    assert result.backup == backup_path(csv_path) and result.backup.read_text() == original
    assert [r.prompt for r in read_metadata(csv_path).records] == ["zq, a cat", "zq, a dog, grass"]
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_edit_that_changes_nothing_writes_nothing(tmp_path):
    csv_path = _write(tmp_path / "metadata.csv", 'filename,prompt\na.png,"zq, a cat"\n')
    _write(backup_path(csv_path), "filename,prompt\na.png,older\n")
    result = edit_metadata(csv_path, lambda rows: add_prefix(rows, "zq"))
    assert result.changed_rows == 0 and result.backup is None
    assert backup_path(csv_path).read_text() == "filename,prompt\na.png,older\n"


def test_failed_edit_changes_nothing(tmp_path):
    csv_path = _write(tmp_path / "metadata.csv", "filename,prompt\na.png,a cat\n")
    with pytest.raises(EditError):
        edit_metadata(csv_path, lambda rows: find_replace(rows, "(", "x", regex=True))
    with pytest.raises(EditError, match="keep every row"):
        edit_metadata(csv_path, lambda rows: rows[:0])
    assert csv_path.read_text() == "filename,prompt\na.png,a cat\n" and not backup_path(csv_path).exists()


def test_edit_refuses_rows_that_would_be_lost(tmp_path):
    extra = _write(tmp_path / "metadata.csv", "filename,prompt,pose\na.png,a cat,sitting\n")
    with pytest.raises(EditError, match="line"):
        edit_metadata(extra, lambda rows: add_prefix(rows, "zq"))
    unquoted = _write(tmp_path / "m1.csv", "a.png,a cat, sofa\n")
    with pytest.raises(EditError, match="double quotes"):
        edit_metadata(unquoted, lambda rows: add_prefix(rows, "zq"))
    nameless = _write(tmp_path / "m2.csv", "a.png,a cat\n,orphan caption\n")
    with pytest.raises(EditError, match="2"):
        edit_metadata(nameless, lambda rows: add_prefix(rows, "zq"))
    assert extra.read_text() == "filename,prompt,pose\na.png,a cat,sitting\n"


@pytest.mark.parametrize("raw", [
    '\ufefffilename,prompt\na.png,"a cat, sofa"\n',           # BOM
    'filename,prompt\r\na.png,"a cat, sofa"\r\n',             # CRLF
    'a.png,"a cat, sofa"\n',                                  # no header
    'file_name,text\r\n\r\na.png,"a cat, sofa"\r\n',          # other header names, blank line
])
def test_csv_quirks_round_trip_through_an_edit(tmp_path, raw):
    csv_path = _write(tmp_path / "metadata.csv", raw)
    history = CaptionHistory(csv_path, tmp_path / "versions")
    with history.recording():
        edit_metadata(csv_path, lambda rows: apply_template(rows, TEMPLATE))
    assert [(r.filename, r.prompt) for r in read_metadata(csv_path).records] == [
        ("a.png", "**a cat, sofa**, high quality, detailed")]
    assert backup_path(csv_path).read_bytes() == raw.encode("utf-8")
    history.undo()
    assert csv_path.read_bytes() == raw.encode("utf-8")
