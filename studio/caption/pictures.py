"""Which pictures of a dataset are left out of captioning, and why: files that are no readable picture, and pictures
the user dropped in the Dataset tab (their keep box unticked; the clean copy leaves them out).

A file's header is checked once and remembered until the file changes (size or modification time); pictures whose
data is damaged further in are known from the dataset's latest scan, unless they changed after it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from studio.data.images import picture_problem
from studio.data.scan import load_decisions

if TYPE_CHECKING:
    from studio.data.scan import ScanReport


class PictureCheck:
    """Left-out pictures of any folder; holds the header checks made so far."""

    def __init__(self) -> None:
        self._checked: dict[tuple[str, int, int], str | None] = {}

    def left_out(self, folder: Path, names: list[str], scan: ScanReport | None = None, scanned_at: float = 0.0
                 ) -> dict[str, tuple[str, str]]:
        """``relpath -> (why, severity)`` for the pictures among ``names`` that are not captioned: ``error`` for a
        file that is no readable picture (its header, or ``scan``, the folder's latest ScanReport made at
        ``scanned_at``, could not decode it), ``warning`` for one the user dropped in the Dataset tab."""
        wanted = set(names)
        found = {name: (f"{name} {why}", "error") for name in names if (why := self.problem(folder / name))}
        for image in scan.images if scan is not None else []:
            if (image.relpath in wanted and image.relpath not in found and not image.readable and image.flags
                    and _unchanged_since(folder / image.relpath, scanned_at)):
                found[image.relpath] = (f"{image.relpath} {image.flags[0].message}", "error")
        try:
            dropped = [name for name, keep in load_decisions(folder).items() if keep is False]
        except ValueError:  # an unreadable decisions file: the Dataset tab reports it
            dropped = []
        for name in dropped:
            if name in wanted and name not in found:
                found[name] = (f"{name} is dropped in the Dataset tab (keep unticked), so the clean copy leaves it "
                               "out; it is not captioned.", "warning")
        return found

    def problem(self, path: Path) -> str | None:
        """What the header check says about ``path`` (see :func:`studio.data.images.picture_problem`)."""
        try:
            stat = path.stat()
        except OSError:
            return picture_problem(path)
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        if key not in self._checked:
            self._checked[key] = picture_problem(path)
        return self._checked[key]


def left_out_note(left_out: dict[str, tuple[str, str]]) -> str:
    """One sentence naming the left-out pictures and why ("" when there are none)."""
    if not left_out:
        return ""
    shown = "; ".join(why for why, _severity in list(left_out.values())[:5])
    more = f" (and {len(left_out) - 5} more)" if len(left_out) > 5 else ""
    return f" Left out: {shown}{more}"


def _unchanged_since(path: Path, moment: float) -> bool:
    try:
        return os.stat(path).st_mtime <= moment
    except OSError:
        return False
