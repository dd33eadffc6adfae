"""Presets: small YAML files of settings merged over a config, with advice in their ``description``.

Kinds, each a folder of ``presets/`` at the repository root: ``rank`` (adapter size), ``epochs`` (training
length), ``task`` (style / character / concept), ``demo`` (ready-to-run setups for the built-in toy-world
models) and ``model`` (a model family's resolution, batch and learning rates: ``sd1``, ``sdxl``). A preset file holds a top-level ``description:`` text plus any configuration keys, flat or nested; its
values are validated with the same rules as a config file, and an unknown key is an error naming the file.
``apply_presets`` applies model, then demo, task, rank and epochs, so an explicit rank or epochs choice wins
over the one a task or model preset suggests.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import build_config, config_from_dict
from .reader import entries_from_text, merge_entries, read_text
from .schema import TrainConfig

KINDS = ("rank", "epochs", "task", "demo", "model")
PRESETS_ENV = "LORA_STUDIO_PRESETS"


@dataclass(frozen=True)
class Preset:
    """One preset file: ``values`` are the validated settings it changes (description excluded)."""

    name: str
    kind: str
    description: str
    values: dict[str, Any] = field(hash=False)
    path: str = ""


def presets_root() -> Path:
    """``$LORA_STUDIO_PRESETS`` when set, else ``presets/`` at the repository root."""
    return Path(os.environ.get(PRESETS_ENV) or Path(__file__).resolve().parents[2] / "presets")


def load_preset(path: str | os.PathLike, kind: str = "") -> Preset:
    """Read and validate one preset file; ``ConfigError`` names the file (and line) of every problem."""
    text, source = read_text(path)
    entries, extras, problems = entries_from_text(text, source, extra=("description",))
    description = extras.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append(f"{source}: a preset needs a top-level 'description:' text saying when to use it")
    config = build_config(entries, problems, TrainConfig())
    values, _, _ = merge_entries(entries)
    return Preset(
        name=Path(path).stem,
        kind=kind or Path(path).parent.name,
        description=" ".join(str(description).split()),
        values={key: getattr(config, key) for key in values},
        path=str(path),
    )


def _order(preset: Preset) -> tuple:
    number = preset.values.get({"rank": "lora_rank", "epochs": "epochs"}.get(preset.kind, ""), 0)
    return (number or 0, preset.name)


def list_presets(kind: str | None = None, root: str | os.PathLike | None = None) -> list[Preset]:
    """The presets of ``kind`` (all kinds when ``None``): rank and epochs presets by size, others by name."""
    if kind is not None and kind not in KINDS:
        raise ConfigError([f"unknown preset kind {kind!r}; choose one of {', '.join(KINDS)}"])
    base = Path(root) if root is not None else presets_root()
    presets = []
    for each in [kind] if kind else KINDS:
        folder = base / each
        files = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml")) if folder.is_dir() else []
        presets += sorted((load_preset(path, each) for path in files), key=_order)
    return presets


def _canonical(kind: str, name: str | int) -> str:
    text = str(name).strip().lower()
    text = re.sub(r"\.ya?ml$", "", text)
    if kind == "rank" and re.fullmatch(r"(rank[-_ ]?)?\d+", text):
        return "rank-" + re.sub(r"\D", "", text)
    return text


def get_preset(kind: str, name: str | int, root: str | os.PathLike | None = None) -> Preset:
    """The preset ``name`` of ``kind``; for ranks ``8``, ``"8"`` and ``"rank-8"`` all work."""
    presets = {preset.name.lower(): preset for preset in list_presets(kind, root)}
    wanted = _canonical(kind, name)
    if wanted in presets:
        return presets[wanted]
    close = difflib.get_close_matches(wanted, list(presets), n=1, cutoff=0.5)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    available = ", ".join(presets) or f"none (no files in {Path(root or presets_root()) / kind})"
    raise ConfigError([f"unknown {kind} preset {str(name)!r}{hint} (available: {available})"])


def apply_presets(
    config_or_defaults: TrainConfig | None = None,
    rank: str | int | None = None,
    epochs: str | None = None,
    task: str | None = None,
    demo: str | None = None,
    root: str | os.PathLike | None = None,
    model: str | None = None,
) -> TrainConfig:
    """A new config: ``config_or_defaults`` (defaults when ``None``) with the chosen presets merged over it.

    Order: model, demo, task, rank, epochs (later wins). ``task`` (the setting) records the task or demo preset
    used.
    """
    config = config_or_defaults if config_or_defaults is not None else TrainConfig()
    for kind, name in (("model", model), ("demo", demo), ("task", task), ("rank", rank), ("epochs", epochs)):
        if name is None or name == "":
            continue
        preset = get_preset(kind, name, root)
        values = dict(preset.values)
        if kind in ("demo", "task"):
            values.setdefault("task", preset.name)
        config = config_from_dict(values, base=config)
    return config
