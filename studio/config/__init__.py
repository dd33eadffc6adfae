"""Training configuration: one dataclass (``TrainConfig``), YAML in and out, presets and path checks."""
from __future__ import annotations

from .errors import ConfigError
from .io import config_from_dict, config_from_text, config_to_dict, dump_config, load_config, save_config
from .paths import check_paths
from .presets import Preset, apply_presets, list_presets
from .schema import SECTIONS, TrainConfig, field_help, fields_by_section

__all__ = [
    "TrainConfig", "ConfigError", "load_config", "save_config", "dump_config", "config_to_dict",
    "config_from_dict", "config_from_text", "list_presets", "apply_presets", "check_paths", "Preset", "SECTIONS", "field_help",
    "fields_by_section",
]
