"""The Dataset tab's quality report as the page shows it, without gradio: each flagged image with a thumbnail, its
reasons in words with the numbers behind them, and the keep/drop choice; the counts per reason and the notes.

The scan's size check follows the resolution the user will train at (512 px for SD 1.x, 1024 for SDXL, 32 for the
toy worlds).
"""
from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from studio.data.decode import UnreadableImage, decode_rgb
from studio.data.scan import ScanReport
from studio.data.scan_report import DROP_FLAGS, UNREADABLE_FLAGS, Flag, ImageReport, flag_label

MAX_ROWS = 300  # the table shows at most this many images; the JSON report lists them all
DEFAULT_RESOLUTION = 512  # SD 1.x, the default family
THUMBNAIL_SIDE = 96
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
    """What ``Datasets.save_choices`` did: images whose choice was saved and ones it refused, with why."""

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
