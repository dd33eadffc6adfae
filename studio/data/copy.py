"""Copy a dataset (its pictures and metadata.csv) into a new folder, for a user who wants to change a dataset that
must stay as it is, such as a demo that ships with the studio. The originals are only read."""
from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from studio.data.folder import IMAGE_EXTENSIONS


def copy_dataset(source: str | os.PathLike, parent: str | os.PathLike) -> Path:
    """Copy the pictures (sub-folders included, hidden files and folders skipped) and the metadata.csv of
    ``source`` to a new folder ``parent/<name>`` (``<name>-2``, ``<name>-3`` … when taken); returns it.

    The copy is made in a hidden folder beside it and renamed when complete, so ``parent`` never holds half a
    dataset. Links are copied as the files they point to.
    """
    source, parent = Path(source), Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{source.name}.{secrets.token_hex(4)}.partial"
    staging.mkdir()  # the mode the umask gives, as for any folder of the user's
    try:
        for current, folders, files in os.walk(source):
            folders[:] = sorted(name for name in folders if not name.startswith("."))
            relative = Path(current).relative_to(source)
            for name in files:
                if name.startswith(".") or not (Path(name).suffix.lower() in IMAGE_EXTENSIONS or
                                                (name == "metadata.csv" and not relative.parts)):
                    continue
                if Path(current, name).is_file():
                    (staging / relative).mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(Path(current, name), staging / relative / name)
        target = _free_name(parent, source.name)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _free_name(parent: Path, name: str) -> Path:
    candidate, number = parent / name, 2
    while candidate.exists():
        candidate, number = parent / f"{name}-{number}", number + 1
    return candidate
