"""File writes that never leave a half-written user file behind, and keep the file's permissions."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

# ``tempfile.mkstemp(prefix=".<name>.", suffix=".tmp")`` names: the prefix, 8 characters of
# ``tempfile._RandomNameSequence`` (lower-case letters, digits, "_"), the suffix.
_TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")


def _read_umask() -> int:
    """The process's umask without changing it (Linux reports it in /proc/self/status since 4.7)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _IMPORT_UMASK


def _umask_at_import() -> int:
    # os.umask can only be read by setting it; done once here, before any writer thread of ours exists.
    current = os.umask(0o022)
    os.umask(current)
    return current


_IMPORT_UMASK = _umask_at_import()


def new_file_mode() -> int:
    """The permission bits ``open(path, "w")`` would give a new file: 0o666 without the umask's bits."""
    return 0o666 & ~_read_umask()


def _mode_for(target: Path) -> int:
    """A replaced file keeps its permission bits; a new one gets what the umask allows."""
    try:
        return target.stat().st_mode & 0o7777
    except FileNotFoundError:
        return new_file_mode()


def atomic_write_bytes(path: str | os.PathLike, data: bytes, backup: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    With ``backup=True`` an existing file is first copied to ``<name>.bak`` (one generation, same permissions), so
    a bad edit can be undone. Either the old or the new content is on disk at every moment; a full disk raises
    ``OSError`` and leaves the old file untouched. The file keeps its permission bits when it is replaced; a new
    file gets the ones the umask gives (``mkstemp`` alone would leave 0600).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    mode = _mode_for(target)
    if backup and target.exists():
        shutil.copy2(target, target.with_name(target.name + ".bak"))
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp_name, target)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return target


def atomic_write_text(path: str | os.PathLike, text: str, backup: bool = False, encoding: str = "utf-8") -> Path:
    """``atomic_write_bytes`` for text (newlines written as given)."""
    return atomic_write_bytes(path, text.encode(encoding), backup=backup)


def is_atomic_temp(name: str) -> bool:
    """Whether ``name`` is a temporary file of ``atomic_write_bytes`` (``.<name>.<8 random>.tmp``)."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_atomic_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files an interrupted ``atomic_write_bytes`` left directly in ``folder``.

    Only names of our own pattern are touched (a user's ``notes.tmp`` stays). Call it only while no writer of
    ours works in ``folder``: a write in progress has a file of the same pattern.
    """
    removed = []
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return removed
    for entry in entries:
        if is_atomic_temp(entry.name) and entry.is_file(follow_symlinks=False):
            Path(entry.path).unlink(missing_ok=True)
            removed.append(Path(entry.path))
    return removed
