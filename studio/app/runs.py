"""``studio.runs``: the studio's training runs as the tabs list them, read from the run folders under the studio's
output folder (``RunFolder`` knows what a run folder holds)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.app.errors import StudioError


@dataclass
class RunSummary:
    """One run as the Evaluation tab lists it."""

    name: str
    path: Path
    status: str
    step: int
    total_steps: int
    final_lora: Path | None
    checkpoints: list[Path]
    base_model: str
    trigger_word: str = ""

    @property
    def label(self) -> str:
        return f"{self.name} — {self.status}, step {self.step}/{self.total_steps}"


class Runs:
    """The runs under ``output_dir``, newest first."""

    def __init__(self, output_dir: Path):
        self.output_dir = output_dir

    def list(self) -> list[RunSummary]:
        """Every run (name, folder, status, steps, final LoRA, checkpoints, base model, trigger word)."""
        from studio.train.run_folder import RunFolder

        runs = []
        for folder in RunFolder.all_under(self.output_dir):
            info = folder.info()
            final = folder.diffusers_lora
            runs.append(RunSummary(
                folder.name, folder.path, folder.status(), int(info.get("step", 0)),
                int(info.get("total_steps", 0)), final if final.is_file() else None, folder.checkpoints(),
                _config_value(folder.config_file, "base_model"), _config_value(folder.config_file, "trigger_word"),
            ))
        return runs

    def find(self, name_or_path: str) -> RunSummary:
        """The run with this name, folder or label; StudioError when there is none."""
        for run in self.list():
            if name_or_path in (run.name, str(run.path), run.label):
                return run
        raise StudioError(f"no run named {name_or_path!r} under {self.output_dir}; train one first")


def _config_value(path: Path, key: str) -> str:
    """A setting of a run's config snapshot as text; "" when the file or the setting is missing."""
    import yaml

    try:
        return str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(key) or "")
    except (OSError, yaml.YAMLError):
        return ""
