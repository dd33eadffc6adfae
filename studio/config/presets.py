"""Presets: small YAML files of settings merged over a config, with advice in their ``description``.

Kinds, each a folder of ``presets/`` at the repository root: ``rank`` (adapter size), ``epochs`` (training
length), ``task`` (style / character / concept), ``demo`` (ready-to-run setups for the built-in toy-world
models) and ``model`` (a model family's resolution, batch and learning rates: ``sd1``, ``sdxl``). A preset file
holds a top-level ``description:`` text plus any configuration keys, flat or nested; its values are validated with
the same rules as a config file, and an unknown key is an error naming the file. An optional ``advice:`` states
the description's limits so the studio can check them against a combination of presets::

    advice:
      learning_rate: {max: 3.0e-4, why: above 3e-4 training tends to oscillate}
      steps: {min: 1700, why: its learning rate and cosine decay were tuned over 1700 steps}

Each entry names a setting (or ``steps``: the run's length in optimizer steps) with ``min`` and/or ``max``.
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

from studio.util.paths import repo_root

from .errors import ConfigError
from .io import build_config, config_from_dict
from .reader import entries_from_text, merge_entries, read_text
from .schema import TrainConfig, field_specs

KINDS = ("rank", "epochs", "task", "demo", "model")
PRESETS_ENV = "LORA_STUDIO_PRESETS"
STEPS = "steps"  # advice on the run's length in optimizer steps (max_steps, or epochs times steps per epoch)


@dataclass(frozen=True)
class Advice:
    """A limit a preset's description gives: ``setting`` (or ``steps``) should stay within ``low``..``high``."""

    setting: str
    low: float | None
    high: float | None
    why: str

    def allows(self, value: float) -> bool:
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def limit_text(self) -> str:
        """``at most 0.0003``, ``at least 1700`` or ``between 1e-05 and 0.0003``."""
        if self.low is not None and self.high is not None:
            return f"between {self.low:g} and {self.high:g}"
        return f"at least {self.low:g}" if self.low is not None else f"at most {self.high:g}"


@dataclass(frozen=True)
class Preset:
    """One preset file: ``values`` are the validated settings it changes (description and advice excluded)."""

    name: str
    kind: str
    description: str
    values: dict[str, Any] = field(hash=False)
    path: str = ""
    advice: tuple[Advice, ...] = ()


def _bound(value: Any) -> float | None:
    """A limit as a number (YAML reads ``3e-4`` as text), ``None`` when absent; ``ValueError`` when not a number."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(value)
    return float(value)


def _read_advice(raw: Any, source: str, problems: list[str]) -> tuple[Advice, ...]:
    """The ``advice:`` mapping of a preset file; each mistake is added to ``problems`` naming the file and key."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        problems.append(f"{source}: advice must hold 'setting: {{min: …, max: …, why: …}}' lines")
        return ()
    found = []
    for setting, limits in raw.items():
        where = f"{source}: advice for {setting!r}"
        if setting != STEPS and (setting not in field_specs() or field_specs()[setting].kind not in ("int", "float")):
            problems.append(f"{where}: name a numeric setting such as learning_rate, or {STEPS!r}")
            continue
        if not isinstance(limits, dict) or set(limits) - {"min", "max", "why"} or not ({"min", "max"} & set(limits)):
            problems.append(f"{where}: write {{min: …, max: …, why: …}} with min and/or max")
            continue
        try:
            bounds = [_bound(limits.get(key)) for key in ("min", "max")]
        except ValueError:
            problems.append(f"{where}: min and max must be numbers such as 3e-4 or 1700")
            continue
        found.append(Advice(setting, bounds[0], bounds[1], " ".join(str(limits.get("why") or "").split())))
    return tuple(found)


def presets_root() -> Path:
    """``$LORA_STUDIO_PRESETS`` when set, else ``presets/`` at the repository root."""
    return Path(os.environ.get(PRESETS_ENV) or repo_root() / "presets")


def load_preset(path: str | os.PathLike, kind: str = "") -> Preset:
    """Read and validate one preset file; ``ConfigError`` names the file (and line) of every problem."""
    text, source = read_text(path)
    entries, extras, problems = entries_from_text(text, source, extra=("description", "advice"))
    description = extras.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append(f"{source}: a preset needs a top-level 'description:' text saying when to use it")
    advice = _read_advice(extras.get("advice"), source, problems)
    config = build_config(entries, problems, TrainConfig())
    values, _, _ = merge_entries(entries)
    return Preset(
        name=Path(path).stem,
        kind=kind or Path(path).parent.name,
        description=" ".join(str(description).split()),
        values={key: getattr(config, key) for key in values},
        path=str(path),
        advice=advice,
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
    chosen = chosen_presets(rank=rank, epochs=epochs, task=task, demo=demo, root=root, model=model)
    return apply_chosen(config_or_defaults if config_or_defaults is not None else TrainConfig(), chosen)


def apply_chosen(config: TrainConfig, chosen: list[Preset]) -> TrainConfig:
    """``config`` with each of ``chosen`` merged over it in turn (a later preset wins)."""
    for preset in chosen:
        config = config_from_dict(preset_values(preset), base=config)
    return config


def chosen_presets(rank: str | int | None = None, epochs: str | int | None = None, task: str | None = None,
                   demo: str | None = None, root: str | os.PathLike | None = None,
                   model: str | None = None) -> list[Preset]:
    """The named presets in the order they apply: model, demo, task, rank, epochs (empty names are skipped)."""
    order = (("model", model), ("demo", demo), ("task", task), ("rank", rank), ("epochs", epochs))
    return [get_preset(kind, name, root) for kind, name in order if name is not None and name != ""]


def preset_values(preset: Preset) -> dict[str, Any]:
    """The settings ``preset`` applies: its values, plus ``task`` naming a task or demo preset."""
    values = dict(preset.values)
    if preset.kind in ("demo", "task"):
        values.setdefault("task", preset.name)
    return values
