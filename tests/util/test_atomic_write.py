"""Atomic writes keep a replaced file's permissions, give new files the umask's, and name their temporary files
so that only those are cleared later (issue 15: a user's 0644 metadata.csv came back 0600)."""
from __future__ import annotations

import os
import stat

import pytest

from studio.util.fs import atomic_write_text, is_atomic_temp, new_file_mode, remove_atomic_temps


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def umask():
    """Set the process umask for one test and put the old one back."""
    previous = os.umask(0o022)
    yield lambda value: os.umask(value)
    os.umask(previous)


@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path, umask, mask, expected):
    umask(mask)
    path = atomic_write_text(tmp_path / "metadata.csv", "filename,prompt\n")
    assert _mode(path) == expected
    assert new_file_mode() == expected
    with open(tmp_path / "plain.txt", "w") as handle:  # what an ordinary write gives, for comparison
        handle.write("x")
    assert _mode(tmp_path / "plain.txt") == expected


def test_a_replaced_0640_file_and_its_backup_keep_0640(tmp_path, umask):
    umask(0o022)
    path = tmp_path / "metadata.csv"
    path.write_text("filename,prompt\na.png,old\n")
    os.chmod(path, 0o640)
    atomic_write_text(path, "filename,prompt\na.png,new\n", backup=True)
    assert path.read_text().endswith("new\n") and _mode(path) == 0o640
    backup = tmp_path / "metadata.csv.bak"
    assert backup.read_text().endswith("old\n") and _mode(backup) == 0o640
    os.chmod(path, 0o604)  # an unusual mode survives too
    atomic_write_text(path, "x")
    assert _mode(path) == 0o604


def test_the_umask_is_read_without_setting_it(tmp_path, umask, monkeypatch):
    """Setting the umask to read it would give files other threads create meanwhile the wrong mode."""
    umask(0o027)
    monkeypatch.setattr(os, "umask", lambda *args: pytest.fail("os.umask called while writing"))
    assert _mode(atomic_write_text(tmp_path / "config.yaml", "x")) == 0o640


def test_only_our_own_temporary_files_are_cleared(tmp_path):
    ours = [".pytorch_lora_weights.safetensors.k3x_9q2a.tmp", ".run.json.abcdefgh.tmp", ".metadata.csv.00000000.tmp"]
    users = ["notes.tmp", ".notes.tmp", "run.json.abcdefgh.tmp", ".run.json.abc.tmp", ".x.ABCDEFGH.tmp", "a.tmp.bak"]
    for name in ours + users:
        (tmp_path / name).write_text("x")
    (tmp_path / ".sub.abcdefgh.tmp").mkdir()  # a folder of that name is not ours
    assert all(is_atomic_temp(name) for name in ours) and not any(is_atomic_temp(name) for name in users)
    removed = remove_atomic_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted(ours)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(users + [".sub.abcdefgh.tmp"])
