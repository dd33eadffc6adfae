"""File writes that never leave a half-written user file behind."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, backup: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    With ``backup=True`` an existing file is first copied to ``<name>.bak`` (one generation), so a bad edit can be
    undone. Either the old or the new content is on disk at every moment; a full disk raises ``OSError`` and
    leaves the old file untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    if backup and target.exists():
        shutil.copy2(target, target.with_name(target.name + ".bak"))
    fd, temp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
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
