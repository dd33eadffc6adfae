"""Undo and Redo of caption changes: many steps back and forward, nothing the file held is lost, the file keeps its
mode, and the versions live outside the dataset."""
from __future__ import annotations

import os

import pytest

from studio.caption import CaptionHistory, EditError, add_prefix, add_suffix, edit_metadata
from studio.data import read_metadata

ORIGINAL = "filename,prompt\na.png,a cat\nb.png,a dog\n"


def _prompts(csv_path):
    return [record.prompt for record in read_metadata(csv_path).records]


@pytest.fixture
def dataset(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "metadata.csv").write_text(ORIGINAL)
    return folder / "metadata.csv"


def _edit(history, csv_path, change):
    with history.recording():
        edit_metadata(csv_path, change)


def test_each_undo_goes_one_step_further_back_and_redo_walks_forward(dataset, tmp_path):
    history = CaptionHistory(dataset, tmp_path / "store")
    _edit(history, dataset, lambda rows: add_prefix(rows, "zq"))
    _edit(history, dataset, lambda rows: add_suffix(rows, "flat"))
    _edit(history, dataset, lambda rows: add_prefix(rows, "star"))
    assert history.steps() == (3, 0) and _prompts(dataset) == ["star, zq, a cat, flat", "star, zq, a dog, flat"]
    assert history.undo().changed_rows == 2 and _prompts(dataset)[0] == "zq, a cat, flat"
    history.undo()
    assert _prompts(dataset)[0] == "zq, a cat"  # the second Undo went further back, it did not re-apply
    history.undo()
    assert dataset.read_text() == ORIGINAL and history.steps() == (0, 3)
    with pytest.raises(EditError, match="Nothing to undo"):
        history.undo()
    history.redo()
    history.redo()
    assert _prompts(dataset)[0] == "zq, a cat, flat" and history.steps() == (2, 1)
    _edit(history, dataset, lambda rows: add_suffix(rows, "new"))  # a new change ends the redo path
    assert history.steps() == (3, 0)
    with pytest.raises(EditError, match="Nothing to redo"):
        history.redo()
    assert not list(dataset.parent.glob("*undo*")) and not list(dataset.parent.glob("*redo*"))


def test_a_change_made_outside_the_studio_is_kept_for_redo_and_the_mode_stays(dataset, tmp_path):
    history = CaptionHistory(dataset, tmp_path / "store")
    _edit(history, dataset, lambda rows: add_prefix(rows, "zq"))
    dataset.write_text("filename,prompt\na.png,typed in an editor\nb.png,a dog\n")
    os.chmod(dataset, 0o640)
    history.undo()
    assert dataset.read_text() == ORIGINAL and (dataset.stat().st_mode & 0o777) == 0o640
    history.redo()
    assert _prompts(dataset) == ["typed in an editor", "a dog"]


def test_a_write_that_changes_nothing_or_creates_the_file_leaves_no_step(tmp_path):
    csv_path = tmp_path / "metadata.csv"
    history = CaptionHistory(csv_path, tmp_path / "store", limit=2)
    with history.recording():
        csv_path.write_text(ORIGINAL)  # created: there was no earlier version to go back to
    with history.recording():
        pass
    assert history.steps() == (0, 0)
    for word in ("one", "two", "three"):
        _edit(history, csv_path, lambda rows, word=word: add_prefix(rows, word))
    assert history.steps() == (2, 0)  # the oldest step beyond the limit is gone
    history.undo()
    history.undo()
    assert _prompts(csv_path)[0] == "one, a cat"
