"""Prepare: write a clean copy of the kept images to a new folder, ready for training. Originals are only read.

Each kept image is decoded upright, composited on the scan's background, converted to sRGB when it carries a colour
profile, resized so its shorter side is ``target_side`` (never upscaled unless asked, and then flagged), and saved
in one format without any metadata. The captions of the kept images go along into the new folder's metadata.csv.
A record of what was written (``.lora-studio/prepared.json``) lets the same folder be prepared again; any other
non-empty folder, and any folder inside the dataset, is refused.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from PIL import Image

from studio.data.decode import DEFAULT_MAX_PIXELS, UnreadableImage, decode_rgb
from studio.data.metadata import CaptionRecord, DatasetError, read_metadata, resolve_inside, write_metadata
from studio.data.parallel import Progress, map_files
from studio.data.scan import scan_folder
from studio.data.scan_report import DROP_FLAGS, Flag, ImageReport, ScanReport
from studio.util.fs import atomic_write_bytes, atomic_write_text
from studio.util.reading import read_bytes_capped

PREPARED_MARKER = Path(".lora-studio") / "prepared.json"
FORMATS = {"png": ("PNG", ".png", {"compress_level": 6}),
           "jpg": ("JPEG", ".jpg", {"quality": 95, "subsampling": 0}),
           "jpeg": ("JPEG", ".jpg", {"quality": 95, "subsampling": 0}),
           "webp": ("WEBP", ".webp", {"quality": 95, "method": 4})}


class PrepareError(ValueError):
    """Prepare cannot start as asked (output folder, format or size); nothing was written."""


@dataclass
class PreparedImage:
    """One written file: source and output relpaths, the written size, and flags such as ``upscaled``."""

    source: str
    output: str
    width: int
    height: int
    flags: list[Flag] = field(default_factory=list)


@dataclass
class PrepareResult:
    """What prepare wrote to ``out_dir`` and why the other images were left out (relpath -> reason)."""

    out_dir: str
    written: list[PreparedImage]
    skipped: dict[str, str]
    metadata_path: str | None
    report: ScanReport
    stopped: bool = False

    @property
    def upscaled(self) -> list[str]:
        return [item.source for item in self.written if any(flag.code == "upscaled" for flag in item.flags)]

    def summary(self) -> str:
        if not self.written:
            why = f"all {len(self.skipped)} were left out" if self.skipped else "the scan found no pictures"
            return (f"Wrote no images to {self.out_dir}: {why}. Keep the pictures you want (or scan again at the "
                    "resolution you will train at), then prepare again.")
        line = f"Wrote {len(self.written)} image(s) to {self.out_dir}"
        if self.upscaled:
            line += f" ({len(self.upscaled)} upscaled)"
        if self.skipped:
            line += f"; left out {len(self.skipped)}"
        if self.metadata_path:
            line += "; captions in metadata.csv"
        return line + (" (stopped early)." if self.stopped else ".")


def prepare_dataset(report_or_folder: ScanReport | str | os.PathLike, out_dir: str | os.PathLike, *,
                    target_side: int = 512, upscale: bool = False, keep_flagged: bool = False, format: str = "png",
                    decisions: dict[str, bool] | None = None, workers: int | None = None,
                    progress: Progress | None = None, should_stop: Callable[[], bool] | None = None) -> PrepareResult:
    """Write the kept images of a scan (or of a folder, scanned first) to ``out_dir``.

    An image is written when its decision says keep (``decisions`` here, else the one saved with the dataset),
    else when ``keep_flagged`` is set, else when the scan's ``keep`` says so. Unreadable files never are. Raises
    :class:`PrepareError` before writing anything when ``out_dir`` is the dataset, inside it, or holds other files.
    """
    report = report_or_folder if isinstance(report_or_folder, ScanReport) else scan_folder(report_or_folder,
                                                                                            workers=workers)
    if format.lower() not in FORMATS:
        raise PrepareError(f"format {format!r} is not one of {', '.join(sorted(FORMATS))}; choose png for lossless.")
    if target_side < 8:
        raise PrepareError(f"target side {target_side} px is too small; use the training resolution, such as 512.")
    out = Path(out_dir)
    previous = _check_out_dir(Path(report.folder), out)
    chosen, skipped = _select(report, keep_flagged, decisions or {})
    spec = FORMATS[format.lower()]
    names = _output_names([image.relpath for image in chosen], spec[1])
    background = tuple(report.settings.get("background", (255, 255, 255)))
    limit = int(report.settings.get("max_pixels", DEFAULT_MAX_PIXELS))
    tasks = [(image.path, str(out / names[image.relpath]), background, limit, target_side, upscale, spec)
             for image in chosen]
    outcomes, stopped = map_files(prepare_file, tasks, workers=workers, progress=progress, should_stop=should_stop)
    written: list[PreparedImage] = []
    for image, outcome in zip(chosen, outcomes):
        if isinstance(outcome, PreparedImage):
            written.append(PreparedImage(image.relpath, names[image.relpath], outcome.width, outcome.height,
                                         outcome.flags))
        elif outcome is not None:
            skipped[image.relpath] = outcome
    metadata = _write_captions(report, out, written)
    current = {item.output for item in written} | ({"metadata.csv"} if metadata else set())
    _remove_stale(out, previous, current)
    _write_marker(out, report, sorted(current), target_side, format.lower())
    return PrepareResult(str(out), written, skipped, None if metadata is None else str(metadata), report, stopped)


def prepare_file(task: tuple) -> PreparedImage | str:
    """Worker: decode, resize and save one image; a reason string when the file cannot be read any more."""
    source, target, background, limit, side, upscale, (pil_format, _suffix, options) = task
    try:
        decoded = decode_rgb(Path(source).read_bytes(), background=background, draft_side=2 * side,
                             max_pixels=limit)
    except UnreadableImage as error:
        return error.message
    except OSError as error:
        return f"cannot be read ({error.strerror or error})."
    image = _to_srgb(decoded.image, decoded.info.get("icc_profile"), decoded.mode)
    width, height = image.size
    shorter = min(width, height)
    flags: list[Flag] = []
    if shorter > side or (upscale and shorter < side):
        scale = side / shorter
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0 if scale < 1 else None)
        if scale > 1:
            flags.append(Flag("upscaled", f"was {width}x{height}, upscaled {scale:.2f}x to {size[0]}x{size[1]} as "
                              "asked; it may look soft, a larger original is better.",
                              {"from": [width, height], "to": list(size), "scale": round(scale, 4)}))
    image.info = {}  # Pillow's savers copy exif, icc_profile and text from info: strip all metadata
    buffer = io.BytesIO()
    image.save(buffer, pil_format, **options)
    atomic_write_bytes(target, buffer.getvalue())
    return PreparedImage("", "", image.width, image.height, flags)


def _to_srgb(image: Image.Image, icc_profile: bytes | None, source_mode: str) -> Image.Image:
    """Pixels converted from the file's RGB colour profile to sRGB (as is when there is none or it is unusable)."""
    if not icc_profile or source_mode not in ("RGB", "RGBA"):
        return image
    try:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc_profile))
        return ImageCms.profileToProfile(image, profile, ImageCms.createProfile("sRGB"), outputMode="RGB")
    except (ImportError, OSError, ValueError, TypeError):  # ImageCms.PyCMSError is an OSError
        return image


