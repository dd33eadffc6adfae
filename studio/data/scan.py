"""Dataset scan: find what hurts a LoRA before the user spends hours training on it.

``scan_folder`` reads every image of a folder once (content hash and decode share the read; JPEGs are decoded at
reduced size in draft mode), in a process pool, and flags, with the reason and the numbers behind it: small
pictures (below the training resolution, ``min_side``), blur, near and exact duplicates (near: alike in brightness
structure and colour layout), corrupt or truncated files, decompression bombs (refused from the header),
extreme aspect ratios, greyscale pictures in a colour set, and images and captions that lack each other. The
measures and their calibration are described in :mod:`studio.data.quality`. Nothing in the folder is written except
through :func:`save_decisions`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from studio.data.decode import DEFAULT_MAX_PIXELS, UnreadableImage, decode_rgb
from studio.data.folder import follow, loop_problem
from studio.data.images import MAX_IMAGE_BYTES
from studio.data.metadata import IMAGE_EXTENSIONS, DatasetError, DatasetProblem
from studio.data.parallel import Progress, map_files
from studio.data.quality import (BLUR_THRESHOLD, COLOUR_DISTANCE, GREYSCALE_CHROMA, NEAR_DUPLICATE_DISTANCE,
                                 WORKING_SIDE, chroma, colour_grid, phash, sharpness, working_grey)
from studio.data.scan_checks import Captions, flag_image, mark_duplicates, mark_greyscale, read_captions
from studio.data.scan_report import (DROP_FLAGS, FLAG_CODES, DuplicateGroup, Flag, ImageReport, ScanProblem,
                                     ScanReport, count_flags, load_decisions, make_verdict, save_decisions)
from studio.util.reading import FileRefused, read_bytes_capped

MAX_ASPECT = 3.0

__all__ = ["DROP_FLAGS", "FLAG_CODES", "MAX_ASPECT", "DuplicateGroup", "Flag", "ImageReport", "ScanProblem",
           "ScanReport", "list_images", "load_decisions", "measure_file", "save_decisions", "scan_folder"]


@dataclass
class Measurement:
    """What a worker learns from one file; ``problem`` is ``corrupt`` or ``bomb`` when it cannot be used."""

    relpath: str
    width: int = 0
    height: int = 0
    format: str = ""
    mode: str = ""
    sha256: str = ""
    phash: str = ""
    sharpness: float = 0.0
    chroma: float = 0.0
    colours: str = ""
    problem: str | None = None
    message: str = ""
    values: dict = field(default_factory=dict)


def measure_file(task: tuple[str, str, tuple[int, int, int], int]) -> Measurement:
    """Worker: ``(path, relpath, background, max_pixels)`` -> sizes, hashes, sharpness and colourfulness."""
    path, relpath, background, max_pixels = task
    result = Measurement(relpath)
    try:
        data = read_bytes_capped(path, MAX_IMAGE_BYTES, "picture")
    except FileRefused as error:
        result.problem, result.message = "corrupt", error.reason
        return result
    except OSError as error:
        result.problem = "corrupt"
        result.message = (f"cannot be read ({error.strerror or error}); check that you may read it and that it is not "
                          "being written by another program.")
        return result
    result.sha256 = hashlib.sha256(data).hexdigest()
    try:
        decoded = decode_rgb(data, background=background, draft_side=WORKING_SIDE, max_pixels=max_pixels)
    except UnreadableImage as error:
        result.problem, result.message, result.values = error.code, error.message, error.values
        result.width, result.height = error.values.get("width", 0), error.values.get("height", 0)
        return result
    grey = working_grey(decoded.image)
    result.width, result.height, result.format, result.mode = (decoded.width, decoded.height, decoded.format,
                                                                decoded.mode)
    result.sharpness = round(sharpness(grey), 3)
    result.phash = f"{phash(grey):016x}"
    result.chroma = round(chroma(decoded.image), 2)
    result.colours = colour_grid(decoded.image)
    return result


def list_images(folder: Path, recursive: bool = False) -> tuple[list[str], list[str]]:
    """Image files under ``folder`` (``/``-separated relpaths, sorted) and notes about files that were left out.

    Hidden files and folders (such as ``.lora-studio``) are skipped, and so are links that lead outside the folder
    or loop back on themselves.
    """
    root = follow(folder) or folder
    found: list[str] = []
    outside: list[str] = []
    loops: list[str] = []
    nested = 0
    for current, subfolders, files in os.walk(folder):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        relative = Path(current).relative_to(folder)
        for name in files:
            if name.startswith(".") or Path(name).suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            if not recursive and relative.parts:
                nested += 1
                continue
            target = follow(Path(current) / name)
            kept = loops if target is None else found if target.is_relative_to(root) else outside
            kept.append((relative / name).as_posix())
        if not recursive and relative.parts:
            subfolders[:] = []  # one level deep is enough to tell the user about sub-folders
    notes = [f"{name} is a link to a file outside {folder}; copy the image into the folder to scan it."
             for name in sorted(outside)]
    notes += [f"{loop_problem(name)} It was not scanned." for name in sorted(loops)]
    if nested:
        notes.append(f"{nested} image(s) in sub-folders were not scanned; use the recursive option to include them.")
    return sorted(found), notes


def scan_folder(folder: str | os.PathLike, *, recursive: bool = False, min_side: int = 512, workers: int | None = None,
                background: tuple[int, int, int] = (255, 255, 255), metadata_path: str | os.PathLike | None = None,
                progress: Progress | None = None, should_stop: Callable[[], bool] | None = None,
                max_pixels: int = DEFAULT_MAX_PIXELS, max_aspect: float = MAX_ASPECT,
                blur_threshold: float = BLUR_THRESHOLD,
                near_duplicate_distance: int = NEAR_DUPLICATE_DISTANCE) -> ScanReport:
    """Scan ``folder`` and return the report; :class:`DatasetError` when the folder or a setting is unusable.

    ``progress(done, total)`` is called as files finish; when ``should_stop()`` turns true the scan ends early with
    ``complete=False``. ``metadata_path`` defaults to ``folder/metadata.csv`` (captions are not checked when that
    file does not exist). Saved keep/drop decisions (:func:`save_decisions`) are applied to ``keep``.
    """
    root = Path(folder)
    background = _check_arguments(root, min_side, background, max_pixels, max_aspect, workers)
    captions = read_captions(root, None if metadata_path is None else Path(metadata_path))
    relpaths, notes = list_images(root, recursive)
    tasks = [(str(root / relpath), relpath, background, max_pixels) for relpath in relpaths]
    measured, stopped = map_files(measure_file, tasks, workers=workers, progress=progress, should_stop=should_stop)
    settings = {"recursive": recursive, "min_side": min_side, "background": list(background),
                "max_pixels": max_pixels, "max_aspect": max_aspect, "blur_threshold": blur_threshold,
                "near_duplicate_distance": near_duplicate_distance, "colour_distance": COLOUR_DISTANCE,
                "greyscale_chroma": GREYSCALE_CHROMA}
    images = [_image_report(root, measurement, settings, captions) for measurement in measured if measurement]
    mark_greyscale(images, GREYSCALE_CHROMA)
    # after greyscale, so that the keeper of a group is one without flags
    groups = mark_duplicates(images, near_duplicate_distance, COLOUR_DISTANCE)
    for image in images:
        image.flags.sort(key=lambda flag: FLAG_CODES.index(flag.code))
    notes.extend(captions.notes)
    _apply_decisions(root, images, notes)
    errors = [ScanProblem(str(root / image.relpath), flag.code, flag.message)
              for image in images for flag in image.flags if flag.code in ("corrupt", "bomb")] + captions.errors
    counts = count_flags(images, errors)
    verdict = make_verdict(images, counts, errors, captions.prompts is not None)
    if stopped:
        verdict = f"Stopped after {len(images)} of {len(relpaths)} images. " + verdict
    return ScanReport(str(root), images, counts, groups, verdict, errors, notes, settings,
                      None if captions.path is None else str(captions.path), complete=not stopped)


def _check_arguments(root: Path, min_side: int, background, max_pixels: int, max_aspect: float,
                     workers: int | None) -> tuple[int, int, int]:
    problems: list[str] = []
    if not root.is_dir():
        problems.append("the folder does not exist; choose the folder that holds your images."
                        if not root.exists() else "this is a file, not a folder; choose the folder that holds it.")
    if min_side < 1 or max_pixels < 1 or max_aspect < 1 or (workers is not None and workers < 1):
        problems.append(f"settings out of range (min side {min_side}, max pixels {max_pixels}, max aspect "
                        f"{max_aspect}, workers {workers}); each must be at least 1.")
    try:
        colour = tuple(int(channel) for channel in background)
    except (TypeError, ValueError):
        colour = ()
    if len(colour) != 3 or not all(0 <= channel <= 255 for channel in colour):
        problems.append(f"background {background!r} is not an RGB colour; give three numbers from 0 to 255.")
    if problems:
        raise DatasetError([DatasetProblem(str(root), None, problem) for problem in problems])
    return colour  # type: ignore[return-value]


def _image_report(root: Path, measurement: Measurement, settings: dict, captions: Captions) -> ImageReport:
    flags = flag_image(measurement, settings, captions)
    return ImageReport(str(root / measurement.relpath), measurement.relpath, measurement.width, measurement.height,
                       measurement.format, measurement.mode, flags, measurement.phash, measurement.sha256,
                       measurement.sharpness, keep=False, chroma=measurement.chroma, colours=measurement.colours)


def _apply_decisions(root: Path, images: list[ImageReport], notes: list[str]) -> None:
    """``keep`` = the saved decision where there is one, else the suggestion; unreadable files are never kept."""
    try:
        decisions = load_decisions(root)
    except DatasetError as error:
        notes.extend(f"{problem} (the saved keep/drop choices were ignored)" for problem in error.problems)
        decisions = {}
    for image in images:
        image.decision = decisions.get(image.relpath)
        chosen = image.suggested_keep if image.decision is None else image.decision
        image.keep = chosen and image.readable
