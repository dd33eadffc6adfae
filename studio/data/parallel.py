"""Run one top-level function over many files, inline or in a process pool, with progress and a stop request."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import threading
import warnings
from contextlib import contextmanager
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from typing import Any, Callable, Iterator, Sequence

from PIL import Image

Progress = Callable[[int, int], None]
# Freed image memory blocks Pillow keeps for the next picture. Without them (Pillow's default is none) every picture's
# pixels are mapped, faulted in page by page and unmapped again: about a third of the scan's CPU time on 768 px JPEGs.
# A block holds one image (16 MiB at the most), so this keeps a few tens of MiB per process in the usual case.
IMAGE_BLOCKS = 16
_MEMORY_LOCK = threading.Lock()
_memory_users: list = []  # while threads run inline: the setting found first, then one entry per thread


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
        with reused_image_memory():
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
                             initializer=_setup_worker) as pool:
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


@contextmanager
def reused_image_memory(blocks: int = IMAGE_BLOCKS) -> Iterator[None]:
    """Let Pillow keep ``blocks`` freed memory blocks for reuse while the block runs (see :data:`IMAGE_BLOCKS`).

    Several threads may be inside at once (web page users); the setting is restored when the last one leaves.
    """
    with _MEMORY_LOCK:
        if not _memory_users:
            _memory_users.append(Image.core.get_blocks_max())
            Image.core.set_blocks_max(max(_memory_users[0], blocks))
        _memory_users.append(None)
    try:
        yield
    finally:
        with _MEMORY_LOCK:
            _memory_users.pop()
            if len(_memory_users) == 1:
                Image.core.set_blocks_max(_memory_users.pop())  # gives the kept blocks back


def _setup_worker() -> None:
    """Pool workers reuse freed memory, and check image sizes themselves (Pillow's size warning would repeat it)."""
    Image.core.set_blocks_max(max(Image.core.get_blocks_max(), IMAGE_BLOCKS))
    _keep_freed_memory()
    warnings.simplefilter("ignore", Image.DecompressionBombWarning)


def _keep_freed_memory() -> None:
    """Let glibc keep freed memory of up to 64 MiB for reuse instead of unmapping it at once.

    A fresh process hands every freed block over 128 KiB straight back to the system (until a large free raises
    that bar), so each picture's decode buffers and arrays are mapped and faulted in again: in a new worker about a
    third of the CPU time on 768 px JPEGs, spent in the kernel. Where the C library has no ``mallopt`` (not glibc),
    nothing changes.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: blocks up to this size come from the heap
    mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: free heap kept before it is given back
