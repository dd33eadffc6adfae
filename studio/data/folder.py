"""Paths inside an image folder: names that cannot be inside it, links that lead out or loop, the images it holds."""
from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from studio.util.reading import LINK_LOOP

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
_DRIVE = re.compile(r"^[A-Za-z]:")


def escapes(filename: str) -> bool:
    """True for names that cannot be inside the folder whatever it contains: absolute paths and ``..``."""
    return filename.startswith("/") or bool(_DRIVE.match(filename)) or ".." in filename.split("/")


def is_link_loop(path: Path) -> bool:
    """True when following the links of ``path`` never ends (``a -> b -> a``, or a link to itself)."""
    try:
        os.stat(path)
    except OSError as error:
        return error.errno == errno.ELOOP
    return False


def loop_problem(who: str) -> str:
    """What to say about an image entry ``who`` that is a link loop."""
    return f"{who} {LINK_LOOP}; remove the link, or replace it with the picture."


def follow(path: Path) -> Path | None:
    """``path`` with every link followed, or None when a link loops."""
    if is_link_loop(path):
        return None
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError for a loop met part-way through the path
        return None


def resolve_inside(images_dir: Path, filename: str) -> Path | None:
    """``images_dir / filename`` when it (after following links) stays inside ``images_dir``, else None.

    A link that loops leads nowhere, so not outside either: the path itself is returned, and reading it gives a
    clear "symlink loop" error (see :func:`is_link_loop` to say so earlier).
    """
    if escapes(filename):
        return None
    candidate = images_dir / filename
    target, root = follow(candidate), follow(images_dir)
    if target is None or root is None:
        return candidate
    return candidate if target.is_relative_to(root) else None


def image_files(images_dir: Path) -> set[str]:
    """Image files under ``images_dir`` as ``/``-separated relative paths, skipping hidden files and folders."""
    found: set[str] = set()
    for folder, subfolders, files in os.walk(images_dir):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        relative = Path(folder).relative_to(images_dir)
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.add((relative / name).as_posix())
    return found
