"""Run one top-level function over many files, inline or in a process pool, with progress and a stop request."""
from __future__ import annotations

import multiprocessing
import os
import threading
import warnings
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Sequence

from PIL import Image

Progress = Callable[[int, int], None]


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 4))


def map_files(function: Callable[[Any], Any], tasks: Sequence[Any], *, workers: int | None = None,
              progress: Progress | None = None, should_stop: Callable[[], bool] | None = None
              ) -> tuple[list[Any], bool]:
    """``[function(task) for task in tasks]`` and whether a stop was requested (then unfinished results are None).

    ``function`` must be a module-level function (it is pickled by name). ``workers=1`` runs inline, which tests and
    tiny folders use; otherwise tasks go to a ``ProcessPoolExecutor`` in small batches so the per-task overhead
    stays low and a stop request is seen within one batch. ``progress(done, total)`` is called as results arrive.
    """
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}.")
    results: list[Any] = [None] * len(tasks)
    if workers == 1 or len(tasks) < 2:
        for index, task in enumerate(tasks):
            if should_stop is not None and should_stop():
                return results, True
            results[index] = function(task)
            if progress is not None:
                progress(index + 1, len(tasks))
        return results, False
    return _pooled(function, tasks, workers, results, progress, should_stop)


def _pooled(function, tasks, workers, results, progress, should_stop) -> tuple[list[Any], bool]:
    size = max(1, min(16, len(tasks) // (workers * 8)))
    starts = range(0, len(tasks), size)
    done = 0
    with ProcessPoolExecutor(max_workers=min(workers, len(starts)), mp_context=_start_context(function),
                             initializer=_quiet_worker) as pool:
        pending: dict[Future, int] = {pool.submit(_run_batch, function, tasks[start:start + size]): start
                                      for start in starts}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                start = pending.pop(future)
                batch = future.result()
                results[start:start + len(batch)] = batch
                done += len(batch)
                if progress is not None:
                    progress(done, len(tasks))
            if pending and should_stop is not None and should_stop():
                for future in pending:
                    future.cancel()
                return results, True
    return results, False


def _start_context(function: Callable[[Any], Any]):
    """How pool workers start: the platform default (a cheap fork on Linux) from a single-threaded program, but a
    forkserver when other threads run (the web UI), since a fork copies locks those threads may hold."""
    if threading.active_count() == 1 or "forkserver" not in multiprocessing.get_all_start_methods():
        return None
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([function.__module__])  # workers fork with it imported (once the server runs)
    return context


def _run_batch(function: Callable[[Any], Any], batch: Sequence[Any]) -> list[Any]:
    return [function(task) for task in batch]


def _quiet_worker() -> None:
    """Pool workers check image sizes themselves; Pillow's size warning would only repeat it."""
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)
