"""The Dataset tab's quality review, without gradio: scan a folder, keep its report in the workspace, record the
user's keep/drop choices with the dataset, and write a clean copy of the kept images.

The latest report of each scanned folder is ``<workspace>/scans/<name>-<digest>/report.json`` (the JSON the page
offers for download). Keep/drop choices go where the scan engine reads them, ``<dataset>/.lora-studio/
decisions.json`` (atomic, with a ``.bak`` of the previous choices); the pictures themselves are only ever read.
The demo datasets ship with the studio and stay read-only, so their choices are refused.

The scan's size check and the clean copy follow the resolution the user will train at (512 px for SD 1.x, 1024 for
SDXL, 32 for the toy worlds); :func:`suggested_resolution` says which one a folder is for when the folder tells.
"""
from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from studio.app.access import SHIPPED_ROOT, AccessError
from studio.data.decode import UnreadableImage, decode_rgb
from studio.data.metadata import DatasetError
from studio.data.prepare import PREPARED_MARKER, PrepareError, PrepareResult, prepare_dataset
from studio.data.scan import ScanReport, load_decisions, save_decisions, scan_folder
from studio.data.scan_report import DROP_FLAGS, UNREADABLE_FLAGS, Flag, ImageReport, flag_label
from studio.service import StudioError
from studio.util.fs import atomic_write_text
from studio.util.reading import read_bytes_capped

MAX_ROWS = 300  # the table shows at most this many images; the JSON report lists them all
DEFAULT_RESOLUTION = 512  # SD 1.x, the default family
TOY_WORLD_RESOLUTION = 32  # the toy worlds draw 32 x 32 px (assets/toy-world/README.md); the demo presets train at it
THUMBNAIL_SIDE = 96
_CHOICES_LOCK = threading.Lock()  # one read-modify-write of a decisions file at a time (several page users)
_DETAILS = {"small": "{width}x{height}, shorter side {shorter_side} < {min_side} px",
            "blurry": "sharpness {sharpness:.1f} < {threshold:g}",
            "near_duplicate": "of {of}, {distance} of 64 bits apart",
            "exact_duplicate": "copy of {of}",
            "corrupt": "{error:.80}",
            "bomb": "{megapixels:,.0f} MP > {limit_megapixels:,.0f} MP",
            "extreme_aspect": "{ratio:.1f}:1 > {max_aspect:g}:1",
            "grayscale": "colour spread {chroma:.0f} ≤ {limit:g}"}


@dataclass
class ReviewRow:
    """One image as the table shows it: a thumbnail (data URI, "" if undecodable), reasons, and keep."""

    relpath: str
    size: str
    thumbnail: str
    reasons: list[tuple[str, str, str, str]]  # (code, text with the numbers, the full advice, severity)
    keep: bool
    readable: bool


@dataclass
class Review:
    """The latest scan of ``folder`` and where its JSON report lies."""

    folder: Path
    report: ScanReport
    report_path: Path
    read_only: bool

    @property
    def resolution(self) -> int:
        """The training resolution the scan was made for (its smallest allowed side)."""
        return int(self.report.settings.get("min_side", DEFAULT_RESOLUTION))

    def counts(self) -> list[tuple[str, int, str]]:
        """(reason in words, number of images, severity) for every reason the scan found."""
        return [(flag_label(code, count), count, severity(code)) for code, count in self.report.counts_by_flag.items()]

    def notes(self) -> list[str]:
        """Problems beyond single images (captions naming missing images, metadata) and the scan's notes."""
        return [str(problem) for problem in self.report.errors if problem.code not in UNREADABLE_FLAGS] + \
            self.report.notes

    def listed(self, show_all: bool = False) -> list[ImageReport]:
        """Flagged images (all images with ``show_all``), flagged first, each group by path."""
        images = sorted(self.report.images, key=lambda image: (not image.flags, image.relpath))
        return images if show_all else [image for image in images if image.flags]

    def rows(self, show_all: bool = False, limit: int = MAX_ROWS) -> list[ReviewRow]:
        return [ReviewRow(image.relpath, f"{image.width}x{image.height}" if image.width else "?",
                          thumbnail_uri(image.path), [reason(flag) for flag in image.flags], image.keep,
                          image.readable)
                for image in self.listed(show_all)[:limit]]


@dataclass
class ChoiceResult:
    """What :func:`save_choices` did: images whose choice was saved and ones it refused, with why."""

    saved: dict[str, bool]
    refused: dict[str, str]
    path: Path | None


def reason(flag: Flag) -> tuple[str, str, str, str]:
    """``(code, "blurry (sharpness 12.3 < 27)", advice, severity)``: the reason in words with the numbers behind
    it, the scan's advice, and :func:`severity`."""
    values = dict(flag.values)
    if "pixels" in values:
        values.update(megapixels=values["pixels"] / 1e6, limit_megapixels=values.get("limit", 0) / 1e6)
    label = flag_label(flag.code)
    try:
        detail = _DETAILS[flag.code].format(**values)
    except (KeyError, ValueError, TypeError):  # a reason without its numbers (an unreadable file) or a new code
        detail = ""
    return flag.code, f"{label} ({detail})" if detail else label, flag.message, severity(flag.code)


def severity(code: str) -> str:
    """``unreadable`` (never kept), ``drop`` (left out unless the user keeps it) or ``advice`` (such as a missing
    caption, which does not leave the image out)."""
    return "unreadable" if code in UNREADABLE_FLAGS else "drop" if code in DROP_FLAGS else "advice"


