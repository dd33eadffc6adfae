"""How ``train`` shows its events (a progress bar, or ``--json-events`` lines) and when it stops (``--stop-file``)."""
from __future__ import annotations

import sys
import threading
from pathlib import Path


class _ProgressBar:
    """tqdm progress for training events, with loss and learning rate in the postfix."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def __call__(self, event) -> None:
        if self.quiet:
            if event.kind in ("warning", "checkpoint", "done"):
                print(f"[{event.kind}] {event.message or event.path}", file=sys.stderr)
            return
        from tqdm import tqdm

        if event.kind == "start":
            self.bar = tqdm(total=event.total_steps, initial=event.step, unit="step", dynamic_ncols=True)
        elif event.kind == "step" and self.bar is not None:
            self.bar.update(event.step - self.bar.n)
            self.bar.set_postfix(loss=f"{event.loss:.4f}", lr=f"{event.lr:.2e}", epoch=event.epoch)
        elif event.kind in ("warning", "checkpoint", "log"):
            text = f"[{event.kind}] {event.message or event.path}"
            (self.bar.write(text, file=sys.stderr) if self.bar is not None else print(text, file=sys.stderr))
        elif event.kind == "done" and self.bar is not None:
            self.bar.close()


def _print_json_event(event) -> None:
    """``--json-events``: one JSON line per event on stdout, flushed (the studio reads them from a pipe)."""
    import json

    print(json.dumps(event.to_dict()), flush=True)


def _stop_check(stop: threading.Event, stop_file: str | None):
    """``should_stop``: Ctrl-C, or (``--stop-file``) the file appeared."""
    if not stop_file:
        return stop.is_set
    path = Path(stop_file)
    return lambda: stop.is_set() or path.exists()
