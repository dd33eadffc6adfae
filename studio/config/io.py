"""Loading, saving and converting ``TrainConfig``: YAML file or mapping in, YAML text or dict out.

Relative paths inside a config are kept exactly as written and are resolved later, by whoever uses them, against
the current working directory (``TrainConfig.resolve_paths`` makes them absolute explicitly). A saved file is
always the flat form, grouped by section in field order, so ``load_config(save_config(c, p)) == c``.
"""
from __future__ import annotations

import copy
import dataclasses
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from studio.util.fs import atomic_write_text

from .errors import ConfigError
from .reader import Entry, entries_from_mapping, entries_from_text, entry_from_override, merge_entries, read_text
from .schema import SECTIONS, TrainConfig, config_fields, field_specs, fields_by_section
from .validate import normalise

# A preset file's ``description`` (for people) and ``advice`` (limits the studio checks, see presets.py): a config
# file may hold them too, and loading it as a config ignores them, so preset files load as configs.
PRESET_TEXT_KEYS = ("description", "advice")
HEADER = (
    "# LoRA Studio training configuration.\n"
    "# Relative paths are resolved against the folder lora-studio is started from.\n"
)


def config_to_dict(config: TrainConfig) -> dict[str, Any]:
    """Every setting by name, in field order (lists are copies, safe to edit)."""
    return {f.name: copy.deepcopy(getattr(config, f.name)) for f in config_fields()}


def config_from_dict(values: Mapping[str, Any], base: TrainConfig | None = None) -> TrainConfig:
    """A config from a (possibly partial, possibly nested) mapping such as a UI form; missing keys come from
    ``base`` (defaults when ``None``). Raises ``ConfigError`` listing every problem."""
    return load_config(values, base=base)


def build_config(entries: list[Entry], problems: list[str], base: TrainConfig | None = None) -> TrainConfig:
    """Merge ``entries`` over ``base`` and validate; each problem and note is prefixed with where it came from."""
    values, where, merge_problems = merge_entries(entries)
    problems = list(problems) + merge_problems
    merged = config_to_dict(base if base is not None else TrainConfig())
    merged.update(values)
    normalised, issues, notes = normalise(merged, field_specs())

    def located(key: str, sentence: str) -> str:
        return f"{where[key]}: {sentence}" if where.get(key) else sentence

    problems += [located(key, sentence) for key, sentence in issues]
    if problems:
        raise ConfigError(problems)
    config = TrainConfig(**normalised)
    config.notes = [located(key, sentence) for key, sentence in notes]
    return config


def load_config(
    path_or_mapping: str | os.PathLike | Mapping[str, Any],
    overrides: Iterable[str] = (),
    base: TrainConfig | None = None,
) -> TrainConfig:
    """Read a config file (flat or nested YAML) or a mapping, apply ``--set key=value`` overrides, validate.

    Settings missing from the source keep their value in ``base`` (the defaults when ``None``); overrides win
    over the source. A top-level ``description:`` text and ``advice:`` are accepted and ignored, so preset files load too.
    Raises ``ConfigError`` listing every problem, each with its file and line where known.
    """
    if isinstance(path_or_mapping, Mapping):
        entries, extras, problems = entries_from_mapping(path_or_mapping, extra=PRESET_TEXT_KEYS)
    elif isinstance(path_or_mapping, (str, os.PathLike)):
        text, source = read_text(path_or_mapping)
        if not _is_yaml_file(source):  # its settings alone first: their problems are told without its text
            try:
                _load_entries(entries_from_text(text, source, extra=PRESET_TEXT_KEYS), [], base)
            except ConfigError as error:
                raise _unquoted(error, source) from None
        entries, extras, problems = entries_from_text(text, source, extra=PRESET_TEXT_KEYS)
    else:
        raise TypeError(f"load_config needs a path or a mapping, not {type(path_or_mapping).__name__}")
    return _load_entries((entries, extras, problems), overrides, base)


def _load_entries(found: tuple[list[Entry], dict, list[str]], overrides: Iterable[str],
                  base: TrainConfig | None) -> TrainConfig:
    entries, extras, problems = found
    if extras.get("description") is not None and not isinstance(extras["description"], str):
        problems.append("description must be text")
    overriding: list[Entry] = []
    for text in [overrides] if isinstance(overrides, str) else overrides:
        try:
            overriding.append(entry_from_override(text))
        except ConfigError as error:
            problems += error.problems
    given = {entry.key for entry in overriding}
    entries = [entry for entry in entries if entry.key not in given] + _last_per_key(overriding)
    return build_config(entries, problems, base)


def config_from_text(text: str, source: str = "the YAML box", base: TrainConfig | None = None) -> TrainConfig:
    """A config from YAML text (e.g. the studio's editor): same checks and line numbers as a file."""
    entries, extras, problems = entries_from_text(text or "", source, extra=PRESET_TEXT_KEYS)
    return build_config(entries, problems, base)


def _is_yaml_file(source: str) -> bool:
    return Path(source).suffix.lower() in (".yaml", ".yml")


def _unquoted(error: ConfigError, source: str) -> ConfigError:
    """``error`` with no text of the file in it: a file not named .yaml/.yml may be any file (a password file, a
    key), so its problems are told by line number alone."""
    lines = sorted({int(found.group(1)) for problem in error.problems
                    if (found := re.match(rf"{re.escape(source)} line (\d+)", problem))})
    where = f"line(s) {', '.join(map(str, lines))}" if lines else "its content"
    return ConfigError([f"{source} is not a LoRA Studio config ({where} cannot be read as settings); configs are "
                        "YAML files named .yaml or .yml — the file's text is not shown because it is neither"])


def _last_per_key(entries: list[Entry]) -> list[Entry]:
    """The last ``--set`` of each key wins, as on any command line."""
    return list({entry.key: entry for entry in entries}.values())


def _yaml_value(name: str, value: Any) -> str:
    """``name: value`` on one line; lists in flow style (``[to_q, to_v]``)."""
    options = dict(allow_unicode=True, width=1_000_000)
    if isinstance(value, list):
        return f"{name}: " + yaml.safe_dump(value, default_flow_style=True, **options).strip()
    return yaml.safe_dump({name: value}, default_flow_style=False, **options).rstrip("\n")


def dump_config(config: TrainConfig) -> str:
    """The config as flat YAML: sections as comments, each setting preceded by its help text."""
    config = dataclasses.replace(config)  # validates a copy: a config edited in place may have gone bad
    help_by_name = {f.name: f.metadata["help"] for f in config_fields()}
    parts = [HEADER]
    for section, names in fields_by_section().items():
        parts.append(f"\n# === {SECTIONS[section]} ===\n")
        for name in names:
            parts.append(f"# {help_by_name[name]}\n{_yaml_value(name, getattr(config, name))}\n")
    return "".join(parts)


def save_config(config: TrainConfig, path: str | os.PathLike) -> Path:
    """Write ``config`` to ``path`` as YAML, atomically; an existing file is kept as ``<name>.bak``."""
    return atomic_write_text(path, dump_config(config), backup=True)

