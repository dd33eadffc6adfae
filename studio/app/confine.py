"""The access rules applied to what a page hands the engine: a training config's path settings, a model named by
path or hub id, the LoRAs a prompt names."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from studio.config.validate import looks_like_local_path

from .access import Access, AccessError

WRITTEN_SETTINGS = frozenset({"output_dir"})  # path settings the run writes into; the others are only read


def confine_config(config, access: Access):
    """``config`` with every local path setting checked against ``access`` (one AccessError lists every refusal).

    For a remote user the paths come back absolute and resolved, so the run reads and writes exactly where the
    check looked; the operator's config comes back unchanged. ``allow_pickle`` (pickle files can run code) is
    the operator's alone.
    """
    problems, changes = [], {}
    for spec in dataclasses.fields(config):
        value = getattr(config, spec.name)
        if not spec.metadata.get("path") or not value or (spec.name == "resume" and value == "latest"):
            continue
        try:
            if spec.name in ("base_model", "base_model_config"):  # either may be a hub id
                path = confine_model_source(value, access, what=spec.name)
            else:
                path = str(access.resolve(value, write=spec.name in WRITTEN_SETTINGS, what=spec.name))
        except AccessError as error:
            problems.append(str(error))
            continue
        if access.remote:
            changes[spec.name] = path
    if access.remote and config.allow_pickle:
        problems.append("allow_pickle: loading a pickle (.ckpt) file can run code, so only whoever started the "
                        "studio may allow it; use a .safetensors base model")
    if problems:
        raise AccessError("\n".join(problems))
    return dataclasses.replace(config, **changes)


def confine_model_source(text: str, access: Access, what: str = "the model") -> str:
    """A model named by a local path (checked, made absolute) or a hub id such as ``org/model`` (as given).

    A name that is a folder relative to the process's current folder is a local path too: the loaders would find
    it there, so it is checked like any path.
    """
    text = (text or "").strip()
    if not text:
        return text
    if looks_like_local_path(text, access.start()):
        return str(access.resolve(text, what=what))
    beside_process = Path.cwd() / Path(text).expanduser()
    if beside_process.exists():
        return str(access.resolve(beside_process, what=what))
    return text


def confine_file_inside(path: str | Path, folder: Path, what: str) -> Path:
    """``path`` (resolved) when it lies inside ``folder``; AccessError otherwise (e.g. a checkpoint of a run)."""
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise AccessError(f"{what} {str(path)!r} is not part of {folder.name}; pick one from the list")
    return resolved
