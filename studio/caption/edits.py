"""Bulk caption edits: template, trigger prefix, style suffix, find/replace, one row.

The edits are pure functions from a list of :class:`CaptionRecord` to a new list. :func:`edit_metadata` applies one
to a metadata.csv: it writes atomically and keeps the previous content in ``metadata.csv.bak``. Undo and Redo over
any number of steps are :class:`studio.caption.history.CaptionHistory`.
"""
from __future__ import annotations

import csv
import io
import os
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

import regex as regex_engine

from studio.caption.markup import join_tags, split_tags, strip_markup
from studio.data import CaptionRecord, read_metadata, write_metadata
from studio.data.metadata import MAX_METADATA_BYTES
from studio.util.reading import FileRefused, read_bytes_capped

if TYPE_CHECKING:
    from studio.data.metadata import CaptionTable

CAPTION_FIELD = "{caption}"
MAX_PATTERN_CHARS = 500
REGEX_SECONDS = 2.0  # for one find/replace over all captions together
_SPACES = re.compile(r"[ \t]+")


class EditError(ValueError):
    """An edit that cannot be applied as asked; nothing was changed."""


@dataclass(frozen=True)
class EditResult:
    """What an edit did to a metadata.csv: how many rows changed, which images, and where the backup is."""

    path: Path
    changed_rows: int
    changed_files: tuple[str, ...]
    backup: Path | None
    records: tuple[CaptionRecord, ...] = ()


def apply_template(records: Iterable[CaptionRecord], template: str) -> list[CaptionRecord]:
    """Put each caption into ``template`` at ``{caption}`` (e.g. ``**{caption}**, high quality, detailed``).

    A caption that already has the template's text around it is left alone, so applying twice changes nothing.
    """
    if template.count(CAPTION_FIELD) != 1:
        raise EditError(f"The template {template!r} must contain {CAPTION_FIELD} exactly once, where the caption goes "
                        "(for example  **{caption}**, high quality, detailed).")
    before, after = template.split(CAPTION_FIELD)

    def wrap(prompt: str) -> str:
        text = prompt.strip()
        if text and text.startswith(before) and text.endswith(after) and len(text) >= len(before) + len(after):
            return prompt
        return before + text + after if text else prompt

    return _map(records, wrap)


def add_prefix(records: Iterable[CaptionRecord], prefix: str) -> list[CaptionRecord]:
    """Put ``prefix`` (a trigger word such as ``zq style``) in front, unless the caption already starts with it."""
    tags = [tag.lower() for tag in split_tags(strip_markup(prefix))]
    if not tags:
        return list(records)

    def add(prompt: str) -> str:
        present = [tag.lower() for tag in split_tags(strip_markup(prompt))][:len(tags)] == tags
        return prompt if present else join_tags(prefix, prompt)

    return _map(records, add)


def add_suffix(records: Iterable[CaptionRecord], suffix: str) -> list[CaptionRecord]:
    """Put ``suffix`` (a style tag) at the end, unless the caption already ends with it."""
    tags = [tag.lower() for tag in split_tags(strip_markup(suffix))]
    if not tags:
        return list(records)

    def add(prompt: str) -> str:
        present = [tag.lower() for tag in split_tags(strip_markup(prompt))][-len(tags):] == tags
        return prompt if present else join_tags(prompt, suffix)

    return _map(records, add)


def find_replace(records: Iterable[CaptionRecord], pattern: str, repl: str, regex: bool = False,
                 ignore_case: bool = False) -> list[CaptionRecord]:
    """Replace ``pattern`` by ``repl`` in every caption (plain text, or a Python regular expression with ``\\1``).

    Captions that change are tidied: doubled spaces and empty tags (``a, , b``) left by a deletion go away. A
    regular expression may be at most ``MAX_PATTERN_CHARS`` long, and the whole edit may run ``REGEX_SECONDS``:
    the ``regex`` package stops a pattern that backtracks without end (``(a|a)+$``), which ``re`` cannot.
    """
    if not pattern:
        raise EditError("Find/replace needs something to find; type the text (or regular expression) to replace.")
    if regex and len(pattern) > MAX_PATTERN_CHARS:
        raise EditError(f"The regular expression is {len(pattern)} characters long, over the limit of "
                        f"{MAX_PATTERN_CHARS}; simplify it, or make several shorter replacements.")
    flags = regex_engine.IGNORECASE if ignore_case else 0
    try:
        compiled = regex_engine.compile(pattern if regex else regex_engine.escape(pattern), flags)
    except regex_engine.error as error:
        raise EditError(f"{pattern!r} is not a valid regular expression ({error}); fix it, or switch regex off to "
                        "replace the text literally.") from None
    replacement = repl if regex else repl.replace("\\", "\\\\")
    deadline = time.monotonic() + REGEX_SECONDS

    def edit(prompt: str) -> str:
        try:
            changed = compiled.sub(replacement, prompt, timeout=max(deadline - time.monotonic(), 0.001))
        except TimeoutError:
            raise EditError(f"The regular expression {pattern!r} took more than {REGEX_SECONDS:g} s over the "
                            "captions and was stopped; nothing was changed. Simplify it: nested repeats such as "
                            "(a+)+ or (a|a)+ try exponentially many ways to match.") from None
        except (regex_engine.error, IndexError) as error:  # a bad group reference shows when a caption matches
            raise EditError(f"The replacement {repl!r} is not valid for {pattern!r} ({error}); refer only to groups "
                            "the pattern has, like \\1.") from None
        return prompt if changed == prompt else tidy_caption(changed)

    edit("")  # a pattern that matches empty text (``^``, ``x*``) has its replacement checked here, before any caption
    return _map(records, edit)


