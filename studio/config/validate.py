"""Type coercion and range checks for ``TrainConfig`` values, collecting every problem instead of stopping at one.

Coercion is deliberately forgiving where YAML or a form gets in the way and strict elsewhere: PyYAML reads
``2e-4`` as the *string* "2e-4" (YAML 1.1 wants a dot), so numeric strings become numbers; ``mixed_precision: no``
arrives as ``False`` and becomes "no"; a comma-separated string becomes a list. Anything else of the wrong type is
a problem, as is every value outside its limits.
"""
from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .modules import normalise_text_modules, normalise_unet_modules

Issue = tuple[str, str]
_STEM = re.compile(r"^\w[\w.\-]*$")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)), *(f"lpt{i}" for i in range(10))}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class FieldSpec:
    """What the validator needs to know about one setting."""

    name: str
    kind: str  # int | float | bool | str | list
    optional: bool
    meta: Mapping[str, Any]

    @classmethod
    def from_type(cls, name: str, tp: Any, meta: Mapping[str, Any]) -> "FieldSpec":
        args = typing.get_args(tp)
        optional = isinstance(tp, types.UnionType) and type(None) in args
        if optional:
            tp = next(a for a in args if a is not type(None))
        kind = "list" if typing.get_origin(tp) is list else tp.__name__
        return cls(name, kind, optional, meta)


