"""The studio's training runs as the tabs list them: ``studio.runs``.

The listing itself still lives in ``studio.service`` (``Studio.list_runs`` and ``Studio.find_run``, which read the
run folders); this owner is what the tabs call, so that the listing can move here without the tabs changing.
"""
from __future__ import annotations


class Runs:
    """The runs under the studio's output folder, newest first."""

    def __init__(self, studio):
        self.studio = studio

    def list(self) -> list:
        """Every run (a ``RunSummary``: name, folder, status, steps, final LoRA, checkpoints, base model)."""
        return self.studio.list_runs()

    def find(self, name_or_path: str):
        """The run with this name, folder or label; StudioError when there is none."""
        return self.studio.find_run(name_or_path)
