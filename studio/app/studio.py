"""The studio's facade: what the UI tabs call, with plain dataclasses and paths (no gradio here).

One ``Studio`` per app owns the workspace, the access rules and the parts the tabs call — ``configs``,
``datasets``, ``captions``, ``training``, ``evaluation``, ``runs`` — and no module globals. Every part is an object
with its own methods (``studio.configs.parse(text)``, ``studio.training.start(text)``); the facade itself only
builds them and answers who may write where.
"""
from __future__ import annotations

from pathlib import Path

from studio.app.access import Access, parse_data_dir
from studio.app.captions import CaptionDesk
from studio.app.configs import Configs
from studio.app.datasets import Datasets
from studio.app.errors import DebugLog
from studio.app.evaluation import Evaluation
from studio.app.runs import Runs
from studio.app.training import Training


class Studio:
    """The facade the tabs call. ``remote``: the remote-user rules of :mod:`studio.app.access` apply to every path
    (a studio reachable from other machines); ``data_dirs``: the operator's ``--data-dir`` folders (``DIR[:rw]``)."""

    def __init__(self, workspace: str | Path, *, remote: bool = False, data_dirs: tuple[str, ...] = ()):
        self.workspace = Path(workspace).expanduser().resolve()
        self.workspace.mkdir(parents=True, exist_ok=True)
        roots = tuple(parse_data_dir(text) for text in data_dirs)
        self.access = Access.for_remote(self.workspace, roots) if remote else Access.for_operator(self.workspace)
        self.output_dir = self.workspace / "output"
        self.debug_log = DebugLog(self.workspace / "logs" / "studio-errors.log")  # the pages' failures
        self.configs = Configs(self.workspace, self.output_dir, self.access)
        self.training = Training(self.configs, self.access, self.workspace / "jobs",
                                 debug_log=self.workspace / "logs" / "training-errors.log")
        self.datasets = Datasets(self.workspace, self.access)
        self.captions = CaptionDesk(self)
        self.evaluation = Evaluation(self)
        self.runs = Runs(self.output_dir)

    def writable(self, path: Path, what: str) -> Path:
        """``path`` if this user may write it (AccessError says why not): the one check before every write."""
        return self.access.resolve(path, write=True, what=what)
