"""``BackgroundJob``: the skeleton every long piece of work of the studio shares (training, auto-captioning).

One piece of work at a time runs in a daemon thread. Its state is a frozen dataclass with a ``status`` field and an
``active`` property, replaced as a whole under the job's lock, so the page that polls it on a timer always reads
one consistent copy and a reloaded page sees the same live work (the job lives in the studio, not in the page).
gradio's ``cancels=`` cannot stop a function that is already running and a thread cannot be killed, so stopping
sets an event the work polls between its steps.
"""
from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from dataclasses import replace
from pathlib import Path
from typing import Any, Generic, TypeVar

from studio.app.errors import USER_ERRORS, DebugLog, JobBusy, is_user_error

State = TypeVar("State")  # a frozen dataclass with ``status`` and an ``active`` property


class BackgroundJob(ABC, Generic[State]):
    """Start, stop and read the state of one piece of work from any thread.

    A subclass starts its work with :meth:`_launch` (which refuses while the job is active, with :meth:`_busy`),
    does it in :meth:`_work` (reporting with :meth:`_update` and checking :meth:`_stop_requested`), and turns a
    failure into the state's message with :meth:`_failure_line`. ``stopping``: the changes a stop makes to the state;
    once asked to stop, the work's own reports of an active status keep them. ``user_errors``: the failures whose
    message is all the user needs; any other failure's traceback goes to ``debug_log``.
    """

    thread_name = "background-job"
    what = "a background job"  # names the work in the debug log
    stopping: dict[str, Any] = {"status": "stopping"}
    user_errors: tuple[type[BaseException], ...] = USER_ERRORS

    def __init__(self, idle: State, debug_log: DebugLog | str | Path | None = None):
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._state = idle
        self.debug_log = debug_log if isinstance(debug_log, DebugLog) else DebugLog(debug_log)

    def state(self) -> State:
        """The current state (a frozen copy, safe to read anywhere)."""
        with self._lock:
            return self._state

    def join(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the work to end; whether it has (True when none was started)."""
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    # ---- for subclasses -----------------------------------------------------------------------------------------
    @abstractmethod
    def _work(self, *args) -> None:
        """The work itself, in the job's thread."""

    def _busy(self, state: State) -> JobBusy:
        """The error for a start while ``state`` is active: what runs, and what to do."""
        return JobBusy(f"{self.what} is already {getattr(state, 'status', 'running')}; wait for it or stop it first")

    def _started(self) -> None:
        """Called under the lock when new work starts, before its thread does (reset what the state does not hold)."""

    def _stopped(self) -> None:
        """Called under the lock when a stop is asked for (note it where the page reads it)."""

    def _launch(self, first: State, *args) -> None:
        """Run ``self._work(*args)`` in a new thread with ``first`` as its state; raises :meth:`_busy`'s error while
        the job is active."""
        with self._lock:
            if self._state.active:
                raise self._busy(self._state)
            self._stop.clear()
            self._state = first
            self._started()
            self._thread = threading.Thread(target=self._work, args=args, name=self.thread_name, daemon=True)
            self._thread.start()

    def _request_stop(self) -> bool:
        """Ask the work to stop at its next check (the state takes ``stopping``); False when nothing runs."""
        with self._lock:
            if not self._state.active:
                return False
            self._state = replace(self._state, **self.stopping)
            self._stopped()
        self._stop.set()
        return True

    def _stop_requested(self) -> bool:
        return self._stop.is_set()

    def _update(self, **changes) -> State:
        """Replace fields of the state; after a stop was asked for, an active state keeps ``stopping``."""
        with self._lock:
            state = replace(self._state, **changes)
            if self._stop.is_set() and state.active:
                state = replace(state, **self.stopping)
            self._state = state
            return state

    def _failure_line(self, error: BaseException) -> str:
        """The state's message for the failure being handled (call it in an ``except`` block): the user's own
        failure says what to do in its own words; any other names its type, and its traceback goes to the debug
        log."""
        message = str(error) or type(error).__name__
        if is_user_error(error, self.user_errors):
            return message
        details = self.debug_log.keep(self.what, message)
        where = f"the technical details are in {details}" if details else "the studio's log has the technical details"
        return f"{self.what[:1].upper()}{self.what[1:]} failed ({type(error).__name__}: {message}); {where}."
