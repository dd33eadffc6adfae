"""The Captioning tab's table as plain data: rows read from the page, lint marks beside them, the structured
preview, the prompt helper's placement, and which rows differ from the saved metadata.csv."""
from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from studio.caption.edits import EditError
from studio.caption.lint import Finding
from studio.caption.markup import join_tags, parse_structured
from studio.data import CaptionRecord

if TYPE_CHECKING:
    import pandas

SEVERITY_MARK = {"error": "✗", "warning": "⚠"}
PREVIEW_ROWS = 300


def findings_text(findings: list[Finding]) -> str:
    if not findings:
        return "✓"
    return "\n".join(f"{SEVERITY_MARK.get(f.severity, '•')} {f.rule}: {f.message}" for f in findings)


def table_rows(value: pandas.DataFrame | Sequence[Sequence[object]] | None) -> list[tuple[str, str]]:
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


def require_saved(csv_path: Path, rows: list[tuple[str, str]], action: str) -> None:
    """EditError when the table differs from ``csv_path``: ``action`` (what the button does to the file) would
    lose the changes."""
    changed = unsaved_rows(csv_path, rows)
    if changed:
        shown = ", ".join(changed[:5]) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
        raise EditError(f"The table has unsaved changes ({shown}); {action} {csv_path.name} on disk, so click Save "
                        "first (or Load to drop the changes), then try again.")
