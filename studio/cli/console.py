"""What the verbs share on the terminal: the error line, a counting progress bar and Ctrl-C as a clean stop."""
from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def print_error(error: BaseException | str) -> None:
    """One readable message on stderr (config and dataset errors already list every problem in their text)."""
    print(f"error: {error}", file=sys.stderr)


@contextmanager
def graceful_stop(notice: str, on_stop: Callable[[], None] | None = None) -> Iterator[threading.Event]:
    """Ctrl-C as a request: the first one prints ``notice``, sets the yielded event (which the work checks between
    its steps to stop and finish cleanly) and calls ``on_stop``; a second one raises ``KeyboardInterrupt``. The
    SIGINT handler that was there before is put back on exit. Works in the main thread only (a limit of
    ``signal.signal``)."""
    stop = threading.Event()

    def request_stop(_signum, _frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        print(f"\n{notice} (Ctrl-C again to abort)", file=sys.stderr)
        stop.set()
        if on_stop is not None:
            on_stop()

    previous = signal.signal(signal.SIGINT, request_stop)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


class CountBar:
    """A tqdm bar on stderr as a ``progress(done, total)`` callback; nothing at all with ``quiet``.

    With ``total`` the bar shows from the start (at 0); without it, it opens on the first call. Use it as a
    context manager, or call ``close()``.
    """

    def __init__(self, unit: str, quiet: bool, total: int | None = None, leave: bool = True):
        self.unit, self.quiet, self.leave = unit, quiet, leave
        self.bar = None
        if total is not None and not quiet:
            self._open(total)

    def _open(self, total: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit=self.unit, dynamic_ncols=True, file=sys.stderr, leave=self.leave)

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            self._open(total)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def __enter__(self) -> CountBar:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()
