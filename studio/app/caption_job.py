"""Auto-captioning for the Captioning tab: BLIP in a background job, progress, cancel between batches.

One job at a time per app. The page polls :meth:`AutoCaptionJob.state`; Cancel sets the event that
``caption_folder`` checks before every batch, and what was captioned so far is still written. The result is merged
into metadata.csv through ``write_metadata`` (atomic, previous version kept as ``metadata.csv.bak``), inside the
caption history when one is given (so Undo takes it back). Pictures named in ``leave_out`` (unreadable, or dropped
in the Dataset tab) are not captioned.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, replace
from pathlib import Path

from studio.app.background import BackgroundJob
from studio.app.errors import DebugLog, JobBusy

ACTIVE = ("loading", "captioning", "stopping")


class AutoCaptionBusy(JobBusy):
    """A second auto-caption while one is running."""


@dataclass(frozen=True)
class AutoCaptionState:
    """What the page shows: idle, loading, captioning, stopping, finished, stopped or failed; images done/total."""

    status: str = "idle"
    done: int = 0
    total: int = 0
    folder: str = ""
    message: str = ""
    started_at: float = 0.0

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def line(self) -> str:
        if self.status == "idle":
            return "No auto-captioning yet."
        counted = f"{self.done}/{self.total} images" if self.total else ""
        parts = [self.status, counted, self.message] if self.active else [self.message or self.status]
        return " · ".join(part for part in parts if part)


class AutoCaptionJob(BackgroundJob[AutoCaptionState]):
    """Caption a folder's images in a daemon thread; ``start``/``cancel``/``state`` are safe from any thread.
    ``loader``: ``load_captioner`` (injectable for tests of the job itself); ``debug_log``: where the tracebacks of
    failures that are not the user's to fix go."""

    thread_name = "auto-caption"
    what = "auto-captioning"
    stopping = {"status": "stopping", "message": "stopping after this batch …"}

    def __init__(self, loader=None, debug_log: DebugLog | str | Path | None = None):
        super().__init__(AutoCaptionState(), debug_log)
        self._loader = loader
        self._loaded: tuple[str, object] | None = None  # (model text, Captioner): the last model stays loaded

    def start(self, folder: Path, model: str, batch_size: int, replace_all: bool = False, leave_out=(),
              history=None) -> None:
        """Caption ``folder``'s images that have no caption (all with ``replace_all``) into its metadata.csv, except
        the relative paths in ``leave_out``; ``history`` (a ``CaptionHistory``) records the write for Undo."""
        if batch_size < 1:
            raise ValueError(f"The batch size must be 1 or more, not {batch_size}; 8 suits most GPUs, 1–2 the CPU.")
        first = AutoCaptionState("loading", folder=str(folder), message="checking the images …", started_at=time.time())
        self._launch(first, Path(folder), model, batch_size, replace_all, frozenset(leave_out), history)

    def cancel(self) -> bool:
        """Stop after the current batch (what is captioned is written). False when nothing runs."""
        return self._request_stop()

    def wait(self, timeout: float | None = None) -> AutoCaptionState:
        self.join(timeout)
        return self.state()

    def _busy(self, state: AutoCaptionState) -> AutoCaptionBusy:
        return AutoCaptionBusy(f"Auto-captioning of {state.folder} is already {state.status} ({state.done}/"
                               f"{state.total}); wait for it or Cancel it first.")

    def _work(self, folder: Path, model: str, batch_size: int, replace_all: bool, leave_out: frozenset,
              history) -> None:
        from studio.caption.blip import caption_folder

        try:
            todo, skip = _plan(folder, replace_all)
            todo = [name for name in todo if name not in leave_out]
            if not todo:
                self._update(status="finished", message=f"Every picture in {folder} already has a caption (or is "
                             "left out as unreadable or dropped); choose 'all images' to caption them again.")
                return
            self._update(total=len(todo), message=f"loading {model.strip() or 'the default BLIP model'} …")
            captioner = self._captioner(model)
            self._update(status="captioning", message=f"{captioner.source} on {captioner.device}")
            records = caption_folder(folder, captioner, batch_size=batch_size, skip=skip | leave_out,
                                     progress=lambda done, _total: self._update(status="captioning", done=done),
                                     should_stop=self._stop_requested)
            self._finish(folder, records, len(todo), history)
        except Exception as error:  # the model, the folder or metadata.csv: the message says what to do; a bug or
            # a crash in the model: one line on the page, the traceback in the debug log
            self._update(status="failed", message=self._failure_line(error))

    def _captioner(self, model: str):
        key = model.strip()
        if self._loaded is None or self._loaded[0] != key:
            if self._loader is None:
                from studio.caption.blip import load_captioner

                self._loader = load_captioner
            self._loaded = None  # free the previous model before loading another
            self._loaded = (key, self._loader(key))
        return self._loaded[1]

    def _finish(self, folder: Path, records, wanted: int, history) -> None:
        csv_path = folder / "metadata.csv"
        if not records:
            self._update(status="stopped",
                         message=f"Stopped before any image was captioned; {csv_path} was not changed.")
            return
        with history.recording() if history is not None else contextlib.nullcontext():
            _merge_into(csv_path, records)
        backup = csv_path.with_name(csv_path.name + ".bak")
        kept = f" (the previous version is {backup.name}; Undo puts it back)" if backup.is_file() else ""
        if len(records) < wanted:
            self._update(status="stopped", done=len(records), message=f"Stopped after {len(records)} of {wanted} "
                         f"images; their captions are in {csv_path}{kept}. Auto-caption 'images without a caption' "
                         "to do the rest.")
        else:
            self._update(status="finished", done=len(records),
                         message=f"Captioned {len(records)} image(s) into {csv_path}{kept}.")


def _plan(folder: Path, replace_all: bool) -> tuple[list[str], set[str]]:
    """The images to caption and the ones to skip (those that have a caption, unless ``replace_all``)."""
    from studio.caption.blip import list_images
    from studio.caption.edits import EditError, check_rewritable
    from studio.data import IMAGE_EXTENSIONS, read_metadata

    names = list_images(folder)
    if not names:
        raise EditError(f"{folder} has no images ({' '.join(sorted(IMAGE_EXTENSIONS))}); put the pictures in it "
                        "first.")
    captioned: set[str] = set()
    csv_path = folder / "metadata.csv"
    if csv_path.is_file():
        table = read_metadata(csv_path)
        check_rewritable(csv_path, table)  # refuse now, not after captioning, a file whose columns would be lost
        captioned = {record.filename for record in table.records if record.prompt.strip()}
    skip = set() if replace_all else captioned & set(names)
    return [name for name in names if name not in skip], skip


def _merge_into(csv_path: Path, records) -> Path:
    """New captions replace their rows' captions (file order kept); images without a row are appended."""
    from studio.data import CaptionRecord, read_metadata, write_metadata

    new = {record.filename: record.prompt for record in records}
    current = read_metadata(csv_path).records if csv_path.is_file() else []
    merged = [replace(record, prompt=new.pop(record.filename)) if record.filename in new else record
              for record in current]
    merged += [CaptionRecord(name, prompt) for name, prompt in new.items()]
    return write_metadata(csv_path, merged)
