"""One training run per run folder: ``run.lock`` names the process that writes the folder.

The lock is a small JSON file (pid, host, start time, the process's own start tick) created with
``O_CREAT | O_EXCL``, so of two runs that try at once exactly one gets it. It is removed when the run ends
(finished, stopped or failed). A lock whose process is gone (a kill -9, a power cut) is stale: the next run on
this host takes it over and says so. A lock written on another host is never taken over: its process cannot be
seen from here.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Callable

from .run_folder import RunFolder

EMPTY_LOCK_STALE_S = 5.0  # a lock file still empty after this long was left by a process killed while writing it


class RunFolderError(RuntimeError):
    """The run folder cannot be used for this run; the message says why and what to do."""


class RunLocked(RunFolderError):
    """Another process trains this run folder; the message names it and what to do."""


def _process_start(pid: int) -> str | None:
    """The kernel's start tick of ``pid`` (field 22 of /proc/<pid>/stat): tells a reused pid from the holder."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _alive(holder: dict) -> bool:
    """Whether the process recorded in ``holder`` (on this host) still runs."""
    pid = int(holder.get("pid") or 0)
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        pass
    recorded, now = holder.get("process_start"), _process_start(pid)
    return not (recorded and now and recorded != now)


def _read(path: Path) -> dict | None:
    """The lock's record; {} for a lock being written this instant or unreadable; None when there is none."""
    try:
        record = json.loads(path.read_text(encoding="utf-8") or "{}")
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def describe_holder(run_dir: Path, holder: dict) -> str:
    """``<run> is being trained by process 1234 on this machine since 14:02; wait for it or stop it``."""
    started = datetime.fromtimestamp(float(holder.get("started_at") or 0))
    since = started.strftime("%H:%M" if started.date() == datetime.now().date() else "%Y-%m-%d %H:%M")
    if holder.get("host") in (None, socket.gethostname()):
        where = "on this machine"
        after = "wait for it or stop it"
    else:
        where = f"on {holder.get('host')}"
        after = f"wait for it or stop it (if that machine no longer trains it, delete {RunFolder(run_dir).lock_file})"
    return f"{run_dir} is being trained by process {holder.get('pid', '?')} {where} since {since}; {after}"


def check_free(run_dir: str | os.PathLike) -> None:
    """Raise ``RunLocked`` when a running process holds ``run_dir``; takes nothing (a look before launching)."""
    holder = _read(RunFolder(run_dir).lock_file)
    if holder and (holder.get("host") != socket.gethostname() or _alive(holder)):
        raise RunLocked(describe_holder(Path(run_dir), holder))


class RunLock:
    """``acquire`` the lock of ``run_dir`` (raises ``RunLocked``), ``release`` it when the run ends."""

    def __init__(self, run_dir: str | os.PathLike, warn: Callable[[str], None] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = RunFolder(self.run_dir).lock_file
        self.warn = warn or (lambda message: None)
        self.record = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": time.time(),
                       "process_start": _process_start(os.getpid()), "token": uuid.uuid4().hex}

    def acquire(self) -> "RunLock":
        for _ in range(20):  # each pass either creates the lock, refuses, or moves a stale one aside
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                self._handle_existing()
                continue
            except OSError as error:
                raise RunFolderError(f"cannot create {self.path} ({error.strerror}); a run needs a run folder it "
                                     "can write: check its permissions, or set output_dir to another folder") from error
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(self.record) + "\n")
            return self
        raise RunLocked(f"{self.run_dir}: could not take {self.path} (it keeps changing); "
                        "another run is starting on this folder, wait for it")

    def _handle_existing(self) -> None:
        holder = _read(self.path)
        if holder == {}:  # being written this instant, or left empty by a writer killed right after creating it
            time.sleep(0.05)
            holder = _read(self.path)
            if holder == {} and time.time() - _mtime(self.path) > EMPTY_LOCK_STALE_S:
                self._take_over({})
        if not holder:
            return  # released, moved aside or still being written: the caller tries again
        if holder.get("host") != socket.gethostname() or _alive(holder):
            raise RunLocked(describe_holder(self.run_dir, holder))
        self._take_over(holder)

    def _take_over(self, stale: dict) -> None:
        """Move a dead process's lock aside; the caller then creates its own. Of two runs that both found the
        same stale lock, the rename succeeds for one; if the other then moved the first one's new lock by
        mistake, it puts it back."""
        aside = self.path.with_name(f".{self.path.name}.stale-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = _read(aside) or {}
        if moved.get("token") != stale.get("token") or moved.get("pid") != stale.get("pid"):
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        else:
            who = f"process {stale['pid']}" if stale.get("pid") else "a process"
            self.warn(f"{self.run_dir}: took over the lock of {who}, which is no longer running (a run that was "
                      "killed or crashed)")
        aside.unlink(missing_ok=True)

    def release(self) -> None:
        """Remove the lock if it is still this run's own."""
        holder = _read(self.path)
        if holder and holder.get("token") == self.record["token"]:
            self.path.unlink(missing_ok=True)


def lock_for_all_processes(run_dir: Path, warn: Callable[[str], None] | None = None) -> RunLock | None:
    """Lock ``run_dir`` for a run about to write it; the lock (or None on other processes) is released by the run.

    One process: it takes the lock. Several (``accelerate launch`` sets ``WORLD_SIZE``): the main process takes it
    and tells the others whether it got it, so that all of them stop with the same ``RunLocked`` before any
    loads a model; the other processes hold nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1") or 1) <= 1:
        return RunLock(run_dir, warn).acquire()
    import torch
    from accelerate.state import PartialState
    from accelerate.utils import broadcast_object_list

    state = PartialState(cpu=not torch.cuda.is_available())  # the state the run's Accelerator will use
    lock, refusal = None, None
    if state.is_main_process:
        try:
            lock = RunLock(run_dir, warn).acquire()
        except RunLocked as error:
            refusal = str(error)
    refusal = broadcast_object_list([refusal], from_process=0)[0]
    if refusal:
        raise RunLocked(refusal)
    return lock


def leave_process_group() -> None:
    """Close torch.distributed's process group, if this process is in one, before the interpreter exits: a process
    that leaves it open can abort at exit ("terminate called without an active exception", SIGABRT) while gloo's
    threads still run, and the launcher then reports the whole run as failed."""
    torch = sys.modules.get("torch")
    if torch is None:
        return
    distributed = torch.distributed
    if distributed.is_available() and distributed.is_initialized():
        distributed.destroy_process_group()

