"""Small helpers shared by the tabs: the page's error text, and :func:`guarded`, which turns what an event handler
raises into that text."""
from __future__ import annotations

import functools
import inspect
from typing import Any, Callable

from studio.app.errors import is_user_error


def error_text(error: BaseException | str) -> str:
    """A readable one-block message for the page (config and dataset errors list every problem)."""
    text = str(error) or type(error).__name__
    return f"✗ {text}"


def failure_text(error: BaseException, debug_log=None) -> str:
    """The page's text for ``error``, raised by a handler: the message alone when it is the user's to fix
    (:func:`studio.app.errors.is_user_error`); for anything else (a bug, a crash in a library) the message too,
    and the traceback goes to ``debug_log`` (a ``DebugLog``), whose file the text names."""
    text = error_text(error)
    if is_user_error(error) or debug_log is None:
        return text
    kept = debug_log.keep("a page action", str(error) or type(error).__name__)
    return f"{text} (the technical details are in {kept})" if kept else text


def guarded(failure: Callable[[str], Any]):
    """Decorator for a tab's event handler whose first argument is the studio or one of its parts (whatever has a
    ``debug_log``): an exception the handler raises becomes ``failure(text)``, the outputs the page shows instead,
    with ``text`` from :func:`failure_text`. A generator handler (a streamed event) yields that as its last output.

    gradio reads the handler's parameters (``gr.Progress``, ``gr.SelectData``) through ``functools.wraps``.
    """

    def decorate(handler):
        if inspect.isgeneratorfunction(handler):
            @functools.wraps(handler)
            def stream(owner, *args, **kwargs):
                try:
                    yield from handler(owner, *args, **kwargs)
                except Exception as error:  # shown on the page, never a stack trace
                    yield failure(failure_text(error, getattr(owner, "debug_log", None)))
            return stream

        @functools.wraps(handler)
        def run(owner, *args, **kwargs):
            try:
                return handler(owner, *args, **kwargs)
            except Exception as error:  # shown on the page, never a stack trace
                return failure(failure_text(error, getattr(owner, "debug_log", None)))
        return run

    return decorate


def parse_numbers(text: str, kind=float, name: str = "values") -> list:
    """``"0.4, 0.5 0.6"`` → ``[0.4, 0.5, 0.6]``; a clear error naming the bad item."""
    items = [t for t in (text or "").replace(",", " ").split() if t]
    values = []
    for item in items:
        try:
            values.append(kind(item))
        except ValueError:
            raise ValueError(f"{name}: {item!r} is not a number; write them separated by commas") from None
    if not values:
        raise ValueError(f"{name}: write at least one number")
    return values
