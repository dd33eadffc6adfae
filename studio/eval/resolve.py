"""Find LoRA files: run folders, checkpoint folders, ``.safetensors`` files, and names from ``<lora:name:w>``.

A run folder (``studio.train.run_folder``) holds the final diffusers LoRA and one in each checkpoint; its config
snapshot names the base model.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from studio.lora import DIFFUSERS_WEIGHT_NAME
from studio.train.run_folder import RunFolder, checkpoint_lora_step

from .spec import EvalError


def is_run_dir(folder: Path) -> bool:
    """A training run folder: a config snapshot next to a final LoRA, a loss log, a run record or checkpoints."""
    return RunFolder(folder).is_run()


def find_run_dir(lora_path: str | os.PathLike) -> Path | None:
    """The run folder a LoRA file or folder belongs to (final file or checkpoint), or None for a loose file."""
    run = RunFolder.containing(lora_path)
    return run.path if run else None


def _from_folder(folder: Path) -> Path:
    """The LoRA file a folder stands for: its diffusers file, a run's newest checkpoint, or its one LoRA file."""
    if (folder / DIFFUSERS_WEIGHT_NAME).is_file():
        return folder / DIFFUSERS_WEIGHT_NAME
    checkpoints = run_checkpoints(folder)
    if checkpoints:
        return checkpoints[-1][1]
    files = sorted(folder.glob("*.safetensors"))
    if len(files) == 1:
        return files[0]
    if files:
        names = ", ".join(f.name for f in files[:6])
        raise EvalError(f"{folder} holds several LoRA files ({names}): pass the one to test.")
    raise EvalError(f"{folder} holds no LoRA: pass a run folder, a checkpoint folder or a LoRA .safetensors file.")


def _checked_file(path: Path) -> Path:
    if path.suffix.lower() != ".safetensors":
        raise EvalError(f"{path.name} is not a .safetensors LoRA (pickle files can run code): convert it first.")
    return path


def _by_name(name: str, folder: Path) -> Path | None:
    """A LoRA called ``name`` in ``folder``: a file, a folder, the newest run ``name-*``, or ``*/name.safetensors``."""
    if (folder / name).is_dir():
        return _from_folder(folder / name)
    for candidate in (folder / name, folder / f"{name}.safetensors"):
        if candidate.is_file() and candidate.suffix.lower() == ".safetensors":
            return candidate
    runs = sorted((p for p in folder.glob(f"{name}-*") if p.is_dir() and is_run_dir(p)), key=lambda p: p.name)
    for run in reversed(runs):
        try:
            return _from_folder(run)
        except EvalError:
            continue
    inside = sorted(folder.glob(f"*/{name}.safetensors"), key=lambda p: p.parent.name)
    return inside[-1] if inside else None


def resolve_lora(name_or_path: str | os.PathLike, search_dirs: Iterable[str | os.PathLike] = ()) -> Path:
    """The LoRA ``.safetensors`` file meant by a path or a name.

    A path may be a LoRA file, a checkpoint folder or a run folder (its final LoRA, else its newest checkpoint).
    A bare name (as in ``<lora:name:0.7>``) is looked up in each of ``search_dirs`` as ``name.safetensors``,
    a folder ``name/``, the newest run folder ``name-<timestamp>/`` or a run's ``name.safetensors``.
    """
    text = str(name_or_path).strip()
    if not text:
        raise EvalError("no LoRA given: pass a run folder, a checkpoint folder, a .safetensors file or a name.")
    path = Path(text).expanduser()
    if path.is_file():
        return _checked_file(path)
    if path.is_dir():
        return _from_folder(path)
    dirs = [Path(d).expanduser() for d in search_dirs if str(d).strip()]
    if os.sep not in text and "/" not in text:
        for folder in dirs:
            if folder.is_dir():
                found = _by_name(text, folder)
                if found is not None:
                    return _checked_file(found)
    where = f"found in {', '.join(str(d) for d in dirs)}" if dirs else "looked for (no LoRA folders were given)"
    raise EvalError(
        f"no LoRA {text!r}: it is not a file or folder, and no {text}.safetensors, {text}/ or run {text}-* was "
        f"{where}. Pass a path, or add the folder that holds it to the LoRA folders."
    )


def run_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """(step, LoRA file) of every complete checkpoint in a run, oldest first."""
    return RunFolder(run_dir).checkpoint_loras()


def checkpoint_label(lora_path: Path) -> str:
    """``step 200`` for a checkpoint, ``final`` for a run's final LoRA, else the file's stem."""
    path = Path(lora_path)
    step = checkpoint_lora_step(path)
    if step is not None:
        return f"step {step}"
    if path.name == DIFFUSERS_WEIGHT_NAME and is_run_dir(path.parent):
        return "final"
    return path.parent.name if path.name == DIFFUSERS_WEIGHT_NAME else path.stem


def grid_checkpoints(lora_path: Path, run_dir: Path | None, checkpoints: list[str],
                     search_dirs: Iterable[str | os.PathLike] = ()) -> list[tuple[str, Path]]:
    """The grid's row groups as (label, LoRA file): the LoRA itself, every checkpoint ("all"), or those listed."""
    if not checkpoints:
        return [(checkpoint_label(lora_path), lora_path)]
    if [str(c).strip().lower() for c in checkpoints] == ["all"]:
        if run_dir is None:
            raise EvalError(f"checkpoints 'all' needs a run folder, but {lora_path} is a loose file: "
                            "pass checkpoint folders, or the run folder as the LoRA.")
        groups = [(f"step {step}", path) for step, path in run_checkpoints(run_dir)]
        final = RunFolder(run_dir).diffusers_lora
        if final.is_file():
            groups.append(("final", final))
        if not groups:
            raise EvalError(f"{run_dir} has no checkpoints and no final LoRA yet: train it first.")
        return groups
    groups = []
    for item in checkpoints:
        path = resolve_lora(item, search_dirs)
        groups.append((checkpoint_label(path), path))
    labels = [label for label, _ in groups]
    return [(label if labels.count(label) == 1 else f"{label} ({path.parent.name})", path) for label, path in groups]


def run_base_model(run_dir: Path | None) -> tuple[str, str]:
    """(base_model, base_model_config) from a run's config snapshot; ("", "") without a run."""
    config_file = RunFolder(run_dir).config_file if run_dir is not None else None
    if config_file is None or not config_file.is_file():
        return "", ""
    from studio.config import ConfigError, load_config

    try:
        config = load_config(config_file)
    except ConfigError as error:
        raise EvalError(f"{config_file} cannot be read ({error}): "
                        "pass the base model explicitly.") from None
    return str(config.base_model or ""), str(config.base_model_config or "")


def default_search_dirs(run_dir: Path | None, extra: Iterable[str | os.PathLike] = ()) -> list[Path]:
    """Where ``<lora:name:w>`` names are looked up: the given folders, then the run's output folder."""
    dirs = [Path(d).expanduser() for d in extra if str(d).strip()]
    if run_dir is not None:
        dirs += [run_dir.parent, run_dir]
    return dirs
