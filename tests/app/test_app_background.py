"""The skeleton the studio's background jobs share: one piece of work at a time, a stop the work sees at its next
check, and failures told in one line with the traceback of a bug kept in the debug log."""
from __future__ import annotations

import threading
from dataclasses import dataclass

import pytest

from studio.app.background import BackgroundJob
from studio.app.errors import DebugLog, JobBusy, is_user_error


@dataclass(frozen=True)
class _State:
    status: str = "idle"
    done: int = 0
    message: str = ""

    @property
    def active(self) -> bool:
        return self.status in ("running", "stopping")


class _CountingJob(BackgroundJob[_State]):
    """Counts up, one step each time the test lets it, until it is stopped or a step raises."""

    what = "counting"

    def __init__(self, step=lambda done: None, debug_log=None):
        super().__init__(_State(), debug_log)
        self.step, self.go, self.stepped = step, threading.Semaphore(0), threading.Semaphore(0)

    def start(self) -> None:
        self._launch(_State("running"))

    def _work(self) -> None:
        try:
            while not self._stop_requested():
                self.go.acquire(timeout=30)
                self.step(self.state().done)
                self._update(status="running", done=self.state().done + 1)
                self.stepped.release()
            self._update(status="stopped")
        except Exception as error:
            self._update(status="failed", message=self._failure_line(error))


def _raises(error: Exception):
    def step(_done: int) -> None:
        raise error
    return step


def test_a_second_start_while_the_work_runs_is_refused_and_one_after_it_ended_is_not():
    job = _CountingJob()
    job.start()
    with pytest.raises(JobBusy, match="counting is already running"):
        job.start()
    assert job._request_stop() and job.state().status == "stopping"
    job.go.release()
    assert job.join(30) and job.state().status == "stopped"
    assert not job._request_stop()  # nothing runs
    job.start()
    assert job.state() == _State("running")
    job._request_stop()
    job.go.release()
    assert job.join(30)


def test_after_a_stop_the_works_own_reports_keep_the_stopping_status():
    job = _CountingJob()
    job.start()
    job.go.release()
    assert job.stepped.acquire(timeout=30) and job.state() == _State("running", 1)
    job._request_stop()
    job.go.release()  # the step under way reports "running"; the state stays "stopping"
    assert job.stepped.acquire(timeout=30)
    assert job.join(30) and job.state().status == "stopped" and job.state().done == 2


def test_the_users_failure_is_its_message_and_a_bugs_traceback_goes_to_the_debug_log(tmp_path):
    log = tmp_path / "logs" / "errors.log"
    job = _CountingJob(step=_raises(ValueError("the folder x has no pictures")), debug_log=log)
    job.start()
    job.go.release()
    assert job.join(30) and job.state() == _State("failed", 0, "the folder x has no pictures")
    assert not log.exists()

    job.step = _raises(KeyError("missing"))
    job.start()
    job.go.release()
    assert job.join(30) and job.state().status == "failed"
    assert job.state().message == f"Counting failed (KeyError: 'missing'); the technical details are in {log}."
    kept = log.read_text(encoding="utf-8")
    assert "counting failed: 'missing'" in kept and "Traceback" in kept and "KeyError" in kept


def test_an_error_raised_from_a_users_error_is_the_users_too():
    try:
        try:
            raise FileNotFoundError("no such file: a.png")
        except OSError as cause:
            raise RuntimeError("the dataset could not be read") from cause
    except RuntimeError as error:
        assert is_user_error(error)
    assert not is_user_error(KeyError("x")) and is_user_error(JobBusy("busy"))


def test_a_debug_log_that_cannot_be_written_leaves_the_traceback_to_the_logger(tmp_path, caplog):
    (tmp_path / "file").write_text("")
    try:
        raise KeyError("x")
    except KeyError:
        assert DebugLog(tmp_path / "file" / "errors.log").keep("a test", "x") is None
    assert "a test failed: x" in caplog.text and "Traceback" in caplog.text
