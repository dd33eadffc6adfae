"""The tabs' one error path, without a browser: a handler's exception becomes the tab's error text; a bug's
traceback goes to the studio's debug log, whose file the text names; gradio still sees the handler's parameters."""
from __future__ import annotations

import inspect
from functools import partial
from types import SimpleNamespace

import gradio as gr

from studio.app.errors import DebugLog
from studio.ui import caption_tab, dataset_review
from studio.ui.common import guarded


def _handlers(log):
    owner = SimpleNamespace(debug_log=DebugLog(log))

    @guarded(lambda message: ("failed", message))
    def handler(owner, error=None):
        if error:
            raise error
        return "done", ""

    @guarded(lambda message: ("failed", message))
    def stream(owner, error=None):
        yield "working", ""
        if error:
            raise error
        yield "done", ""

    return owner, handler, stream


def test_the_users_mistake_shows_its_sentence_and_a_bug_also_where_its_traceback_is(tmp_path):
    log = tmp_path / "logs" / "studio-errors.log"
    owner, handler, _ = _handlers(log)
    assert handler(owner) == ("done", "")
    assert handler(owner, ValueError("type the path of a folder")) == ("failed", "✗ type the path of a folder")
    assert not log.exists()
    assert handler(owner, KeyError("rows")) == ("failed", f"✗ 'rows' (the technical details are in {log})")
    kept = log.read_text(encoding="utf-8")
    assert "a page action failed: 'rows'" in kept and "Traceback" in kept


def test_a_streamed_handler_ends_with_the_error_text(tmp_path):
    owner, _, stream = _handlers(tmp_path / "errors.log")
    assert list(stream(owner)) == [("working", ""), ("done", "")]
    assert list(stream(owner, OSError("disk full"))) == [("working", ""), ("failed", "✗ disk full")]
    assert inspect.isgeneratorfunction(stream)


def test_gradio_sees_the_parameters_of_the_guarded_tab_handlers():
    assert isinstance(inspect.signature(partial(dataset_review.scan, None)).parameters["progress"].default,
                      gr.Progress)
    assert list(inspect.signature(partial(caption_tab.bulk_edit, None, "prefix")).parameters)[:3] == [
        "text", "value", "required"]
    assert inspect.isgeneratorfunction(partial(caption_tab.auto_caption, None))
