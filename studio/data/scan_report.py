"""The dataset scan's report: per-image flags with their reasons and numbers, duplicate groups, a one-line verdict.

Plain dataclasses that round-trip through JSON (:meth:`ScanReport.to_json` / :meth:`ScanReport.from_json`), plus the
user's keep/drop decisions, saved with the dataset as ``<folder>/.lora-studio/decisions.json``.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from studio.data.metadata import DatasetError, DatasetProblem
from studio.util.fs import atomic_write_text
from studio.util.reading import FileRefused, read_bytes_capped

FLAG_CODES = ("small", "blurry", "near_duplicate", "exact_duplicate", "corrupt", "bomb", "extreme_aspect",
              "grayscale", "no_caption", "caption_without_image", "upscaled")
# Flags that make the scan suggest leaving an image out; a missing caption can still be written.
DROP_FLAGS = frozenset({"small", "blurry", "near_duplicate", "exact_duplicate", "corrupt", "bomb", "extreme_aspect",
                        "grayscale"})
UNREADABLE_FLAGS = frozenset({"corrupt", "bomb"})
MAX_DECISIONS_BYTES = 16 << 20  # a choice is about 40 bytes: room for 400,000 pictures
_LABELS = {"small": ("too small", "too small"), "blurry": ("blurry", "blurry"),
           "near_duplicate": ("near-duplicate", "near-duplicates"),
           "exact_duplicate": ("exact duplicate", "exact duplicates"), "corrupt": ("corrupt", "corrupt"),
           "bomb": ("too large to decode", "too large to decode"),
           "extreme_aspect": ("extreme aspect ratio", "extreme aspect ratio"), "grayscale": ("greyscale", "greyscale")}
_OTHER_LABELS = {"no_caption": ("no caption", "no caption"),
                 "caption_without_image": ("caption without an image", "captions without an image"),
                 "upscaled": ("upscaled", "upscaled")}
DECISIONS_FILE = Path(".lora-studio") / "decisions.json"


@dataclass
class Flag:
    """Why an image may hurt training: ``code`` (one of :data:`FLAG_CODES`), advice, and the numbers behind it."""

    code: str
    message: str
    values: dict = field(default_factory=dict)


@dataclass
class ImageReport:
    """One scanned image. Sizes are upright (EXIF applied) from the header; ``phash`` is 16 hex digits.

    ``keep`` is what prepare does with it: the saved ``decision`` when the user made one, otherwise the suggestion
    (keep unless a flag in :data:`DROP_FLAGS` is set). Corrupt files and bombs are never kept.
    """

    path: str
    relpath: str
    width: int
    height: int
    format: str
    mode: str
    flags: list[Flag]
    phash: str
    sha256: str
    sharpness: float
    keep: bool
    chroma: float = 0.0
    decision: bool | None = None
    colours: str = ""  # studio.data.quality.colour_grid: what near-duplicates must share besides the pHash

    @property
    def codes(self) -> list[str]:
        return [flag.code for flag in self.flags]

    @property
    def readable(self) -> bool:
        return not UNREADABLE_FLAGS.intersection(self.codes)

    @property
    def suggested_keep(self) -> bool:
        return not DROP_FLAGS.intersection(self.codes)


@dataclass
class DuplicateGroup:
    """Images with the same content (``kind="exact"``) or nearly the same look (``"near"``); ``keep`` is the best."""

    kind: str
    members: list[str]
    keep: str
    max_distance: int = 0


@dataclass
class ScanProblem:
    """Something that stops a file from being used at all: ``code`` corrupt, bomb, caption_without_image, metadata."""

    path: str
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


@dataclass
class ScanReport:
    """Everything the scan found in ``folder``; ``complete`` is False when the user stopped it part-way."""

    folder: str
    images: list[ImageReport]
    counts_by_flag: dict[str, int]
    duplicate_groups: list[DuplicateGroup]
    verdict: str
    errors: list[ScanProblem]
    notes: list[str] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    metadata_path: str | None = None
    complete: bool = True

    @property
    def ready_count(self) -> int:
        """Images no drop-flag was raised on."""
        return sum(image.suggested_keep for image in self.images)

    @property
    def needs_action(self) -> bool:
        """Whether something must be done before training: a scan stopped part-way, no pictures, an unreadable file
        or caption file, a flagged picture the user has not kept or dropped, a picture without a caption, or no
        caption file at all."""
        undecided = any(not image.suggested_keep and image.decision is None for image in self.images)
        uncaptioned = self.metadata_path is None or "no_caption" in self.counts_by_flag
        return not self.complete or not self.images or bool(self.errors) or undecided or uncaptioned

    def image(self, relpath: str) -> ImageReport | None:
        return next((image for image in self.images if image.relpath == relpath), None)

    def to_json(self) -> str:
        return json.dumps({"version": 1, **asdict(self)}, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ScanReport:
        """Rebuild a report written by :meth:`to_json`; ``ValueError`` names what is wrong otherwise."""
        try:
            data = json.loads(text)
            data.pop("version", None)
            data["images"] = [ImageReport(**{**image, "flags": [Flag(**flag) for flag in image["flags"]]})
                              for image in data["images"]]
            data["duplicate_groups"] = [DuplicateGroup(**group) for group in data["duplicate_groups"]]
            data["errors"] = [ScanProblem(**problem) for problem in data["errors"]]
            return cls(**data)
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a LoRA Studio scan report ({error}); scan the folder again.") from None


def count_flags(images: list[ImageReport], errors: list[ScanProblem]) -> dict[str, int]:
    """Images per flag code (codes that occur only), plus captions without an image."""
    counts: dict[str, int] = {}
    for image in images:
        for code in dict.fromkeys(image.codes):
            counts[code] = counts.get(code, 0) + 1
    orphans = sum(problem.code == "caption_without_image" for problem in errors)
    if orphans:
        counts["caption_without_image"] = orphans
    return {code: counts[code] for code in FLAG_CODES if code in counts}


def flag_label(code: str, count: int = 1) -> str:
    """A flag code in plain words ("near-duplicate"; "near-duplicates" for a count other than one)."""
    singular, plural = _LABELS.get(code) or _OTHER_LABELS.get(code) or (code, code)
    return singular if count == 1 else plural


def make_verdict(images: list[ImageReport], counts: dict[str, int], errors: list[ScanProblem],
                 captions_checked: bool) -> str:
    """One line: how many images are ready, what is wrong with the rest, and what to do."""
    total = len(images)
    if total == 0:
        return "No images found; add jpg, png, webp, bmp, tiff or gif files to the folder and scan again."
    ready = sum(image.suggested_keep for image in images)
    parts = [f"{counts[code]} {flag_label(code, counts[code])}" for code in _LABELS if counts.get(code)]
    line = (f"All {total} images are ready for training" if ready == total
            else f"{ready} of {total} images are ready")
    if parts:
        line += "; " + ", ".join(parts) + " — drop or replace them before training"
    tails = []
    if counts.get("no_caption"):
        tails.append(f"{counts['no_caption']} without a caption")
    if counts.get("caption_without_image"):
        tails.append(f"{counts['caption_without_image']} caption(s) name a missing image")
    if any(problem.code == "metadata" for problem in errors):
        tails.append("metadata.csv cannot be read")
    elif not captions_checked:
        tails.append("no metadata.csv yet — caption the images before training")
    if tails:
        line += "; " + ", ".join(tails)
    return line


def save_decisions(folder: str | os.PathLike, decisions: dict[str, bool]) -> Path:
    """Store the user's keep (True) / drop (False) per image relpath, replacing the saved set (atomic, with .bak)."""
    clean = {str(relpath): bool(keep) for relpath, keep in sorted(decisions.items())}
    text = json.dumps({"version": 1, "decisions": clean}, indent=2, ensure_ascii=False) + "\n"
    return atomic_write_text(Path(folder) / DECISIONS_FILE, text, backup=True)


def load_decisions(folder: str | os.PathLike) -> dict[str, bool]:
    """The saved keep/drop decisions of ``folder`` ({} when none were saved); :class:`DatasetError` if unreadable."""
    path = Path(folder) / DECISIONS_FILE
    try:
        data = json.loads(read_bytes_capped(path, MAX_DECISIONS_BYTES, "keep/drop file").decode("utf-8"))
    except FileNotFoundError:
        return {}
    except FileRefused as error:
        raise DatasetError([DatasetProblem(str(path), None, f"{error.reason} Delete it to start the keep/drop "
                                           "choices afresh.")]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError([DatasetProblem(str(path), None, f"cannot be read ({error}); delete it to start the "
                                           "keep/drop choices afresh.")]) from None
    decisions = data.get("decisions") if isinstance(data, dict) else None
    if not isinstance(decisions, dict) or not all(isinstance(keep, bool) for keep in decisions.values()):
        raise DatasetError([DatasetProblem(str(path), None, 'expected {"decisions": {"image.png": true, ...}}; '
                                           "delete it to start the keep/drop choices afresh.")])
    return dict(decisions)
