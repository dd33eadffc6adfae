"""metadata.csv: read it leniently, check it against the image folder, write it back safely.

The user's dataset is a folder of images plus ``metadata.csv`` with one row per image: ``filename,prompt``.
Reading never raises for problems inside the table; they are collected as :class:`DatasetProblem` (file + line +
what to do) so the user sees all of them at once. :func:`load_training_set` turns a non-empty list into one
:class:`DatasetError`.
"""
from __future__ import annotations

import csv
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# IMAGE_EXTENSIONS, resolve_inside, spreadsheet_csv and write_metadata are imported from here by other modules.
from studio.data.folder import IMAGE_EXTENSIONS, escapes, image_files, is_link_loop, loop_problem, resolve_inside
from studio.data.metadata_write import spreadsheet_csv, write_metadata
from studio.util.reading import LINK_LOOP, FileRefused, read_bytes_capped

MAX_METADATA_BYTES = 32 << 20  # a caption file of 100 000 images is about 10 MiB
_FILENAME_HEADERS = frozenset({"filename", "file_name", "file", "image", "image_path", "path"})
_PROMPT_HEADERS = frozenset({"prompt", "text", "caption", "description"})
_ROW_LIKE = re.compile(r"\n\s*[^\n,]+\.(png|jpe?g|webp|bmp|tiff?|gif)\s*,", re.IGNORECASE)
NAMED_ON_LINE = "the file named on this line"  # stands for the name in messages about a file that is not a .csv


@dataclass(frozen=True)
class CaptionRecord:
    """One row of metadata.csv: an image path relative to the image folder (``/``-separated) and its prompt."""

    filename: str
    prompt: str
    line: int = 0


@dataclass(frozen=True)
class DatasetProblem:
    """Something the user must fix: the file it is in (metadata.csv or an image), the line when known, and how."""

    path: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.path if self.line is None else f"{self.path}, line {self.line}"
        return f"{where}: {self.message}"


class DatasetError(ValueError):
    """The training data cannot be used as it is; ``problems`` lists every reason at once."""

    def __init__(self, problems: list[DatasetProblem] | tuple[DatasetProblem, ...] | str) -> None:
        if isinstance(problems, str):  # a DataLoader worker re-raises exceptions from their message alone
            self.problems = []
            super().__init__(problems)
            return
        self.problems = list(problems)
        count = len(self.problems)
        head = (f"The training data has {count} problem{'s' if count != 1 else ''}; nothing was changed. "
                "Fix them and try again:")
        super().__init__(head + "".join(f"\n  - {problem}" for problem in self.problems))

    def __reduce__(self):
        return type(self), (self.problems or str(self),)


