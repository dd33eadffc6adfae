"""What the Captioning tab calls: captions with their lint findings, the keyword chart, bulk edits with Undo and Redo.

No gradio here. One :class:`CaptionDesk` per app (the studio's ``captions``) holds what is worth keeping between clicks (the token counter,
the auto-caption job); everything else is a plain function of the folder and the table's rows. Files are written
only through the caption engine (``studio.caption.edits`` and ``studio.data.write_metadata``): atomic, with the
previous version kept as ``metadata.csv.bak``, and every change recorded in the dataset's caption history in the
workspace (:class:`studio.caption.history.CaptionHistory`), so Undo walks back step by step and Redo forward.

A demo dataset that ships with the studio stays read-only: the first change to its captions copies it (pictures and
metadata.csv) to ``<workspace>/datasets/<name>``, makes the change there and says so; the tab then works on the
copy. Pictures that cannot be read, or that the Dataset tab dropped, are left out of captioning.
"""
from __future__ import annotations

import hashlib
import html
import threading
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from studio.app.caption_job import AutoCaptionJob
from studio.app.datasets import is_shipped
from studio.app.errors import StudioError
from studio.caption.blip import DEFAULT_BLIP, list_images, load_captioner
from studio.caption.edits import EditError, EditResult, add_prefix, add_suffix, apply_template, find_replace
from studio.caption.history import CaptionHistory
from studio.caption.formula import FORMULA_FIELDS, build_caption
from studio.caption.lint import Finding, count_severities
from studio.caption.pictures import PictureCheck, left_out_note
from studio.caption.table import (SEVERITY_MARK, findings_text, place_caption, records_of, require_saved,
                                  structured_preview, table_rows, unsaved_rows)
from studio.data import CaptionRecord

EDITS = {"template": apply_template, "prefix": add_prefix, "suffix": add_suffix, "replace": find_replace}
EDIT_NAMES = {"template": "The template", "prefix": "The prefix", "suffix": "The suffix", "replace": "Find/replace"}
MODEL_FIELD = "the BLIP model field under 'Auto-caption with BLIP'"
# what the Captioning tab uses from the caption engine besides the desk
__all__ = ["DEFAULT_BLIP", "FORMULA_FIELDS", "CaptionDesk", "CaptionView", "build_caption", "findings_text",
           "place_caption", "records_of", "structured_preview", "table_rows", "unsaved_rows"]


@dataclass
class CaptionView:
    """A dataset's captions as the tab shows them: the rows, the findings beside each row, and the chart."""

    folder: Path
    rows: list[tuple[str, str]]
    findings: list[list[Finding]]  # one list per row
    file_findings: list[Finding] = field(default_factory=list)  # about metadata.csv itself, not one row
    chart: Path | None = None
    token_source: str = ""
    note: str = ""
    copied: str = ""  # when a shipped demo was copied to the workspace for this change: where, in one sentence

    @property
    def csv_path(self) -> Path:
        return self.folder / "metadata.csv"

    def table(self) -> list[list[str]]:
        """``[filename, prompt, lint]`` per row; lint is one line per finding, or ✓."""
        return [[name, prompt, findings_text(found)] for (name, prompt), found in zip(self.rows, self.findings)]

    def summary(self) -> str:
        """Markdown: how many errors and warnings, what counted the tokens, and the findings about the file."""
        counts = count_severities([f for found in self.findings for f in found] + self.file_findings)
        flagged = sum(1 for found in self.findings if found)
        lines = [f"**Lint:** {counts['error']} error(s), {counts['warning']} warning(s) in {flagged} of "
                 f"{len(self.rows)} captions · tokens counted with {self.token_source or 'a rough count'}"]
        lines += [f"- {SEVERITY_MARK.get(f.severity, '•')} {html.escape(str(f))}" for f in self.file_findings[:20]]
        return "\n".join(lines)


