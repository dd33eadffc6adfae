"""Undo and Redo for a metadata.csv: every version a caption change replaced, kept outside the dataset.

A write of the captions (Save, a bulk edit, auto-captioning) is wrapped in :meth:`CaptionHistory.recording`: the
file's previous content goes onto the undo stack, and the redo stack is emptied. :meth:`CaptionHistory.undo` puts
the top of the undo stack back and moves the content it replaces onto the redo stack; :meth:`CaptionHistory.redo`
does the reverse. So a second Undo goes one step further back, Redo walks forward again, and nothing the file held
is lost: a change made outside the studio is kept on the redo stack by the Undo that replaces it.

Versions are files ``undo/000001.csv``, ``redo/000001.csv`` … in a folder of their own (the studio keeps one per
dataset in its workspace); each stack keeps the latest :data:`MAX_VERSIONS`. The caption file itself is written
atomically, with its mode kept and the version it replaces in ``metadata.csv.bak``.
"""
from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path
from typing import Iterator

from studio.caption.edits import EditError, EditResult, backup_path, read_csv_bytes
from studio.data import read_metadata
from studio.util.fs import atomic_write_bytes

MAX_VERSIONS = 100
_LOCKS: dict[str, threading.RLock] = {}
_LOCKS_GUARD = threading.Lock()


class CaptionHistory:
    """The undo and redo stacks of one caption file ``csv_path``, stored in the folder ``store``."""

    def __init__(self, csv_path: str | os.PathLike, store: str | os.PathLike, limit: int = MAX_VERSIONS) -> None:
        self.csv_path, self.store, self.limit = Path(csv_path), Path(store), limit
        with _LOCKS_GUARD:  # one lock per store, shared by every CaptionHistory of it (page clicks, the caption job)
            self.lock = _LOCKS.setdefault(str(self.store.resolve()), threading.RLock())

    def steps(self) -> tuple[int, int]:
        """How many Undo and how many Redo steps there are."""
        return len(self._stack("undo")), len(self._stack("redo"))

    @contextlib.contextmanager
    def recording(self) -> Iterator[None]:
        """Around a write of the caption file: when the write changed it, its previous content becomes an Undo
        step (a file that did not exist before leaves nothing to undo)."""
        with self.lock:
            previous = self._content()
            yield
            if previous is not None and self._content() != previous:
                self._push("undo", previous)
                for path in self._stack("redo"):
                    path.unlink()

    def undo(self) -> EditResult:
        """Put back the version before the last change; what it replaces can be brought back with :meth:`redo`."""
        return self._step("undo", "redo")

    def redo(self) -> EditResult:
        """Bring back the version the last Undo replaced."""
        return self._step("redo", "undo")

    def _step(self, source: str, target: str) -> EditResult:
        with self.lock:
            stack = self._stack(source)
            if not stack:
                what = ("no caption change was made here since the studio started keeping versions"
                        if source == "undo" else "Undo has not been used since the last change")
                raise EditError(f"Nothing to {source}: {what} ({self.csv_path}).")
            current = self._content()
            if current is None:
                raise EditError(f"{self.csv_path} does not exist any more, so there is nothing to {source} it into; "
                                "save the table to create it again.")
            before = _records(self.csv_path)
            self._push(target, current)
            atomic_write_bytes(self.csv_path, read_csv_bytes(stack[-1]), backup=True)
            stack[-1].unlink()
            after = read_metadata(self.csv_path).records
            old = {record.filename: record.prompt for record in before}
            names = {record.filename for record in after}
            changed = tuple(r.filename for r in after if old.get(r.filename) != r.prompt)
            changed += tuple(name for name in old if name not in names)
            return EditResult(self.csv_path, len(changed), changed, backup_path(self.csv_path), tuple(after))

    def _content(self) -> bytes | None:
        return read_csv_bytes(self.csv_path) if self.csv_path.is_file() else None

    def _stack(self, name: str) -> list[Path]:
        folder = self.store / name
        return sorted(folder.glob("[0-9]*.csv")) if folder.is_dir() else []

    def _push(self, name: str, content: bytes) -> None:
        stack = self._stack(name)
        number = int(stack[-1].stem) + 1 if stack else 1
        atomic_write_bytes(self.store / name / f"{number:06d}.csv", content)
        for oldest in stack[:max(0, len(stack) + 1 - self.limit)]:
            oldest.unlink()


def _records(path: Path):
    try:
        return read_metadata(path).records
    except ValueError:  # a file the user broke outside the studio: every row counts as changed
        return []
