"""What the application layer tells the user when something goes wrong, and where the rest goes.

A failure is either the user's to fix (the message says what to do: a path, a setting, a job already running)
or not (a bug, a crash in a library). The user sees the message of both; the traceback of the second kind is
appended to a debug log in the workspace, never shown on the page.
"""
from __future__ import annotations

import logging
import traceback
from datetime import datetime
from pathlib import Path


class StudioError(ValueError):
    """A user-facing problem; the message says what to do."""


class JobBusy(RuntimeError):
    """A second start of a background job while it is still active; the message says what runs."""


# ValueError: every error type the studio raises for a bad input is one (config, dataset, access, edits, evaluation
# and model errors); OSError: a file or folder the message names; JobBusy: wait, or stop the job.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, JobBusy)


def is_user_error(error: BaseException, kinds: tuple[type[BaseException], ...] = USER_ERRORS) -> bool:
    """Whether ``error`` (or the error it was raised from) is one of ``kinds``: the user's to fix, so its message
    is all they need."""
    return isinstance(error, kinds) or isinstance(error.__cause__, kinds)


class DebugLog:
    """A file that collects the tracebacks of failures that are not the user's to fix. Without a file, or when the
    file cannot be written, they go to this module's logger."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path else None

    def keep(self, what: str, message: str) -> Path | None:
        """Append the failure being handled (call it in an ``except`` block) with its traceback; returns the file,
        or None when the traceback went to the logger."""
        text = f"--- {datetime.now():%Y-%m-%d %H:%M:%S} {what} failed: {message}\n{traceback.format_exc()}"
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.path, "a", encoding="utf-8") as handle:
                    handle.write(text)
                return self.path
            except OSError:
                pass
        logging.getLogger(__name__).error("%s", text)
        return None
