"""What the Captioning tab calls: captions with their lint findings, the keyword chart, bulk edits with undo.

No gradio here. One :class:`CaptionDesk` per app holds what is worth keeping between clicks (the token counter,
the auto-caption job); everything else is a plain function of the folder and the table's rows. Files are written
only through the caption engine (``studio.caption.edits`` and ``studio.data.write_metadata``): atomic, with the
previous version kept as ``metadata.csv.bak`` so one Undo puts it back.
"""
from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass, field
from pathlib import Path

from studio.caption.edits import EditError, EditResult, add_prefix, add_suffix, apply_template, find_replace
from studio.caption.lint import Finding, count_severities
from studio.caption.markup import join_tags, parse_structured
from studio.caption_job import AutoCaptionJob
from studio.data import CaptionRecord

SEVERITY_MARK = {"error": "✗", "warning": "⚠"}
PREVIEW_ROWS = 300
EDITS = {"template": apply_template, "prefix": add_prefix, "suffix": add_suffix, "replace": find_replace}
EDIT_NAMES = {"template": "The template", "prefix": "The prefix", "suffix": "The suffix", "replace": "Find/replace"}


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


def findings_text(findings: list[Finding]) -> str:
    if not findings:
        return "✓"
    return "\n".join(f"{SEVERITY_MARK.get(f.severity, '•')} {f.rule}: {f.message}" for f in findings)


def table_rows(value) -> list[tuple[str, str]]:
    """``(filename, prompt)`` of each row of the table's value (a DataFrame or lists); other columns ignored."""
    if hasattr(value, "values"):
        value = value.values.tolist()
    rows = []
    for row in value or []:
        cells = [("" if cell is None or cell != cell else str(cell)) for cell in list(row)[:2]] + ["", ""]  # NaN
        rows.append((cells[0], cells[1]))
    return rows


def records_of(rows: list[tuple[str, str]]) -> list[CaptionRecord]:
    """Rows as CaptionRecords numbered like the lines ``write_metadata`` gives them (header on line 1)."""
    return [CaptionRecord(name.strip(), prompt.strip(), index + 2) for index, (name, prompt) in enumerate(rows)
            if name.strip()]


def structured_preview(rows: list[tuple[str, str]]) -> str:
    """HTML: every caption with ``**core**`` tags bold and ``*mood*`` tags italic, the asterisks removed."""
    items = []
    for name, prompt in rows[:PREVIEW_ROWS]:
        parts = []
        for text, kind in parse_structured(prompt).segments:
            text = html.escape(text)
            parts.append(f'<strong class="core">{text}</strong>' if kind == "core" else
                         f'<em class="mood">{text}</em>' if kind == "mood" else text)
        items.append(f'<li><code>{html.escape(name)}</code> {"".join(parts) or "<i>(empty)</i>"}</li>')
    more = f"<p>… and {len(rows) - PREVIEW_ROWS} more</p>" if len(rows) > PREVIEW_ROWS else ""
    legend = ('<p class="caption-legend"><strong>bold</strong> = core tags (<code>**…**</code>), '
              '<em>italic</em> = mood (<code>*…*</code>); training sees the words without the marks.</p>')
    return f'<div class="caption-preview">{legend}<ul>{"".join(items)}</ul>{more}</div>'


def place_caption(rows: list[tuple[str, str]], index: int | None, caption: str, append: bool
                  ) -> list[tuple[str, str]]:
    """Put ``caption`` into row ``index`` (replacing its caption, or joined after it with ``append``)."""
    if not caption.strip():
        raise EditError("The four fields are empty; write at least the subject to build a caption.")
    if index is None or not 0 <= index < len(rows):
        raise EditError("No row is selected; click a caption in the table first, then insert.")
    name, old = rows[index]
    rows = list(rows)
    rows[index] = (name, join_tags(old, caption) if append else caption)
    return rows