def thumbnail(path: str | Path, side: int = THUMBNAIL_SIDE) -> Image.Image | None:
    """An upright RGB thumbnail at most ``side`` px (tiny pictures enlarged without blur); None if undecodable."""
    try:
        image = decode_rgb(Path(path).read_bytes(), draft_side=side).image
    except (OSError, UnreadableImage):
        return None
    if max(image.size) < side:
        factor = max(1, side // max(image.size))
        return image.resize((image.width * factor, image.height * factor), Image.Resampling.NEAREST)
    image.thumbnail((side, side))
    return image


def thumbnail_uri(path: str | Path, side: int = THUMBNAIL_SIDE) -> str:
    image = thumbnail(path, side)
    if image is None:
        return ""
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def report_path(studio, folder: Path) -> Path:
    """Where the latest report of ``folder`` is kept in the workspace (one per folder)."""
    resolved = folder.resolve()
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", resolved.name).strip("-.") or "dataset"
    digest = hashlib.sha256(str(resolved).encode("utf-8")).hexdigest()[:12]
    return studio.workspace / "scans" / f"{name}-{digest}" / "report.json"


def dataset_view(studio, text: str):
    """The pictures of the folder named in ``text`` and its captions (a ``DatasetView``): files named like pictures
    that are none (a text file ``x.png``) are listed as problems instead; without metadata.csv there are no captions.
    """
    from studio.data import IMAGE_EXTENSIONS, check_dataset, read_metadata
    from studio.data.images import picture_problem
    from studio.service import DatasetView

    folder = studio.dataset_folder(text)
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


def is_shipped(folder: Path) -> bool:
    """Whether ``folder`` lies in what ships with the studio (``assets/``: the demo datasets and toy worlds)."""
    return Path(os.path.realpath(folder)).is_relative_to(os.path.realpath(SHIPPED_ROOT))


def suggested_resolution(studio, text: str) -> tuple[int, str] | None:
    """``(px, why)`` when the folder named in ``text`` tells what it is for: a shipped demo dataset is for the toy
    worlds, a clean copy was prepared at its target side. None for any other folder (or a path that is no folder)."""
    try:
        folder = studio.dataset_folder(text)
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


def scan_dataset(studio, text: str, *, resolution: int = DEFAULT_RESOLUTION, recursive: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> Review:
    """Scan the folder the user named for a training at ``resolution`` px (smaller pictures are flagged) and store
    the report in the workspace; StudioError says what is wrong."""
    folder = studio.dataset_folder(text)
    try:
        report = scan_folder(folder, min_side=int(resolution), recursive=bool(recursive), progress=progress)
    except (DatasetError, ValueError, TypeError) as error:
        raise StudioError(str(error)) from None
    review = Review(folder, report, report_path(studio, folder), is_shipped(folder))
    atomic_write_text(review.report_path, report.to_json())
    return review


def load_review(studio, folder: str | Path) -> Review:
    """The latest stored scan of ``folder``; StudioError when it was not scanned (or its report is unreadable)."""
    folder = studio.dataset_folder(str(folder))
    path = report_path(studio, folder)
    try:
        report = ScanReport.from_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StudioError(f"{folder} has not been scanned yet; press Scan first") from None
    except (OSError, ValueError) as error:
        raise StudioError(f"the stored report {path} cannot be read ({error}); press Scan again") from None
    return Review(folder, report, path, is_shipped(folder))


def save_choices(studio, folder: str | Path, choices: dict[str, bool]) -> ChoiceResult:
    """Record keep (True) / drop (False) for the images whose choice differs from the stored report.

    The choices are merged into the dataset's saved decisions and into the stored report. Unreadable images
    cannot be kept, images the last scan did not see are refused, and so is every change to a folder this user
    may not write (a shipped demo dataset, a read-only --data-dir folder).
    """
    with _CHOICES_LOCK:
        review = load_review(studio, folder)
        saved, refused = _sort_choices(review, choices)
        if saved:  # the shipped demos and read-only --data-dir folders are refused here
            try:
                studio.writable(review.folder / ".lora-studio" / "decisions.json", "the keep/drop choices")
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


def output_folder(studio, folder: Path, text: str) -> Path:
    """The folder for the clean copy: ``text`` (relative paths are under the workspace) or, when empty,
    ``<workspace>/prepared/<dataset name>``."""
    text = (text or "").strip()
    if not text:
        path = studio.workspace / "prepared" / folder.name
    else:
        path = Path(text) if studio.access.remote else Path(text).expanduser()
        path = path if path.is_absolute() else studio.workspace / path
    return studio.writable(path, "the folder for the clean copy")


def prepare_copy(studio, folder: str | Path, out_text: str,
                 progress: Callable[[int, int], None] | None = None) -> PrepareResult:
    """Write the images the last scan keeps, with the saved keep/drop choices applied, to a new folder, resized to
    the training resolution the scan was made for."""
    review = load_review(studio, folder)
    try:
        out = output_folder(studio, review.folder, out_text)
        decisions = {} if review.read_only else load_decisions(review.folder)
        return prepare_dataset(review.report, out, target_side=review.resolution, decisions=decisions,
                               progress=progress)
    except (PrepareError, DatasetError) as error:
        raise StudioError(str(error)) from None
