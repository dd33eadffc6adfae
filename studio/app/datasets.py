"""The datasets the tabs work on, without gradio: find a folder (a path or a demo), show its pictures and captions,
save its captions, unpack an uploaded zip, and review its quality (scan, keep the report in the workspace, record
the user's keep/drop choices with the dataset, write a clean copy of the kept images).

The latest report of each scanned folder is ``<workspace>/scans/<name>-<digest>/report.json`` (the JSON the page
offers for download). Keep/drop choices go where the scan engine reads them, ``<dataset>/.lora-studio/
decisions.json`` (atomic, with a ``.bak`` of the previous choices); the pictures themselves are only ever read.
The demo datasets ship with the studio and stay read-only, so their choices are refused.

The scan's size check and the clean copy follow the resolution the user will train at;
:meth:`Datasets.suggested_resolution` says which one a folder is for when the folder tells.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from studio.app.access import SHIPPED_ROOT, Access, AccessError
from studio.app.errors import StudioError
from studio.app.review import DEFAULT_RESOLUTION, ChoiceResult, Review
from studio.data.metadata import DatasetError
from studio.data.prepare import PREPARED_MARKER, PrepareError, PrepareResult, prepare_dataset
from studio.data.scan import ScanReport, load_decisions, save_decisions, scan_folder
from studio.util.fs import atomic_write_text
from studio.util.reading import read_bytes_capped

DEMO_ROOT = SHIPPED_ROOT / "demo-datasets"
TOY_WORLD_RESOLUTION = 32  # the toy worlds draw 32 x 32 px (assets/toy-world/README.md); the demo presets train at it
_CHOICES_LOCK = threading.Lock()  # one read-modify-write of a decisions file at a time (several page users)


@dataclass
class DatasetView:
    folder: Path
    rows: list[tuple[str, str]]  # (filename, prompt)
    images: list[Path]
    problems: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def is_shipped(folder: Path) -> bool:
    """Whether ``folder`` lies in what ships with the studio (``assets/``: the demo datasets and toy worlds)."""
    return Path(os.path.realpath(folder)).is_relative_to(os.path.realpath(SHIPPED_ROOT))


class Datasets:
    """The studio's datasets: every folder a page names goes through :meth:`folder` (the access rules of
    ``access``), every file it writes through ``access`` too; reports and clean copies go under ``workspace``."""

    def __init__(self, workspace: Path, access: Access):
        self.workspace = workspace
        self.access = access

    def demos(self) -> dict[str, Path]:
        """The demo datasets that ship with the studio, by name."""
        if not DEMO_ROOT.is_dir():
            return {}
        return {p.name: p for p in sorted(DEMO_ROOT.iterdir()) if (p / "metadata.csv").is_file()}

    def folder(self, text: str) -> Path:
        """A folder the user named (a demo name or a path) that this user may read; it must exist."""
        text = (text or "").strip()
        if not text:
            raise StudioError("type the path of a folder with images and metadata.csv, or pick a demo dataset")
        demo = self.demos().get(text)
        folder = demo or self.access.resolve(text, what="the dataset folder")
        if not folder.is_dir():  # a link that loops back on itself is no folder either
            raise StudioError(f"{folder} is not a folder; check the path")
        if not self.access.remote and not Path(text).expanduser().is_absolute():
            folder = folder.resolve()
        return folder

    def load(self, text: str) -> DatasetView:
        """The pictures of the folder named in ``text`` and its captions, as the Dataset tab shows them: files named
        like pictures that are none (a text file ``x.png``) are listed as problems instead; without metadata.csv
        there are no captions."""
        from studio.data import IMAGE_EXTENSIONS, check_dataset, read_metadata
        from studio.data.images import picture_problem

        folder = self.folder(text)
        csv_path = folder / "metadata.csv"
        named = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        unusable = {p: why for p in named if (why := picture_problem(p))}
        images = [p for p in named if p not in unusable]
        not_pictures = [f"{p.name} {why}" for p, why in unusable.items()]
        if not csv_path.is_file():
            missing = f"{csv_path.name} is missing: caption the pictures in the Captioning tab and save"
            return DatasetView(folder, [], images, [missing] + not_pictures)
        table = read_metadata(csv_path)
        rows = [(r.filename, r.prompt) for r in table.records]
        problems = [str(p) for p in check_dataset(folder, csv_path)] + not_pictures
        return DatasetView(folder, rows, images, problems, list(table.warnings))

    def save_captions(self, text: str, rows: list[tuple[str, str]]) -> Path:
        """Write ``metadata.csv`` atomically, keeping the previous file as ``metadata.csv.bak``."""
        from studio.data import CaptionRecord, write_metadata

        folder = self.folder(text)
        self._writable(folder / "metadata.csv", "the captions file")
        records = [CaptionRecord(str(f).strip(), str(p or "").strip()) for f, p in rows if str(f or "").strip()]
        if not records:
            raise StudioError("the table is empty: nothing to save")
        return write_metadata(folder / "metadata.csv", records)

    def import_zip(self, zip_path: str | Path, name: str = ""):
        """Unpack an uploaded dataset zip into ``<workspace>/datasets/<name>`` (see ``studio.app.uploads``)."""
        from studio.app.uploads import unpack_dataset_zip

        return unpack_dataset_zip(zip_path, self.workspace / "datasets", name)

    # ---- the quality review -------------------------------------------------------------------------------------
    def report_path(self, folder: Path) -> Path:
        """Where the latest report of ``folder`` is kept in the workspace (one per folder)."""
        resolved = folder.resolve()
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", resolved.name).strip("-.") or "dataset"
        digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:12]
        return self.workspace / "scans" / f"{name}-{digest}" / "report.json"

    def suggested_resolution(self, text: str) -> tuple[int, str] | None:
        """``(px, why)`` when the folder named in ``text`` tells what it is for: a shipped demo dataset is for the toy
        worlds, a clean copy was prepared at its target side. None for any other folder (or a path that is no
        folder)."""
        try:
            folder = self.folder(text)
        except (StudioError, AccessError, OSError):
            return None
        if is_shipped(folder):
            return TOY_WORLD_RESOLUTION, "the demo datasets are for the toy-world models, which train at 32 px"
        try:
            marker = read_bytes_capped(folder / PREPARED_MARKER, 64 << 20, "marker file")  # as prepare reads it
            side = int(json.loads(marker.decode("utf-8"))["target_side"])
        except (OSError, ValueError, KeyError, TypeError):  # FileRefused and UnicodeDecodeError are ValueErrors
            return None
        return side, f"this clean copy was prepared for training at {side} px"

    def scan(self, text: str, *, resolution: int = DEFAULT_RESOLUTION, recursive: bool = False,
             progress: Callable[[int, int], None] | None = None) -> Review:
        """Scan the folder the user named for a training at ``resolution`` px (smaller pictures are flagged) and
        store the report in the workspace; StudioError says what is wrong."""
        folder = self.folder(text)
        try:
            report = scan_folder(folder, min_side=int(resolution), recursive=bool(recursive), progress=progress)
        except (DatasetError, ValueError, TypeError) as error:
            raise StudioError(str(error)) from None
        review = Review(folder, report, self.report_path(folder), is_shipped(folder))
        atomic_write_text(review.report_path, report.to_json())
        return review

    def load_review(self, folder: str | Path) -> Review:
        """The latest stored scan of ``folder``; StudioError when it was not scanned (or its report is unreadable)."""
        folder = self.folder(str(folder))
        path = self.report_path(folder)
        try:
            report = ScanReport.from_json(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StudioError(f"{folder} has not been scanned yet; press Scan first") from None
        except (OSError, ValueError) as error:
            raise StudioError(f"the stored report {path} cannot be read ({error}); press Scan again") from None
        return Review(folder, report, path, is_shipped(folder))

    def save_choices(self, folder: str | Path, choices: dict[str, bool]) -> ChoiceResult:
        """Record keep (True) / drop (False) for the images whose choice differs from the stored report.

        The choices are merged into the dataset's saved decisions and into the stored report. Unreadable images
        cannot be kept, images the last scan did not see are refused, and so is every change to a folder this user
        may not write (a shipped demo dataset, a read-only --data-dir folder).
        """
        with _CHOICES_LOCK:
            review = self.load_review(folder)
            saved, refused = _sort_choices(review, choices)
            if saved:  # the shipped demos and read-only --data-dir folders are refused here
                try:
                    self._writable(review.folder / ".lora-studio" / "decisions.json", "the keep/drop choices")
                except AccessError as error:
                    refused.update({relpath: f"cannot be saved: {error}" for relpath in saved})
                    saved = {}
            if not saved:
                return ChoiceResult({}, refused, None)
            try:
                decisions = load_decisions(review.folder)
            except DatasetError as error:
                raise StudioError(str(error)) from None
            decisions.update(saved)
            path = save_decisions(review.folder, decisions)
            for relpath, keep in saved.items():
                image = review.report.image(relpath)
                image.decision, image.keep = keep, keep
            atomic_write_text(review.report_path, review.report.to_json())
            return ChoiceResult(saved, refused, path)

    def output_folder(self, folder: Path, text: str) -> Path:
        """The folder for the clean copy: ``text`` (relative paths are under the workspace) or, when empty,
        ``<workspace>/prepared/<dataset name>``."""
        text = (text or "").strip()
        if not text:
            path = self.workspace / "prepared" / folder.name
        else:
            path = Path(text) if self.access.remote else Path(text).expanduser()
            path = path if path.is_absolute() else self.workspace / path
        return self._writable(path, "the folder for the clean copy")

    def prepare_copy(self, folder: str | Path, out_text: str,
                     progress: Callable[[int, int], None] | None = None) -> PrepareResult:
        """Write the images the last scan keeps, with the saved keep/drop choices applied, to a new folder, resized
        to the training resolution the scan was made for."""
        review = self.load_review(folder)
        try:
            out = self.output_folder(review.folder, out_text)
            decisions = {} if review.read_only else load_decisions(review.folder)
            return prepare_dataset(review.report, out, target_side=review.resolution, decisions=decisions,
                                   progress=progress)
        except (PrepareError, DatasetError) as error:
            raise StudioError(str(error)) from None

    def _writable(self, path: Path, what: str) -> Path:
        """``path`` if this user may write it (AccessError says why not)."""
        return self.access.resolve(path, write=True, what=what)


def _sort_choices(review: Review, choices: dict[str, bool]) -> tuple[dict[str, bool], dict[str, str]]:
    saved: dict[str, bool] = {}
    refused: dict[str, str] = {}
    for relpath, keep in choices.items():
        image = review.report.image(relpath)
        if image is None:
            refused[relpath] = "is not in the last scan; press Scan again"
        elif bool(keep) != image.keep:
            if keep and not image.readable:
                refused[relpath] = "cannot be decoded, so it cannot be kept"
            else:
                saved[relpath] = bool(keep)
    return saved, refused