def unsaved_rows(csv_path: Path, rows: list[tuple[str, str]]) -> list[str]:
    """File names whose row in the table differs from ``csv_path`` (when it is missing: the rows with a caption)."""
    from studio.data import read_metadata

    shown = [(r.filename, r.prompt) for r in records_of(rows)]
    if not csv_path.is_file():
        return [name for name, prompt in shown if prompt]
    saved = [(r.filename, r.prompt.strip()) for r in read_metadata(csv_path).records]
    if len(saved) != len(shown):
        return [name for name, _ in shown if name not in {n for n, _ in saved}] or ["(rows were added or removed)"]
    return [new[0] for old, new in zip(saved, shown) if old != new]


class CaptionDesk:
    """The Captioning tab's state for one app: a cached token counter and the auto-caption job."""

    def __init__(self, studio, counter=None, auto: AutoCaptionJob | None = None):
        self.studio = studio
        self.auto = auto or AutoCaptionJob()
        self._counter = counter  # a TokenCounter; None: the shipped SD 1.x tokenizer, loaded on first use

    def folder(self, text: str) -> Path:
        return self.studio.dataset_folder(text)

    def counter(self):
        """The SD 1.x CLIP tokenizer (shipped with the package), loaded once; a rough count if it is missing."""
        if self._counter is None:
            from studio.caption.tokens import load_token_counter

            self._counter = load_token_counter()
        return self._counter

    def open(self, text: str, required: str = "") -> CaptionView:
        """The captions of the folder named in ``text`` as saved; the images' names when metadata.csv is missing."""
        from studio.caption.blip import list_images
        from studio.caption.lint import lint_file
        from studio.data import read_metadata

        folder = self.folder(text)
        csv_path = folder / "metadata.csv"
        if not csv_path.is_file():
            rows = [(name, "") for name in list_images(folder)]
            view = self.check(text, rows, required)
            view.note = (f"{csv_path} is missing: write the captions in the table and Save, or auto-caption "
                         f"the {len(rows)} images below.")
            return view
        records = read_metadata(csv_path).records
        findings = lint_file(csv_path, self.counter(), required_keywords=_words(required))
        view = self._view(folder, records, findings)
        listed = {record.filename for record in records}
        missing = [name for name in list_images(folder) if name not in listed]
        if missing:
            shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
            view.note = (f"{len(records)} captions from {csv_path}; {len(missing)} image(s) have no row ({shown}): "
                         "auto-caption 'images without a caption' to add them.")
        return view

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
        """Write the table to metadata.csv (previous version in metadata.csv.bak) and lint what was written."""
        path = self.studio.save_captions(text, rows)
        return path, self.open(text, required)

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
        self.studio.writable(folder / "metadata.csv", "the captions file")
        _require_saved(folder / "metadata.csv", rows, "bulk edits change")
        result = edit_metadata(folder / "metadata.csv", lambda records: EDITS[kind](records, *args))
        return result, self.open(text, required)

    def undo(self, text: str, rows: list[tuple[str, str]], required: str = "") -> tuple[EditResult, CaptionView]:
        """Swap metadata.csv with metadata.csv.bak: the last edit or save is undone (again: redone)."""
        from studio.caption.edits import undo_last_edit

        csv_path = self.studio.writable(self.folder(text) / "metadata.csv", "the captions file")
        _require_saved(csv_path, rows, "Undo replaces")
        result = undo_last_edit(csv_path)
        return result, self.open(text, required)

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
                           replace_all: bool) -> None:
        """Start BLIP on the folder's images (see ``AutoCaptionJob.start``); refused while the table is unsaved."""
        from studio.app.confine import confine_model_source

        folder = self.folder(text)
        self.studio.writable(folder / "metadata.csv", "the captions file")
        _require_saved(folder / "metadata.csv", rows, "auto-captioning rewrites")
        model = confine_model_source(model, self.studio.access, "the caption model")
        self.auto.start(folder, model, int(batch_size or 0), replace_all)

    def _view(self, folder: Path, records: list[CaptionRecord], findings: list[Finding]) -> CaptionView:
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


def _require_saved(csv_path: Path, rows: list[tuple[str, str]], action: str) -> None:
    changed = unsaved_rows(csv_path, rows)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise EditError(f"The table has unsaved changes ({shown}); {action} {csv_path.name} on disk, so click Save "
                        "first (or Load to drop the changes), then try again.")


def _words(text: str) -> list[str]:
    return [word.strip() for word in (text or "").split(",") if word.strip()]
