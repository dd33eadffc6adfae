"""``check_paths``: the settings that name files or folders which are not there.

These are notes, not schema errors: a config written on one machine is still a valid config on another, and a
``check-config`` command prints the normalised YAML followed by these notes.
"""
from __future__ import annotations

import os
from pathlib import Path

from .schema import TrainConfig
from .validate import looks_like_local_path


def _missing(key: str, value: str, root: Path, want_dir: bool | None = None) -> str | None:
    path = Path(value).expanduser()
    full = path if path.is_absolute() else root / path
    if not full.exists():
        return f"missing path: {key} {value!r} does not exist (looked for {full.resolve()})"
    if want_dir is True and not full.is_dir():
        return f"{key} {value!r} is a file; it should be a folder"
    if want_dir is False and full.is_dir():
        return f"{key} {value!r} is a folder; it should be a file"
    return None


def check_paths(config: TrainConfig, relative_to: str | os.PathLike | None = None) -> list[str]:
    """Readable notes for every path in ``config`` that does not exist, relative paths taken from
    ``relative_to`` (the current working directory when ``None``). An empty list means all paths were found."""
    root = Path(relative_to) if relative_to is not None else Path.cwd()
    notes: list[str | None] = []
    if not config.train_data_dir:
        notes.append("train_data_dir is not set: point it at the folder with your training images")
    else:
        notes.append(_missing("train_data_dir", config.train_data_dir, root, want_dir=True))
    data_dir_ok = bool(config.train_data_dir) and (root / Path(config.train_data_dir).expanduser()).is_dir()
    if config.metadata_path or data_dir_ok:
        key = "metadata_path" if config.metadata_path else "metadata file"
        notes.append(_missing(key, config.resolved_metadata_path(), root, want_dir=False))
    if looks_like_local_path(config.base_model, root):
        notes.append(_missing("base_model", config.base_model, root))
    if looks_like_local_path(config.base_model_config, root):
        notes.append(_missing("base_model_config", config.base_model_config, root, want_dir=True))
    if config.init_lora:
        notes.append(_missing("init_lora", config.init_lora, root))
    if config.resume and config.resume != "latest":
        notes.append(_missing("resume", config.resume, root))
    return [note for note in notes if note]
