"""metadata.csv reading, folder checks and safe writing."""
from __future__ import annotations

import os

import pytest
from PIL import Image

from studio.data import (
    CaptionRecord,
    DatasetError,
    check_dataset,
    load_training_set,
    read_metadata,
    write_metadata,
)


def _image(path, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 200, 30)).save(path)
    return path


def _csv(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding))
    return path


def _pairs(table):
    return [(r.filename, r.prompt) for r in table.records]


@pytest.mark.parametrize("header", ["filename,prompt\n", "file_name,text\n", "image,caption\n", ""])
def test_header_optional_and_aliases(tmp_path, header):
    csv_file = _csv(tmp_path / "metadata.csv", header + 'img01.jpg,"anime girl with long silver hair, cyberpunk"\n'
                    "b.png,a cat\n")
    table = read_metadata(csv_file)
    assert table.has_header is bool(header)
    assert _pairs(table) == [("img01.jpg", "anime girl with long silver hair, cyberpunk"), ("b.png", "a cat")]
    assert [r.line for r in table.records] == ([2, 3] if header else [1, 2])
    assert table.problems == [] and table.warnings == []


def test_bom_crlf_blank_lines_and_multiline_quotes(tmp_path):
    text = ('\ufefffilename,prompt\r\n\r\na.png,"say ""hi"", then\r\nwave"\r\n\r\n'
            "b.png,plain\r\n")
    table = read_metadata(_csv(tmp_path / "metadata.csv", text))
    assert _pairs(table) == [("a.png", 'say "hi", then\r\nwave'), ("b.png", "plain")]
    assert [r.line for r in table.records] == [3, 6]
    assert table.problems == []


def test_round_trip_write_then_read(tmp_path):
    records = [CaptionRecord("a.png", 'commas, "quotes"\nand a newline'), CaptionRecord("sub/b.jpg", "ünïcode ✓")]
    path = write_metadata(tmp_path / "metadata.csv", records)
    raw = path.read_bytes()
    assert raw.startswith(b"filename,prompt\n") and b"\r\n" not in raw and not raw.startswith(b"\xef\xbb\xbf")
    assert _pairs(read_metadata(path)) == [(r.filename, r.prompt) for r in records]


def test_write_keeps_backup_and_refuses_bad_records(tmp_path):
    path = _csv(tmp_path / "metadata.csv", "filename,prompt\nold.png,the original\n")
    write_metadata(path, [CaptionRecord("new.png", "replacement")])
    assert (tmp_path / "metadata.csv.bak").read_text() == "filename,prompt\nold.png,the original\n"
    assert _pairs(read_metadata(path)) == [("new.png", "replacement")]
    with pytest.raises(ValueError, match="line break"):
        write_metadata(path, [CaptionRecord("x\n.png", "bad")])
    assert _pairs(read_metadata(path)) == [("new.png", "replacement")]
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_extra_columns_warn_and_missing_prompt_is_a_problem(tmp_path):
    csv_file = _csv(tmp_path / "metadata.csv", "a.png,a girl, cyberpunk style\nb.png\nc.png,fine\n")
    table = read_metadata(csv_file)
    assert _pairs(table)[0] == ("a.png", "a girl")
    assert len(table.warnings) == 1 and "line(s) 1" in table.warnings[0] and "double quotes" in table.warnings[0]
    assert [(p.line, "no prompt column" in p.message) for p in table.problems] == [(2, True)]


def test_named_extra_column_in_header_is_ignored_with_one_warning(tmp_path):
    table = read_metadata(_csv(tmp_path / "m.csv", "text,file_name,score\nhello,a.png,5\n"))
    assert _pairs(table) == [("a.png", "hello")]
    assert len(table.warnings) == 1 and "score" in table.warnings[0]


def test_all_folder_problems_reported_together(tmp_path):
    images = tmp_path / "images"
    _image(images / "captioned.png")
    _image(images / "sub" / "nested.jpg")
    _image(images / "uncaptioned.png")
    _image(images / ".hidden" / "ignored.png")
    outside = _image(tmp_path / "outside.png")
    (images / "link.png").symlink_to(outside)
    csv_file = _csv(images / "metadata.csv", "filename,prompt\ncaptioned.png,ok\nsub/nested.jpg,ok too\n"
                    "missing.png,gone\n../escape.png,sneaky\n/etc/abs.png,absolute\nlink.png,linked\n")
    problems = check_dataset(images, csv_file)
    text = "\n".join(str(p) for p in problems)
    assert len(problems) == 5, text
    assert f"{csv_file}, line 4: missing.png does not exist" in text
    assert f"{csv_file}, line 5: ../escape.png points outside" in text
    assert f"{csv_file}, line 6: /etc/abs.png points outside" in text
    assert f"{csv_file}, line 7: link.png is a link" in text
    assert f"{images / 'uncaptioned.png'}: this image has no caption" in text and "add a row for it" in text
    with pytest.raises(DatasetError) as caught:
        load_training_set(images)
    assert len(caught.value.problems) == 5 and "uncaptioned.png" in str(caught.value)


def test_duplicates_empty_captions_and_case_hint(tmp_path):
    _image(tmp_path / "a.png")
    _image(tmp_path / "Photo.PNG")
    csv_file = _csv(tmp_path / "metadata.csv", 'a.png,first\n./a.png,second\nphoto.png,"  "\nnotes.txt,text\n')
    problems = check_dataset(tmp_path, csv_file)
    messages = {p.line: p.message for p in problems}
    assert "listed again (first on line 1)" in messages[2]
    assert "is empty" in next(p.message for p in problems if p.line == 3 and "empty" in p.message)
    assert any("did you mean Photo.PNG" in p.message for p in problems if p.line == 3)
    assert "not an image type" in messages[4]
    assert any("Photo.PNG" in p.path and p.line is None for p in problems)


def test_unreadable_files_raise_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        read_metadata(tmp_path / "nope.csv")
    latin = _csv(tmp_path / "latin.csv", "a.png,ok\nb.png,caf\xe9\n", encoding="latin-1")
    with pytest.raises(DatasetError) as caught:
        read_metadata(latin)
    assert caught.value.problems[0].line == 2 and "UTF-8" in str(caught.value)
    empty = read_metadata(_csv(tmp_path / "empty.csv", "filename,prompt\n\n"))
    assert len(empty.problems) == 1 and "no rows" in empty.problems[0].message


def test_unclosed_quote_is_reported(tmp_path):
    table = read_metadata(_csv(tmp_path / "m.csv", 'a.png,"forgot to close\nb.png,next caption\n'))
    assert any("closing double quote" in p.message and p.line == 1 for p in table.problems)