def _check_out_dir(source: Path, out: Path) -> list[str]:
    """Refuse an output folder that could touch the dataset or a user's files; the files a previous run wrote."""
    source_real, out_real = source.resolve(), out.resolve()
    if out_real == source_real or out_real.is_relative_to(source_real):
        raise PrepareError(f"{out} is inside the dataset folder {source}; choose a folder outside it — prepare never "
                           "writes next to your originals.")
    if source_real.is_relative_to(out_real):
        raise PrepareError(f"{out} contains the dataset folder {source}; choose a new folder outside it.")
    if out.exists() and not out.is_dir():
        raise PrepareError(f"{out} is a file; choose a new folder for the prepared copy.")
    if not out.exists() or not any(out.iterdir()):
        return []
    marker = out / PREPARED_MARKER
    try:
        files = json.loads(read_bytes_capped(marker, 64 << 20, "marker file").decode("utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):  # FileRefused is a ValueError
        raise PrepareError(f"{out} already holds files that LoRA Studio did not prepare; choose a new or empty folder "
                           "so that nothing of yours is overwritten.") from None
    return [str(name) for name in files]


def _select(report: ScanReport, keep_flagged: bool, decisions: dict[str, bool]
            ) -> tuple[list[ImageReport], dict[str, str]]:
    chosen: list[ImageReport] = []
    skipped: dict[str, str] = {}
    for image in report.images:
        if not image.readable:
            skipped[image.relpath] = "cannot be decoded (" + ", ".join(image.codes) + ")."
            continue
        decision = decisions.get(image.relpath, image.decision)
        keep = decision if decision is not None else (keep_flagged or image.keep)
        if keep:
            chosen.append(image)
        elif decision is False:
            skipped[image.relpath] = "dropped by your keep/drop choice."
        else:
            skipped[image.relpath] = "flagged: " + ", ".join(c for c in image.codes if c in DROP_FLAGS) + "."
    return chosen, skipped


def _output_names(relpaths: list[str], suffix: str) -> dict[str, str]:
    """Output relpath per source relpath in the new format; clashes (a.jpg and a.png) get the old type added."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for relpath in relpaths:
        path = Path(relpath)
        candidates = [path.with_suffix(suffix), path.with_name(f"{path.stem}-{path.suffix.lstrip('.')}{suffix}")]
        candidates += [path.with_name(f"{path.stem}-{number}{suffix}") for number in range(2, len(relpaths) + 3)]
        name = next(c.as_posix() for c in candidates if c.as_posix().lower() not in taken)
        taken.add(name.lower())
        names[relpath] = name
    return names


def _write_captions(report: ScanReport, out: Path, written: list[PreparedImage]) -> Path | None:
    """metadata.csv for the written images that have a caption; None when the dataset has no caption file."""
    if not report.metadata_path:
        return None
    try:
        prompts = read_metadata(report.metadata_path).prompts()
    except DatasetError:
        return None  # the scan already reported the unreadable caption file
    records = [CaptionRecord(item.output, prompts[item.source]) for item in written
               if prompts.get(item.source, "").strip()]
    return write_metadata(out / "metadata.csv", records) if records else None


def _remove_stale(out: Path, previous: list[str], current: set[str]) -> None:
    """Delete files an earlier prepare wrote to ``out`` that this one did not write again."""
    for name in previous:
        path = resolve_inside(out, name)
        if name not in current and path is not None and path.is_file():
            path.unlink()


def _write_marker(out: Path, report: ScanReport, files: list[str], target_side: int, file_format: str) -> None:
    record = {"version": 1, "source": report.folder, "files": files, "target_side": target_side,
              "format": file_format, "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    atomic_write_text(out / PREPARED_MARKER, json.dumps(record, indent=2, ensure_ascii=False) + "\n")
