"""The studio's service facade: what the UI tabs call, with plain dataclasses and paths (no gradio here).

One ``Studio`` per app: it owns the workspace, the training job, and the parts the tabs call in ``studio.app``
(``datasets``, ``captions``, ``evaluation``, ``runs``) — no module globals.
The UI never builds a ``TrainConfig`` from widgets itself: it hands YAML text and field changes to
``config_yaml_with`` and gets YAML back, so the dataclass stays the single source of truth.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from studio.app.access import Access, parse_data_dir
from studio.app.captions import CaptionDesk
from studio.app.confine import confine_config, confine_model_source
from studio.app.datasets import Datasets
from studio.app.errors import DebugLog, StudioError
from studio.app.evaluation import Evaluation
from studio.app.runs import Runs
from studio.jobs import TrainingJob
from studio.util.paths import repo_root

REPO_ROOT = repo_root()


@dataclass
class RunSummary:
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


class Studio:
    """The facade the tabs call. ``remote``: the remote-user rules of :mod:`studio.app.access` apply to every path
    (a studio reachable from other machines); ``data_dirs``: the operator's ``--data-dir`` folders (``DIR[:rw]``)."""

    def __init__(self, workspace: str | Path, *, remote: bool = False, data_dirs: tuple[str, ...] = ()):
        self.workspace = Path(workspace).expanduser().resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        roots = tuple(parse_data_dir(text) for text in data_dirs)
        self.access = Access.for_remote(self.workspace, roots) if remote else Access.for_operator(self.workspace)
        self.output_dir = self.workspace / "output"
        self.training = TrainingJob(debug_log=self.workspace / "logs" / "training-errors.log")
        self.debug_log = DebugLog(self.workspace / "logs" / "studio-errors.log")  # the pages' failures
        self.datasets = Datasets(self.workspace, self.access)
        self.captions = CaptionDesk(self)
        self.evaluation = Evaluation(self)
        self.runs = Runs(self)

    # ---- access -----------------------------------------------------------------------------------------
    def writable(self, path: Path, what: str) -> Path:
        """``path`` if this user may write it (AccessError says why not): the one check before every write."""
        return self.access.resolve(path, write=True, what=what)

    # ---- configuration ------------------------------------------------------------------------------
    def default_config(self):
        from studio.config import TrainConfig

        return TrainConfig(output_dir=str(self.output_dir / "lora"))

    def parse_config(self, yaml_text: str):
        """YAML text from the page → ``TrainConfig`` (``ConfigError`` names the key and line)."""
        from studio.config import config_from_text

        return config_from_text(yaml_text)

    def config_yaml(self, config) -> str:
        from studio.config import dump_config

        return dump_config(config)

    def config_yaml_with(self, yaml_text: str, changes: dict) -> str:
        """Apply form changes (field → value) to the YAML's config; returns the new YAML."""
        from studio.config import config_from_dict, config_to_dict

        values = config_to_dict(self.parse_config(yaml_text))
        values.update(changes)
        return self.config_yaml(config_from_dict(values))

    def apply_presets(self, yaml_text: str, task=None, rank=None, epochs=None, demo=None, model=None):
        """(the YAML with the presets applied, a ``PresetReport``: what each preset set and which advice breaks)."""
        from studio.config.preset_report import explain_presets
        from studio.config.presets import apply_chosen, chosen_presets

        before = self.parse_config(yaml_text)
        chosen = chosen_presets(rank=rank or None, epochs=epochs or None, task=task or None, demo=demo or None,
                                model=model or None)
        config = apply_chosen(before, chosen)
        if demo:  # demo presets name folders of this repository and write under the workspace
            config = config.resolve_paths(REPO_ROOT)
            config = _with(config, output_dir=str(self.output_dir / Path(config.output_dir).name))
        return self.config_yaml(config), explain_presets(before, chosen, config, self._picture_count(config))

    def _picture_count(self, config) -> int | None:
        """Rows of the config's captions file, for the run-length estimate; None when it cannot be read here."""
        from studio.data import read_metadata

        try:
            path = self.access.resolve(config.resolved_metadata_path(), what="the captions file")
            return len(read_metadata(path).records)
        except (OSError, ValueError):  # no dataset yet, or not readable by this user: no estimate
            return None

    def model_family_line(self, yaml_text: str) -> str:
        """One line saying which family the config's base model is (read from its files, nothing loaded)."""
        from studio.models import describe_model

        config = self.parse_config(yaml_text)
        source = confine_model_source(config.base_model, self.access, "the base model")
        config_folder = config.base_model_config and str(self.access.resolve(config.base_model_config,
                                                                             what="base_model_config"))
        return describe_model(source, config_folder or "").line()

    def import_config(self, path: str | Path, uploaded: bool = False) -> str:
        """A YAML file's config as YAML text. ``uploaded``: the file came through the page's upload button (gradio
        keeps it in its own upload folder), so the access rules do not apply to where it lies."""
        from studio.config import load_config

        if not uploaded:
            path = self.access.resolve(path, what="the config file")
        return self.config_yaml(load_config(Path(path)))

    def export_config(self, yaml_text: str) -> Path:
        from studio.config import save_config

        config = self.parse_config(yaml_text)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return save_config(config, self.workspace / "configs" / f"{config.resolved_output_name()}-{stamp}.yaml")

    # ---- training -----------------------------------------------------------------------------------
    def start_training(self, yaml_text: str, resume: bool = False, num_processes: int = 1) -> None:
        """Train in this process, or (``num_processes`` > 1) data-parallel in that many subprocesses."""
        config = confine_config(self.parse_config(yaml_text), self.access)
        if resume:
            config = _with(config, resume="latest")
        runner = None
        if int(num_processes or 1) > 1:
            from studio.jobs_multi import ProcessRunner

            runner = ProcessRunner(int(num_processes), self.workspace / "jobs")
        self.training.start(config, runner=runner)

    # ---- runs and evaluation ------------------------------------------------------------------------
    def list_runs(self) -> list[RunSummary]:
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

    def find_run(self, name_or_path: str) -> RunSummary:
        for run in self.list_runs():
            if name_or_path in (run.name, str(run.path), run.label):
                return run
        raise StudioError(f"no run named {name_or_path!r} under {self.output_dir}; train one first")


def _with(config, **changes):
    from studio.config import config_from_dict, config_to_dict

    values = config_to_dict(config)
    values.update(changes)
    return config_from_dict(values)


def _config_value(path: Path, key: str) -> str:
    import yaml

    try:
        return str((yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get(key) or "")
    except (OSError, yaml.YAMLError):
        return ""
