"""Writing captions out: metadata.csv for training (the exact text) and a CSV for spreadsheets (formulas disarmed).

metadata.csv keeps every caption verbatim, because training needs the exact words, even one such as
``=cmd|' /C calc'!A0``. A spreadsheet program would run that cell as a formula, so :func:`spreadsheet_csv`
writes a copy in which every cell that starts like a formula begins with ``'`` (the OWASP CSV-injection rule).
"""
from __future__ import annotations

import csv
import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from studio.util.fs import atomic_write_text

if TYPE_CHECKING:
    from studio.data.metadata import CaptionRecord

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def write_metadata(csv_path: str | os.PathLike, records: list[CaptionRecord] | tuple[CaptionRecord, ...]) -> Path:
    """Write ``filename,prompt`` rows atomically (UTF-8, no BOM, ``\\n``), keeping the old file as ``<name>.bak``.

    Raises ``ValueError`` before touching the file when a record cannot be written as a valid row.
    """
    bad = [repr(record.filename) for record in records
           if not record.filename.strip() or any(ch in record.filename for ch in "\r\n")]
    if bad:
        raise ValueError(f"Not writing {csv_path}: file name(s) {', '.join(bad)} are empty or contain a line break; "
                         "give every image a one-line file name.")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    # QUOTE_MINIMAL quotes a carriage return only when it is part of lineterminator, and a caption with an
    # unquoted "\r" reads back as two rows; such rows are written with every cell quoted.
    quoting_all = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(["filename", "prompt"])
    for record in records:
        (quoting_all if "\r" in record.prompt else writer).writerow([record.filename, record.prompt])
    return atomic_write_text(csv_path, buffer.getvalue(), backup=True)


def spreadsheet_csv(records: Iterable[CaptionRecord]) -> str:
    """``filename,prompt`` rows for opening in a spreadsheet, with formula-like cells neutralised.

    A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return gets a leading ``'``, so a
    spreadsheet shows it as text instead of running it. Not for training: metadata.csv keeps the exact captions.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, quoting=csv.QUOTE_MINIMAL)  # "\r\n" line ends, as spreadsheets expect
    writer.writerow(["filename", "prompt"])
    for record in records:
        writer.writerow([_disarm(record.filename), _disarm(record.prompt)])
    return buffer.getvalue()


def _disarm(cell: str) -> str:
    return "'" + cell if cell.startswith(FORMULA_STARTS) else cell