class CaptionDesk:
    """The Captioning tab's state for one app: a cached token counter, the auto-caption job, and the header checks
    of the pictures (:class:`studio.caption.pictures.PictureCheck`)."""

    def __init__(self, studio, counter=None, auto: AutoCaptionJob | None = None):
        self.studio = studio
        self.auto = auto or AutoCaptionJob(loader=partial(load_captioner, model_field=MODEL_FIELD),
                                           debug_log=studio.debug_log)
        self._counter = counter  # a TokenCounter; None: the shipped SD 1.x tokenizer, loaded on first use
        self.pictures = PictureCheck()
        self._lock = threading.Lock()  # one demo copy at a time

    @property
    def debug_log(self):
        """The studio's debug log (where the tracebacks of failures that are not the user's to fix go)."""
        return self.studio.debug_log

    def folder(self, text: str) -> Path:
        return self.studio.datasets.folder(text)

    def counter(self):
        """The SD 1.x CLIP tokenizer (shipped with the package), loaded once; a rough count if it is missing."""
        if self._counter is None:
            from studio.caption.tokens import load_token_counter

            self._counter = load_token_counter()
        return self._counter

    def history(self, folder: Path) -> CaptionHistory:
        """The Undo/Redo versions of ``folder``'s metadata.csv, kept in the workspace."""
        return CaptionHistory(folder / "metadata.csv", self._workspace_file(folder, "history", ""))

    def open(self, text: str, required: str = "") -> CaptionView:
        """The captions of the folder named in ``text`` as saved; when metadata.csv is missing, a row for each
        picture that is not left out (unreadable, or dropped in the Dataset tab)."""
        from studio.caption.lint import lint_file
        from studio.data import read_metadata

        folder = self.folder(text)
        csv_path = folder / "metadata.csv"
        names = list_images(folder)
        left_out = self.left_out(folder, names)
        if not csv_path.is_file():
            rows = [(name, "") for name in names if name not in left_out]
            view = self.check(text, rows, required)
            view.note = (f"{csv_path} is missing: write the captions in the table and Save, or auto-caption "
                         f"the {len(rows)} pictures below." + left_out_note(left_out))
            return view
        records = read_metadata(csv_path).records
        findings = lint_file(csv_path, self.counter(), required_keywords=_words(required))
        view = self._view(folder, records, findings)
        listed = {record.filename for record in records}
        missing = [name for name in names if name not in listed and name not in left_out]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            view.note = (f"{len(records)} captions from {csv_path}; {len(missing)} image(s) have no row ({shown}): "
                         "auto-caption 'images without a caption' to add them.")
        return view

    def left_out(self, folder: Path, names: list[str]) -> dict[str, tuple[str, str]]:
        """``relpath -> (why, severity)`` for the pictures among ``names`` that are not captioned (unreadable, or
        dropped in the Dataset tab; :class:`studio.caption.pictures.PictureCheck`)."""
        try:
            review = self.studio.datasets.load_review(str(folder))
            return self.pictures.left_out(folder, names, review.report, review.report_path.stat().st_mtime)
        except (StudioError, OSError):  # not scanned yet
            return self.pictures.left_out(folder, names)

    def check(self, text: str, rows: list[tuple[str, str]], required: str = "") -> CaptionView:
        """Lint the table's rows as they are on the page (saved or not)."""
        from studio.caption.lint import lint_captions

        records = records_of(rows)
        findings = lint_captions(records, self.counter(), required_keywords=_words(required))
        view = self._view(self.folder(text), records, findings)
        by_line = {record.line: found for record, found in zip(records, view.findings)}
        view.rows = list(rows)
        view.findings = [by_line.get(index + 2, []) for index in range(len(rows))]
        return view

    def save(self, text: str, rows: list[tuple[str, str]], required: str = "") -> tuple[Path, CaptionView]:
        """Write the table to metadata.csv (previous version in metadata.csv.bak, and an Undo step) and lint what
        was written; a shipped demo is copied to the workspace first (``view.copied`` says where)."""
        folder, copied = self._writable_folder(text)
        with self.history(folder).recording():
            path = self.studio.datasets.save_captions(str(folder), rows)
        return path, self._reopened(folder, required, copied)

    def edit(self, text: str, rows: list[tuple[str, str]], kind: str, *args, required: str = ""
             ) -> tuple[EditResult, CaptionView]:
        """Apply a bulk edit (``template``, ``prefix``, ``suffix`` or ``replace``) to the saved metadata.csv."""
        from studio.caption.edits import edit_metadata

        if kind not in EDITS:
            raise EditError(f"Unknown edit {kind!r}; use one of {', '.join(EDITS)}.")
        if kind != "replace" and not str(args[0] if args else "").strip():
            raise EditError(f"{EDIT_NAMES[kind]} is empty; type it in its field first.")
        folder = self.folder(text)
        if not (folder / "metadata.csv").is_file():
            raise EditError(f"{folder / 'metadata.csv'} does not exist yet; click Save (or auto-caption) first, "
                            "then edit.")
        require_saved(folder / "metadata.csv", rows, "bulk edits change")
        folder, copied = self._writable_folder(text)
        with self.history(folder).recording():
            result = edit_metadata(folder / "metadata.csv", lambda records: EDITS[kind](records, *args))
        return result, self._reopened(folder, required, copied)

    def undo(self, text: str, rows: list[tuple[str, str]], required: str = "") -> tuple[EditResult, CaptionView]:
        """Put back the version of metadata.csv before the last change; again: one more step back."""
        return self._step(text, rows, required, "undo")

    def redo(self, text: str, rows: list[tuple[str, str]], required: str = "") -> tuple[EditResult, CaptionView]:
        """Bring back the version the last Undo replaced."""
        return self._step(text, rows, required, "redo")

    def export_spreadsheet(self, text: str, rows: list[tuple[str, str]]) -> Path:
        """The table as a CSV for spreadsheet programs, in the workspace: a cell that starts with ``=``, ``+``,
        ``-``, ``@``, a tab or a carriage return gets a leading ``'`` so it is never run as a formula."""
        from studio.data.metadata import spreadsheet_csv
        from studio.util.fs import atomic_write_text

        folder = self.folder(text)
        records = records_of(rows)
        if not records:
            raise EditError("The table is empty: load a dataset's captions first.")
        return atomic_write_text(self._workspace_file(folder, "spreadsheet", ".csv"), spreadsheet_csv(records))

    def start_auto_caption(self, text: str, rows: list[tuple[str, str]], model: str, batch_size: int,
                           replace_all: bool) -> Path:
        """Start BLIP on the folder's pictures (see ``AutoCaptionJob.start``), leaving out unreadable and dropped
        ones; refused while the table is unsaved. Returns the folder it captions (a copy for a shipped demo)."""
        from studio.app.confine import confine_model_source

        folder = self.folder(text)
        require_saved(folder / "metadata.csv", rows, "auto-captioning rewrites")
        model = confine_model_source(model, self.studio.access, "the caption model")
        if int(batch_size or 0) < 1:  # before a demo is copied for nothing
            raise ValueError(f"The batch size must be 1 or more, not {batch_size}; 8 suits most GPUs, 1–2 the CPU.")
        folder, _copied = self._writable_folder(text)
        self.auto.start(folder, model, int(batch_size), replace_all, self.left_out(folder, list_images(folder)),
                        self.history(folder))
        return folder

    def _step(self, text: str, rows, required: str, direction: str) -> tuple[EditResult, CaptionView]:
        folder = self.folder(text)
        history = self.history(folder)
        if not is_shipped(folder):  # a shipped demo never changes, so it has no step: "Nothing to undo" says so
            self.studio.writable(folder / "metadata.csv", "the captions file")
        if history.steps()[0 if direction == "undo" else 1]:
            require_saved(folder / "metadata.csv", rows, f"{direction.capitalize()} replaces")
        result = history.undo() if direction == "undo" else history.redo()
        return result, self.open(str(folder), required)

    def _writable_folder(self, text: str) -> tuple[Path, str]:
        """The folder whose metadata.csv a change goes to, and a sentence when it is a new copy of a shipped demo."""
        from studio.data.copy import copy_dataset

        folder = self.folder(text)
        if not is_shipped(folder):
            self.studio.writable(folder / "metadata.csv", "the captions file")
            return folder, ""
        with self._lock:
            copy = copy_dataset(folder, self.studio.writable(self.studio.workspace / "datasets", "the datasets folder"))
        return copy, (f"{folder.name} ships with the studio and stays read-only, so it was copied (pictures and "
                      f"captions) to {copy}; the change is saved there, and this tab now works on the copy.")

    def _reopened(self, folder: Path, required: str, copied: str) -> CaptionView:
        view = self.open(str(folder), required)
        view.copied = copied
        return view

    def _view(self, folder: Path, records: list[CaptionRecord], findings: list[Finding]) -> CaptionView:
        left_out = self.left_out(folder, [record.filename for record in records])
        findings = findings + [Finding(record.filename, record.line, "left_out", left_out[name][1], left_out[name][0])
                               for record in records if (name := record.filename) in left_out]
        index = {record.line: i for i, record in enumerate(records)}
        per_row: list[list[Finding]] = [[] for _ in records]
        general = []
        for finding in findings:
            if finding.line in index:  # csv problems of one row ("listed again") go beside it too
                per_row[index[finding.line]].append(finding)
            else:
                general.append(finding)
        rows = [(record.filename, record.prompt) for record in records]
        chart = self._chart(folder, records)
        return CaptionView(folder, rows, per_row, general, chart, self.counter().source)

    def _chart(self, folder: Path, records: list[CaptionRecord]) -> Path:
        from studio.caption.chart import keyword_chart

        return keyword_chart(records, self._workspace_file(folder, "keywords", ".png"))

    def _workspace_file(self, folder: Path, kind: str, suffix: str) -> Path:
        """``<workspace>/captions/<kind>-<folder name>-<digest of its path><suffix>``: one file per dataset."""
        key = hashlib.sha1(str(folder).encode("utf-8")).hexdigest()[:10]
        return self.studio.workspace / "captions" / f"{kind}-{folder.name}-{key}{suffix}"


def _words(text: str) -> list[str]:
    return [word.strip() for word in (text or "").split(",") if word.strip()]
