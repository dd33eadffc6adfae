"""Requests to a running training: stop, save a checkpoint now, draw the samples now (no torch here).

The run polls ``TrainingCommands.take()`` after every step; any thread may ask at any time. "Stop" stays asked
once asked; "save now" and "sample now" are done once per request, at the step after which they are seen.
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

# The lines a command file holds (``studio.py train --command-file``), one request each.
STOP, SAVE, SAMPLE = "stop", "save", "sample"


@dataclass(frozen=True)
class Requests:
    """What the run was asked since it last looked."""

    stop: bool = False
    save: bool = False
    sample: bool = False


class TrainingCommands:
    """Thread-safe requests from the page, the CLI or a test to the run that polls them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = self._save = self._sample = False

    def stop(self) -> None:
        """Stop after the current step, saving a checkpoint there."""
        with self._lock:
            self._stop = True

    def save_now(self) -> None:
        """Write a checkpoint after the current step and go on training."""
        with self._lock:
            self._save = True

    def sample_now(self) -> None:
        """Draw the sample prompts after the current step and go on training."""
        with self._lock:
            self._sample = True

    @property
    def stop_requested(self) -> bool:
        with self._lock:
            return self._stop

    def take(self) -> Requests:
        """The requests pending now; "save" and "sample" are cleared by taking them, "stop" is not."""
        with self._lock:
            requests = Requests(self._stop, self._save, self._sample)
            self._save = self._sample = False
        return requests


class FileCommands(TrainingCommands):
    """Requests that also come from files another process writes (the studio's multi-process runner).

    ``stop_file`` appearing stops the run. Each line appended to ``command_file`` ("stop", "save", "sample") is
    one request, read once. ``follow_file`` False ignores the command file: with several training processes only
    the main one reads it, and the run shares its requests with the others, so each request is done once.
    """

    def __init__(self, stop_file: str | os.PathLike | None = None, command_file: str | os.PathLike | None = None,
                 follow_file: bool = True) -> None:
        super().__init__()
        self.stop_file = Path(stop_file) if stop_file else None
        self.command_file = Path(command_file) if command_file and follow_file else None
        self._read_to = 0  # bytes of the command file already read

    def take(self) -> Requests:
        if self.stop_file is not None and self.stop_file.exists():
            self.stop()
        for line in self._new_lines():
            {STOP: self.stop, SAVE: self.save_now, SAMPLE: self.sample_now}.get(line, lambda: None)()
        return super().take()

    def _new_lines(self) -> list[str]:
        """Whole lines appended to the command file since the last look."""
        if self.command_file is None:
            return []
        try:
            with open(self.command_file, "rb") as handle:
                handle.seek(self._read_to)
                data = handle.read()
        except OSError:
            return []
        complete = data[:data.rfind(b"\n") + 1]
        self._read_to += len(complete)
        return [line.strip() for line in complete.decode("utf-8", "replace").splitlines()]


def append_command(command_file: str | os.PathLike, request: str) -> None:
    """Add one request line to ``command_file`` (read by a ``FileCommands`` in another process)."""
    with open(command_file, "a", encoding="utf-8") as handle:
        handle.write(request + "\n")
