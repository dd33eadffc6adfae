"""From a YAML file, a mapping or ``--set key=value`` strings to a list of settings that know where they came from.

Two layouts are accepted: the flat one (``lora_rank: 8`` at the top level) and the nested one with sections
(``model_config:``, ``training_config:``, ``data_config:``, ``lora_config:``, ``output_config:``). Any setting
may sit in any section, because published configs disagree on which belongs where; the same setting twice with
different values is an error naming both places.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from yaml.nodes import MappingNode as MappingNodeType, SequenceNode as SequenceNodeType

from studio.util.reading import FileRefused, read_bytes_capped

from .errors import ConfigError
from .schema import SECTIONS, field_names, field_specs
from .validate import coerce, show
from .yamlsafe import MAX_BYTES, NodeReader, compose

SECTION_KEYS = tuple(f"{section}_config" for section in SECTIONS)
# Names other trainers (kohya sd-scripts, diffusers examples) use, for "did you mean" hints only.
FOREIGN_NAMES = {
    "network_dim": "lora_rank", "rank": "lora_rank", "r": "lora_rank", "network_alpha": "lora_alpha",
    "alpha": "lora_alpha", "network_dropout": "lora_dropout", "train_batch_size": "batch_size",
    "num_train_epochs": "epochs", "max_train_epochs": "epochs", "max_train_steps": "max_steps",
    "pretrained_model_name_or_path": "base_model", "lr": "learning_rate", "unet_lr": "learning_rate",
    "instance_data_dir": "train_data_dir", "train_data": "train_data_dir", "flip_aug": "random_flip",
    "num_repeats": "repeats", "caption_dropout_rate": "caption_dropout", "optimizer_type": "optimizer",
    "save_every_n_steps": "save_steps", "checkpointing_steps": "save_steps",
    "checkpoints_total_limit": "keep_last_n_checkpoints", "resume_from_checkpoint": "resume",
    "validation_prompt": "validation_prompts", "sample_prompts": "validation_prompts", "network_weights": "init_lora",
    "weight_decay": "adam_weight_decay", "adam_weight_decay_rate": "adam_weight_decay", "snr_gamma": "min_snr_gamma",
    "network_module": None, "pretrained_model": "base_model", "model_path": "base_model",
}


@dataclass
class Entry:
    """One setting as found in a source: ``where`` is e.g. ``my.yaml line 4`` or ``--set lora_rank=16``."""

    key: str
    value: Any
    where: str
    place: str  # "at the top level", "in model_config", "on the command line"
    line: int | None = None


def unknown_key_message(key: str, where: str, section: str | None = None, extra: tuple[str, ...] = ()) -> str:
    """``<where>: unknown key 'x' [in section] — did you mean 'y'?``"""
    inside = f" in {section}" if section else ""
    prefix = f"{where}: " if where else ""
    if key in FOREIGN_NAMES and FOREIGN_NAMES[key]:
        return f"{prefix}unknown key {key!r}{inside} — LoRA Studio calls this setting {FOREIGN_NAMES[key]!r}"
    candidates = field_names() + list(extra) + ([] if section else list(SECTION_KEYS))
    close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else "not a LoRA Studio setting; remove it or check the spelling"
    return f"{prefix}unknown key {key!r}{inside} — {hint}"


def read_text(path: str | os.PathLike) -> tuple[str, str]:
    """``(text, name for messages)`` of a config file, with clear errors for missing or unreadable files.

    Only a regular file of at most ``MAX_BYTES`` is read (not a folder, a device, a pipe or a link loop).
    """
    source = str(path)
    try:
        data = read_bytes_capped(path, MAX_BYTES, "config file")
    except FileRefused as error:
        raise ConfigError([str(error)]) from None
    except FileNotFoundError:
        raise ConfigError([f"{source}: config file not found — check the path (relative paths start from "
                           f"{Path.cwd()})"]) from None
    except OSError as error:
        raise ConfigError([f"{source}: cannot be read ({error.strerror})"]) from None
    try:
        return data.decode("utf-8-sig"), source
    except UnicodeDecodeError as error:
        raise ConfigError([f"{source}: not UTF-8 text (byte {error.start}); save the file as UTF-8"]) from None


def entries_from_text(text: str, source: str, extra: tuple[str, ...] = ()) -> tuple[list[Entry], dict, list[str]]:
    """Parse config text: ``(settings, extra keys such as description, structural problems)``."""
    root = compose(text, source)
    if root is None:
        raise ConfigError([f"{source} is empty; write one setting per line, e.g. 'lora_rank: 8'"])
    reader = NodeReader(source)
    if not isinstance(root, MappingNodeType):
        kind = "a list" if isinstance(root, SequenceNodeType) else "a single value (is there a space after each colon?)"
        raise ConfigError([f"{reader.where(root)}: the top level must be 'key: value' lines, but the file holds "
                           f"{kind}"])
    entries, extras, problems = [], {}, []
    for pair in reader.pairs(root):
        where = f"{source} line {pair.line}"
        if pair.key in SECTION_KEYS:
            if isinstance(pair.node, MappingNodeType):
                for inner in reader.pairs(pair.node, 1):
                    inner_where = f"{source} line {inner.line}"
                    if inner.key in field_specs():
                        value = reader.read(inner.node, 2, inner.line)
                        entries.append(Entry(inner.key, value, inner_where, f"in {pair.key}", inner.line))
                    else:
                        problems.append(unknown_key_message(inner.key, inner_where, pair.key))
            elif reader.read(pair.node, 1, pair.line) is not None:
                problems.append(f"{where}: {pair.key} must hold 'key: value' lines indented below it")
        elif pair.key in field_specs():
            entries.append(Entry(pair.key, reader.read(pair.node, 1, pair.line), where, "at the top level", pair.line))
        elif pair.key in extra:
            extras[pair.key] = reader.read(pair.node, 1, pair.line)
        else:
            problems.append(unknown_key_message(pair.key, where, None, extra))
    return entries, extras, problems


def entries_from_mapping(values: Mapping, source: str = "", extra: tuple[str, ...] = ()) -> tuple[list, dict, list]:
    """The same as ``entries_from_text`` for an in-memory mapping (a UI form, a test)."""
    entries, extras, problems = [], {}, []
    for key, value in values.items():
        if key in SECTION_KEYS:
            if not isinstance(value, Mapping | None):
                problems.append(f"{key} must be a mapping of settings")
                continue
            for inner_key, inner_value in (value or {}).items():
                if inner_key in field_specs():
                    entries.append(Entry(inner_key, inner_value, source, f"in {key}"))
                else:
                    problems.append(unknown_key_message(str(inner_key), source, key))
        elif key in field_specs():
            entries.append(Entry(key, value, source, "at the top level"))
        elif key in extra:
            extras[key] = value
        else:
            problems.append(unknown_key_message(str(key), source, None, extra))
    return entries, extras, problems


def entry_from_override(text: str) -> Entry:
    """``--set key=value``: the value is read as YAML, so ``16`` is a number and ``[to_q, to_v]`` a list."""
    where = f"--set {text}"
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError([f"{where}: expected key=value, e.g. --set lora_rank=16"])
    section, dot, name = key.partition(".")
    if dot and section in SECTION_KEYS:
        key = name
    if key not in field_specs():
        raise ConfigError([unknown_key_message(key, where)])
    node = compose(raw, where)
    value = None if node is None else NodeReader(where).read(node)
    return Entry(key, value, where, "on the command line")


def merge_entries(entries: list[Entry]) -> tuple[dict[str, Any], dict[str, str], list[str]]:
    """``(values, where each came from, problems)``; a setting given twice differently is a problem."""
    values: dict[str, Any] = {}
    first: dict[str, Entry] = {}
    problems = []
    for entry in entries:
        earlier = first.get(entry.key)
        if earlier is None:
            first[entry.key] = entry
            values[entry.key] = entry.value
            continue
        there = f"line {earlier.line}" if earlier.line else earlier.where
        if earlier.place == entry.place:
            problems.append(f"{entry.where}: {entry.key!r} is set twice {entry.place} (also on {there}); keep one")
        elif not _same(entry.key, earlier.value, entry.value):
            problems.append(f"{entry.where}: {entry.key!r} is set twice with different values — "
                            f"{show(earlier.value)} on {there} ({earlier.place}) and {show(entry.value)} here "
                            f"({entry.place}); keep one")
    return values, {key: entry.where for key, entry in first.items()}, problems


def _same(key: str, a: Any, b: Any) -> bool:
    """Equal as settings: ``2e-4`` and ``0.0002`` are the same learning rate."""
    if a == b:
        return True
    spec = field_specs()[key]
    (ca, pa), (cb, pb) = coerce(spec, a), coerce(spec, b)
    return pa is None and pb is None and ca == cb