def set_caption(records: Iterable[CaptionRecord], filename: str, text: str) -> list[CaptionRecord]:
    """Change the caption of one image (the row with ``filename``)."""
    records = list(records)
    if not any(record.filename == filename for record in records):
        raise EditError(f"There is no row for {filename!r} in the captions; check the file name.")
    return [replace(record, prompt=text.strip()) if record.filename == filename else record for record in records]


def tidy_caption(prompt: str) -> str:
    """Collapse runs of spaces and drop empty tags (``a, , b`` -> ``a, b``), keeping line breaks and markup."""
    parts = [_SPACES.sub(" ", part).strip() for part in prompt.split(",")]
    return ", ".join(part for part in parts if part)


def edit_metadata(csv_path: str | os.PathLike, edit_fn: Callable[[list[CaptionRecord]], list[CaptionRecord]]
                  ) -> EditResult:
    """Apply ``edit_fn`` to the captions in ``csv_path`` and save: atomic write, old content in ``<name>.bak``.

    Nothing is written when nothing changes (so the backup of the last real edit survives). Refuses, before any
    change, a file whose rows would not survive being rewritten (extra columns, rows without a file name).
    """
    path = Path(csv_path)
    table = read_metadata(path)
    check_rewritable(path, table)
    before = list(table.records)
    after = list(edit_fn(list(before)))
    if [r.filename for r in after] != [r.filename for r in before]:
        raise EditError("An edit must keep every row and its file name; nothing was changed.")
    changed = tuple(old.filename for old, new in zip(before, after) if old.prompt != new.prompt)
    if not changed:
        return EditResult(path, 0, (), None, tuple(after))
    write_metadata(path, after)
    return EditResult(path, len(changed), changed, backup_path(path), tuple(after))


def backup_path(csv_path: str | os.PathLike) -> Path:
    """Where an edit keeps the previous content of ``csv_path`` (``metadata.csv.bak``)."""
    path = Path(csv_path)
    return path.with_name(path.name + ".bak")


def _map(records, change: Callable[[str], str]) -> list[CaptionRecord]:
    result = []
    for record in records:
        prompt = change(record.prompt)
        result.append(record if prompt == record.prompt else replace(record, prompt=prompt))
    return result


def check_rewritable(path: Path, table: CaptionTable) -> None:
    """Refuse to rewrite a file that holds more than ``filename,prompt`` rows (it would be lost)."""
    text = read_csv_bytes(path).decode("utf-8-sig")
    reader = csv.reader(io.StringIO(text, newline=""))
    rows, start = [], 1
    for cells in reader:
        if any(cell.strip() for cell in cells):
            rows.append((start, cells))
        start = reader.line_num + 1
    if table.has_header:
        rows = rows[1:]
    kept = {record.line for record in table.records}
    wide = [line for line, cells in rows if sum(1 for cell in cells if cell.strip()) > 2]
    unnamed = [line for line, _cells in rows if line not in kept]
    if wide or unnamed:
        lines = ", ".join(str(line) for line in sorted(set(wide + unnamed))[:8])
        raise EditError(f"{path}: line(s) {lines} have more than two columns or no file name, and an edit would "
                        "drop that. Put captions that contain commas in double quotes, move extra columns to another "
                        "file, give every row a file name, then edit again.")


def read_csv_bytes(path: Path) -> bytes:
    """The bytes of a caption file (at most ``MAX_METADATA_BYTES``); EditError says why it cannot be read."""
    try:
        return read_bytes_capped(path, MAX_METADATA_BYTES, "caption file")
    except FileRefused as error:
        raise EditError(str(error)) from None