def show(value: Any) -> str:
    """A value as a user would type it in YAML."""
    if isinstance(value, str):
        return repr(value)
    if value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _as_number(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return value, "wrong type"
    if isinstance(value, str):
        try:
            value = float(value.strip()) if spec.kind == "float" or not value.strip().lstrip("+-").isdigit() \
                else int(value.strip())
        except ValueError:
            return value, "not a number"
    if isinstance(value, float) and not math.isfinite(value):
        return value, "not finite"
    if spec.kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                return value, "not whole"
            value = int(value)
        return value, None
    return float(value), None


def coerce(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    """Return ``(value in the field's type, None)`` or ``(value, problem sentence)``."""
    name = spec.name
    if value is None or (spec.optional and isinstance(value, str) and not value.strip()):
        if spec.optional:
            return None, None
        if spec.kind == "str":
            return "", None
        if spec.kind == "list":
            return [], None
        return value, f"{name} needs a value; delete the line to use the default"
    if spec.kind in ("int", "float"):
        number, why = _as_number(spec, value)
        if why is None:
            return number, None
        if spec.kind == "int":
            return value, f"{name} must be a whole number (got {show(value)})"
        return value, f"{name} must be a number such as 0.0001 or 1e-4 (got {show(value)})"
    if spec.kind == "bool":
        if isinstance(value, bool):
            return value, None
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE, None
        return value, f"{name} must be true or false (got {show(value)})"
    if spec.kind == "str":
        if isinstance(value, str):
            return value.strip(), None
        if isinstance(value, bool) and "choices" in spec.meta:
            # YAML 1.1 reads a bare `no` as false: `mixed_precision: no` means "no".
            word = "yes" if value else "no"
            if word in spec.meta["choices"]:
                return word, None
        return value, f"{name} must be text (got {show(value)}); put the value in quotes"
    return _coerce_list(spec, value)


def _coerce_list(spec: FieldSpec, value: Any) -> tuple[Any, str | None]:
    if isinstance(value, str):
        separator = spec.meta.get("split", ",")
        items = [part.strip() for part in value.split(separator)] if value.strip() else []
        return [item for item in items if item], None
    if not isinstance(value, (list, tuple)):
        return value, f"{spec.name} must be a list such as [a, b] (got {show(value)})"
    bad = [i + 1 for i, item in enumerate(value) if not isinstance(item, str)]
    if bad:
        return value, f"{spec.name} must be a list of text items; item {bad[0]} is {show(value[bad[0] - 1])}"
    return [item.strip() for item in value], None


def check_limits(spec: FieldSpec, value: Any) -> str | None:
    """The limit ``value`` breaks (``min``, ``max``, ``gt``, ``lt``, ``choices``, ``multiple_of``), as a sentence."""
    meta, name = spec.meta, spec.name
    if value is None:
        return None
    if "choices" in meta and value not in meta["choices"]:
        return f"{name} must be one of {', '.join(meta['choices'])} (got {show(value)})"
    if spec.kind not in ("int", "float"):
        return None
    if "min" in meta and value < meta["min"]:
        return f"{name} must be at least {meta['min']} (got {show(value)})"
    if "max" in meta and value > meta["max"]:
        return f"{name} must be at most {meta['max']} (got {show(value)})"
    if "gt" in meta and value <= meta["gt"]:
        return f"{name} must be greater than {meta['gt']} (got {show(value)})"
    if "lt" in meta and value >= meta["lt"]:
        return f"{name} must be less than {meta['lt']} (got {show(value)})"
    if "multiple_of" in meta and value % meta["multiple_of"]:
        step = meta["multiple_of"]
        lower = max(step, value - value % step)
        return f"{name} must be a multiple of {step} (got {value}; try {lower} or {lower + step})"
    return None


def sanitise_stem(text: str) -> str:
    """``text`` reduced to a safe file stem (letters, digits, ``_ . -``), or "" when nothing usable is left."""
    stem = re.sub(r"[^\w.\-]+", "_", text).strip("._-")
    return stem if stem and stem.lower() not in _RESERVED else ""


def _check_output_name(name: str) -> str | None:
    if not name:
        return None
    if len(name) > 100 or not _STEM.match(name) or name.endswith(".") or name.lower() in _RESERVED:
        suggestion = sanitise_stem(name)[:100] or "my_lora"
        return (f"output_name must be a plain file name without folders or spaces, using letters, digits, "
                f"'_', '-' and '.' (got {show(name)}; try {show(suggestion)})")
    return None


def _cross_checks(values: dict[str, Any]) -> list[Issue]:
    issues = []
    problem = _check_output_name(values.get("output_name", ""))
    if problem:
        issues.append(("output_name", problem))
    if isinstance(values.get("output_dir"), str) and not values["output_dir"]:
        issues.append(("output_dir", "output_dir cannot be empty; use e.g. ./output/my_lora"))
    prompts = values.get("validation_prompts")
    if isinstance(prompts, list):
        empty = [i + 1 for i, p in enumerate(prompts) if isinstance(p, str) and not p]
        if empty:
            issues.append(("validation_prompts", f"validation_prompts item {empty[0]} is empty; remove it"))
    return issues


def normalise(
    values: dict[str, Any], specs: Mapping[str, FieldSpec]
) -> tuple[dict[str, Any], list[Issue], list[Issue]]:
    """Coerce, normalise and check every setting in ``values``.

    Returns ``(normalised values, problems, notes)``; problems and notes are ``(key, sentence)`` pairs. Notes
    describe harmless rewrites such as ``q_proj`` -> ``to_q`` in ``target_modules``.
    """
    out, issues, notes = dict(values), [], []
    for name, spec in specs.items():
        value, problem = coerce(spec, values[name])
        problem = problem or check_limits(spec, value)
        if problem:
            issues.append((name, problem))
        else:
            out[name] = value
    for name, normaliser in (("target_modules", normalise_unet_modules),
                             ("text_encoder_target_modules", normalise_text_modules)):
        if name in specs and not any(key == name for key, _ in issues):
            out[name], found, changed = normaliser(name, out[name])
            issues += [(name, p) for p in found]
            notes += [(name, n) for n in changed]
    issues += _cross_checks(out)
    return out, issues, notes


def looks_like_local_path(value: str, relative_to: str | Path | None = None) -> bool:
    """Whether ``base_model`` names a local file/folder rather than a model id such as ``org/model``."""
    if not value:
        return False
    lowered = value.lower()
    if lowered.endswith((".safetensors", ".ckpt", ".bin", ".pt", ".pth")):
        return True
    if value.startswith(("./", "../", "/", "~", ".\\", "..\\", "\\")) or re.match(r"^[A-Za-z]:[\\/]", value):
        return True
    root = Path(relative_to) if relative_to is not None else Path.cwd()
    return (root / value).exists()
