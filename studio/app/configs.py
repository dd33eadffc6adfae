"""``studio.configs``: the Training tab's config as YAML text, its presets, and import/export of config files.

The page never builds a ``TrainConfig`` from widgets itself: it hands YAML text and field changes to
:meth:`Configs.yaml_with` and gets YAML back, so the dataclass stays the single source of truth. The names the
Training tab needs from the config engine to build its form are re-exported here.
"""
from __future__ import annotations

from datetime import datetime
from pathlib import Path

from studio.app.access import Access
from studio.app.confine import confine_model_source
from studio.config import TrainConfig, config_from_dict, config_to_dict, field_help, list_presets
from studio.config.preset_report import PresetReport
from studio.config.schema import field_specs
from studio.util.paths import repo_root

REPO_ROOT = repo_root()

# what the Training tab uses from the config engine besides this owner
__all__ = ["Configs", "config_to_dict", "field_help", "field_specs", "list_presets"]


class Configs:
    """Configs of the studio's runs: new ones write under ``output_dir``; files are read and written as ``access``
    allows; exported files go to ``<workspace>/configs``."""

    def __init__(self, workspace: Path, output_dir: Path, access: Access):
        self.workspace, self.output_dir, self.access = workspace, output_dir, access

    def default(self) -> TrainConfig:
        return TrainConfig(output_dir=str(self.output_dir / "lora"))

    def parse(self, yaml_text: str) -> TrainConfig:
        """YAML text from the page → ``TrainConfig`` (``ConfigError`` names the key and line)."""
        from studio.config import config_from_text

        return config_from_text(yaml_text)

    def yaml(self, config: TrainConfig) -> str:
        from studio.config import dump_config

        return dump_config(config)

    def yaml_with(self, yaml_text: str, changes: dict) -> str:
        """Apply form changes (field → value) to the YAML's config; returns the new YAML."""
        return self.yaml(self.changed(self.parse(yaml_text), **changes))

    @staticmethod
    def changed(config: TrainConfig, **changes) -> TrainConfig:
        """``config`` with some fields changed, checked as a whole again."""
        values = config_to_dict(config)
        values.update(changes)
        return config_from_dict(values)

    def apply_presets(self, yaml_text: str, task=None, rank=None, epochs=None, demo=None,
                      model=None) -> tuple[str, PresetReport]:
        """(the YAML with the presets applied, a ``PresetReport``: what each preset set and which advice breaks)."""
        from studio.config.preset_report import explain_presets
        from studio.config.presets import apply_chosen, chosen_presets

        before = self.parse(yaml_text)
        chosen = chosen_presets(rank=rank or None, epochs=epochs or None, task=task or None, demo=demo or None,
                                model=model or None)
        config = apply_chosen(before, chosen)
        if demo:  # demo presets name folders of this repository and write under the workspace
            config = config.resolve_paths(REPO_ROOT)
            config = self.changed(config, output_dir=str(self.output_dir / Path(config.output_dir).name))
        return self.yaml(config), explain_presets(before, chosen, config, self._picture_count(config))

    def _picture_count(self, config: TrainConfig) -> int | None:
        """Rows of the config's captions file, for the run-length estimate; None when it cannot be read here."""
        from studio.data import read_metadata

        try:
            path = self.access.resolve(config.resolved_metadata_path(), what="the captions file")
            return len(read_metadata(path).records)
        except (OSError, ValueError):  # no dataset yet, or not readable by this user: no estimate
            return None

    def model_family_line(self, yaml_text: str) -> str:
        """One line saying which family the config's base model is (read from its files, nothing loaded) and how
        its frozen weights are stored (``base_weights``)."""
        from studio.models import describe_model

        config = self.parse(yaml_text)
        source = confine_model_source(config.base_model, self.access, "the base model")
        config_source = confine_model_source(config.base_model_config, self.access, "base_model_config")
        return f"{describe_model(source, config_source).line()} · {memory_words(config)}"

    def import_file(self, path: str | Path, uploaded: bool = False) -> str:
        """A YAML file's config as YAML text. ``uploaded``: the file came through the page's upload button (gradio
        keeps it in its own upload folder), so the access rules do not apply to where it lies."""
        from studio.config import load_config

        if not uploaded:
            path = self.access.resolve(path, what="the config file")
        return self.yaml(load_config(Path(path)))

    def export(self, yaml_text: str) -> Path:
        """Save the YAML's config under ``<workspace>/configs``, named after the run and the time; returns the file."""
        from studio.config import save_config

        config = self.parse(yaml_text)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return save_config(config, self.workspace / "configs" / f"{config.resolved_output_name()}-{stamp}.yaml")


def memory_words(config: TrainConfig) -> str:
    """The memory setting in a few words: ``base_weights``, and what ``auto`` means for this config."""
    choice = config.base_weights
    if choice == "auto":
        mixed = config.mixed_precision if config.mixed_precision != "no" else "fp32"
        return f"base weights: **auto** ({mixed} on a GPU, fp32 on a CPU)"
    return f"base weights: **{choice}**"