@dataclass
class CaptionTable:
    """metadata.csv as read: the rows in file order, non-fatal warnings, and problems that block training."""

    path: Path
    records: list[CaptionRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    problems: list[DatasetProblem] = field(default_factory=list)
    has_header: bool = False
    # Messages quote the file's text (names, captions) only when the user gave it as a .csv: any other file
    # (``/etc/shadow`` given as the metadata path) is named by file and line alone.
    quoted: bool = True

    def prompts(self) -> dict[str, str]:
        """``filename -> prompt`` (the first row wins for a duplicated name)."""
        result: dict[str, str] = {}
        for record in self.records:
            result.setdefault(record.filename, record.prompt)
        return result


def read_metadata(csv_path: str | os.PathLike, images_dir: str | os.PathLike | None = None) -> CaptionTable:
    """Read ``metadata.csv`` (header optional, UTF-8 with or without BOM, any line ends, quoted fields).

    With ``images_dir`` the table's problems also cover the folder: missing files, uncaptioned images, links
    that lead outside. Raises :class:`DatasetError` only when the file itself cannot be read as UTF-8 CSV.
    """
    path = Path(csv_path)
    quoted = path.suffix.lower() == ".csv"
    rows = _parse_rows(path, _read_text(path, quoted))
    table = CaptionTable(path=path, quoted=quoted)
    columns, width = (0, 1), 2
    if rows and (header := _header_columns(rows[0][1])) is not None:
        table.has_header, columns, width = True, header, max(len(rows[0][1]), 2)
        named = [name for i, name in enumerate(rows[0][1]) if i not in columns and name.strip()]
        if named:
            shown = ", ".join(named) if quoted else f"{len(named)} named in the first row"
            table.warnings.append(f"{path}: the extra column(s) {shown} are ignored.")
        rows = rows[1:]
    if not rows:
        table.problems.append(DatasetProblem(str(path), None, "there are no rows; add one row per image in the "
                                             'form  filename,"prompt"  (for example  img01.png,"a red apple").'))
    first_line: dict[str, int] = {}
    extra_lines: list[int] = []
    for line, cells in rows:
        if any(cell.strip() for cell in cells[width:]):
            extra_lines.append(line)
        _add_row(table, line, cells, columns, first_line)
    if extra_lines:
        shown = ", ".join(map(str, extra_lines[:5])) + (f" and {len(extra_lines) - 5} more" if len(extra_lines) > 5
                                                         else "")
        table.warnings.append(f"{path}: line(s) {shown} have more than two columns; only the file name and the first "
                              "caption column are used. If a caption contains commas, put it in double quotes.")
    if images_dir is not None:
        table.problems.extend(_folder_problems(Path(images_dir), table))
    return table


def check_dataset(images_dir: str | os.PathLike, csv_path: str | os.PathLike | None = None) -> list[DatasetProblem]:
    """Every problem with the image folder and its metadata.csv (default ``images_dir/metadata.csv``); [] if fine."""
    csv_file = Path(images_dir) / "metadata.csv" if csv_path is None else Path(csv_path)
    try:
        return read_metadata(csv_file, images_dir).problems
    except DatasetError as error:
        return error.problems


def load_training_set(images_dir: str | os.PathLike, csv_path: str | os.PathLike | None = None) -> CaptionTable:
    """The captions of a dataset that passed every check; otherwise :class:`DatasetError` listing all problems."""
    csv_file = Path(images_dir) / "metadata.csv" if csv_path is None else Path(csv_path)
    table = read_metadata(csv_file, images_dir)
    if table.problems:
        raise DatasetError(table.problems)
    return table


def _read_text(path: Path, quoted: bool) -> str:
    try:
        data = read_bytes_capped(path, MAX_METADATA_BYTES, "caption file")
    except FileRefused as error:
        raise DatasetError([DatasetProblem(str(path), None, error.reason)]) from None
    except FileNotFoundError:
        raise DatasetError([DatasetProblem(str(path), None, "the caption file does not exist; create it with one "
                                           'row per image:  filename,"prompt".')]) from None
    except OSError as error:
        raise DatasetError([DatasetProblem(str(path), None, f"cannot be read ({error.strerror}); check that the "
                                           "file is not open in another program and that you may read it.")]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        what = f"byte 0x{data[error.start]:02x}" if quoted else "this line"
        raise DatasetError([DatasetProblem(str(path), line, f"{what} is not UTF-8 text; save the file as 'CSV UTF-8' "
                                           "(in a spreadsheet) or UTF-8 (in a text editor).")]) from None


def _parse_rows(path: Path, text: str) -> list[tuple[int, list[str]]]:
    """Non-blank CSV rows with the line each one starts on."""
    reader = csv.reader(io.StringIO(text, newline=""))
    rows: list[tuple[int, list[str]]] = []
    start = 1
    try:
        for cells in reader:
            if any(cell.strip() for cell in cells):
                rows.append((start, cells))
            start = reader.line_num + 1
    except csv.Error as error:
        raise DatasetError([DatasetProblem(str(path), start, f"cannot be read as CSV ({error}); check the quotes "
                                           "on this row.")]) from None
    return rows


def _header_columns(cells: list[str]) -> tuple[int, int] | None:
    """(filename column, prompt column) when the row is a header such as ``filename,prompt`` or ``file_name,text``."""
    names = [cell.strip().lower() for cell in cells]
    file_col = next((i for i, name in enumerate(names) if name in _FILENAME_HEADERS), None)
    prompt_col = next((i for i, name in enumerate(names) if name in _PROMPT_HEADERS), None)
    if file_col is None or prompt_col is None:
        return None
    return file_col, prompt_col


def _normalise(raw: str) -> str:
    """Trim, use ``/`` separators, drop ``./`` parts; ``..`` and absolute roots are kept so they can be reported."""
    name = raw.strip().replace("\\", "/")
    parts = [part for part in name.split("/") if part not in ("", ".")]
    return ("/" if name.startswith("/") else "") + "/".join(parts)


def _add_row(table: CaptionTable, line: int, cells: list[str], columns: tuple[int, int],
             first_line: dict[str, int]) -> None:
    file_col, prompt_col = columns
    where = str(table.path)
    name = _normalise(cells[file_col]) if file_col < len(cells) else ""
    if not name:
        table.problems.append(DatasetProblem(where, line, "this row has no file name; write the image's file name "
                                             "in the first column or delete the row."))
        return
    who, example = (name, name) if table.quoted else (NAMED_ON_LINE, "filename")
    if prompt_col >= len(cells):
        table.problems.append(DatasetProblem(where, line, f"the row for {who} has no prompt column; write it as  "
                                             f'{example},"your caption".'))
    prompt = cells[prompt_col].strip() if prompt_col < len(cells) else ""
    table.records.append(CaptionRecord(name, prompt, line))
    if prompt_col < len(cells) and not prompt:
        table.problems.append(DatasetProblem(where, line, f"the caption for {who} is empty; describe the image, or "
                                             "delete the row and move the image out of the folder."))
    if (match := _ROW_LIKE.search(prompt)) is not None:
        shown = f" ({match.group(0).strip()!r})" if table.quoted else ""
        table.problems.append(DatasetProblem(where, line, f"the caption for {who} runs over several lines and "
                                             f"contains what looks like another row{shown}; a closing double quote "
                                             "is probably missing."))
    if escapes(name):
        table.problems.append(DatasetProblem(where, line, f"{who} points outside the image folder; move the image "
                                             "into the folder and write its path relative to it (like sub/a.png)."))
    elif Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
        table.problems.append(DatasetProblem(where, line, f"{who} is not an image type LoRA Studio reads "
                                             f"({' '.join(sorted(IMAGE_EXTENSIONS))}); convert it or delete the row."))
    if name in first_line:
        table.problems.append(DatasetProblem(where, line, f"{who} is listed again (first on line {first_line[name]}); "
                                             "keep one row per image and merge the captions."))
    else:
        first_line[name] = line


def _folder_problems(images_dir: Path, table: CaptionTable) -> list[DatasetProblem]:
    """Captions without a file, files without a caption, links leading outside ``images_dir``."""
    if not images_dir.is_dir():
        reason = (f"{LINK_LOOP}; remove the link and choose the folder that holds your images."
                  if is_link_loop(images_dir) else "the image folder does not exist; choose the folder that holds "
                  "your images.")
        return [DatasetProblem(str(images_dir), None, reason)]
    on_disk = image_files(images_dir)
    lower = {name.lower(): name for name in on_disk}
    problems: list[DatasetProblem] = []
    for record in table.records:
        if escapes(record.filename) or Path(record.filename).suffix.lower() not in IMAGE_EXTENSIONS:
            continue  # already reported while reading the row
        problem = _file_problem(images_dir, record, lower, table.quoted)
        if problem:
            problems.append(DatasetProblem(str(table.path), record.line, problem))
    captioned = {record.filename for record in table.records}
    for name in sorted(on_disk - captioned):
        problems.append(DatasetProblem(str(images_dir / name), None, f"this image has no caption in "
                                       f"{table.path.name}; add a row for it or move it out of the folder."))
    return problems


def _file_problem(images_dir: Path, record: CaptionRecord, lower: dict[str, str], quoted: bool) -> str | None:
    path = images_dir / record.filename
    who = record.filename if quoted else NAMED_ON_LINE
    if is_link_loop(path):
        return loop_problem(who)
    if resolve_inside(images_dir, record.filename) is None:
        target = f" to {path.resolve()}" if quoted else ""
        return f"{who} is a link{target}, outside the image folder; copy the image into the folder instead."
    if not path.exists():
        guess = lower.get(record.filename.lower()) if quoted else None
        hint = f" (did you mean {guess}?)" if guess else ""
        return f"{who} does not exist in {images_dir}{hint}; fix the file name or delete the row."
    if path.is_dir():
        return f"{who} is a folder, not an image; write the path of an image file."
    if not path.is_file():
        return f"{who} is not a regular file (a device, pipe or socket); put the picture itself there."
    return None
