"""The scan's rules: which numbers raise which flag, duplicate grouping, greyscale-in-colour, caption coverage."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.data.folder import is_link_loop, loop_problem
from studio.data.metadata import (IMAGE_EXTENSIONS, NAMED_ON_LINE, DatasetError, DatasetProblem, read_metadata,
                                   resolve_inside)
from studio.data.quality import colour_distance, group_pairs, hamming, near_duplicate_pairs
from studio.data.scan_report import DROP_FLAGS, DuplicateGroup, Flag, ImageReport, ScanProblem

if TYPE_CHECKING:
    from studio.data.scan import Measurement


@dataclass
class Captions:
    """Captions by image relpath (``None`` when the folder has no metadata.csv) and what is wrong with the file."""

    prompts: dict[str, str] | None
    path: Path | None
    errors: list[ScanProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def read_captions(root: Path, metadata_path: Path | None) -> Captions:
    """Read ``metadata_path`` (default ``root/metadata.csv``) and list captions whose image is missing.

    An explicitly given caption file that does not exist is a :class:`DatasetError`; a missing default file only
    means the captions are not checked yet.
    """
    path = root / "metadata.csv" if metadata_path is None else metadata_path
    if not path.exists() and not path.is_symlink():  # anything else (a folder, a device, a loop) is read and refused
        if metadata_path is not None:
            raise DatasetError([DatasetProblem(str(path), None, "the caption file does not exist; give the path of "
                                               "your metadata.csv or leave the option out.")])
        return Captions(None, None, notes=[f"{path} does not exist, so captions were not checked."])
    try:
        table = read_metadata(path)
    except DatasetError as error:
        return Captions(None, path, [ScanProblem(problem.path, "metadata", problem.message)
                                     for problem in error.problems])
    captions = Captions(table.prompts(), path, notes=list(table.warnings))
    for record in table.records:
        if Path(record.filename).suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        target = resolve_inside(root, record.filename)
        if target is not None and target.exists() and not target.is_dir():
            continue  # the scan reads it, and flags a pipe or a device there as unreadable
        named = record.filename if table.quoted else NAMED_ON_LINE
        problem = (loop_problem(named) if is_link_loop(root / record.filename) else
                   f"{named} has a caption but there is no such image in {root}; add the image or delete the row.")
        captions.errors.append(ScanProblem(str(path), "caption_without_image", f"line {record.line}: {problem}"))
    return captions


def flag_image(measurement: Measurement, settings: dict[str, Any], captions: Captions) -> list[Flag]:
    """Flags that depend on the image alone (and its caption); duplicates and greyscale are set-level."""
    if measurement.problem:
        return [Flag(measurement.problem, measurement.message, measurement.values)]
    flags: list[Flag] = []
    width, height = measurement.width, measurement.height
    shorter, longer = min(width, height), max(width, height)
    if shorter < settings["min_side"]:
        flags.append(Flag("small", f"{width}x{height}: the shorter side is {shorter} px, below {settings['min_side']} "
                          "px, so training would upscale it and learn the softness; use a larger version or drop it.",
                          {"width": width, "height": height, "shorter_side": shorter,
                           "min_side": settings["min_side"]}))
    ratio = longer / max(shorter, 1)
    if ratio > settings["max_aspect"]:
        flags.append(Flag("extreme_aspect", f"aspect ratio {ratio:.1f}:1 is beyond {settings['max_aspect']:g}:1; "
                          "training crops most of it away, so crop it to the subject first.",
                          {"ratio": round(ratio, 3), "max_aspect": settings["max_aspect"]}))
    if measurement.sharpness < settings["blur_threshold"]:
        flags.append(Flag("blurry", f"looks blurry (sharpness {measurement.sharpness:.1f}, below "
                          f"{settings['blur_threshold']:g}); a LoRA learns blur too, so replace it with a sharp "
                          "picture or drop it.",
                          {"sharpness": measurement.sharpness, "threshold": settings["blur_threshold"]}))
    if captions.prompts is not None:
        prompt = captions.prompts.get(measurement.relpath)
        if prompt is None or not prompt.strip():
            where = captions.path.name if captions.path else "metadata.csv"
            problem = "has no caption in" if prompt is None else "has an empty caption in"
            flags.append(Flag("no_caption", f"{problem} {where}; add a row  {measurement.relpath},\"what it shows\"  "
                              "or caption it in the studio.", {"metadata": str(captions.path)}))
    return flags


def mark_duplicates(images: list[ImageReport], max_distance: int, max_colour_distance: float = 255.0
                    ) -> list[DuplicateGroup]:
    """Flag exact copies (same sha256) and near-copies (pHash within ``max_distance`` bits and colour grids within
    ``max_colour_distance``, see :mod:`studio.data.quality`); return the groups.

    In each group the first file (by path) of identical copies, and the best of near-copies (no other drop-flag,
    then the longest shorter side, then the sharpest), is left unflagged: it is the one to keep.
    """
    groups: list[DuplicateGroup] = []
    by_content: dict[str, list[ImageReport]] = {}
    for image in images:
        if image.readable:
            by_content.setdefault(image.sha256, []).append(image)
    originals = []
    for members in by_content.values():
        keep = members[0]
        originals.append(keep)
        if len(members) > 1:
            groups.append(DuplicateGroup("exact", [member.relpath for member in members], keep.relpath, 0))
            for member in members[1:]:
                member.flags.append(Flag("exact_duplicate", f"is byte-for-byte the same file as {keep.relpath}; "
                                         "delete the copy.", {"of": keep.relpath, "sha256": member.sha256,
                                                              "group": len(groups) - 1}))
    hashes = [int(image.phash, 16) for image in originals]
    pairs = [(first, second, bits) for first, second, bits in near_duplicate_pairs(hashes, max_distance)
             if colour_distance(originals[first].colours, originals[second].colours) <= max_colour_distance]
    for indices in group_pairs(len(originals), pairs):
        members = [originals[index] for index in indices]
        best = max(members, key=_keeper_rank)
        distances = {member.relpath: hamming(int(member.phash, 16), int(best.phash, 16)) for member in members}
        groups.append(DuplicateGroup("near", [member.relpath for member in members], best.relpath,
                                     max(distances.values())))
        for member in members:
            if member is not best:
                distance = distances[member.relpath]
                member.flags.append(Flag("near_duplicate", f"looks almost the same as {best.relpath} (perceptual "
                                         f"hashes {distance} of 64 bits apart, {max_distance} or fewer counts); "
                                         "near-copies make a LoRA overfit, so keep the better one.",
                                         {"of": best.relpath, "distance": distance, "max_distance": max_distance,
                                          "group": len(groups) - 1}))
    return groups


def _keeper_rank(image: ImageReport) -> tuple:
    return (not DROP_FLAGS.intersection(image.codes), min(image.width, image.height), image.width * image.height,
            image.sharpness)


def mark_greyscale(images: list[ImageReport], limit: float) -> None:
    """Flag greyscale pictures when at least half of the readable pictures are in colour."""
    readable = [image for image in images if image.readable]
    colour = sum(image.chroma > limit for image in readable)
    if not colour or colour * 2 < len(readable):
        return
    for image in readable:
        if image.chroma <= limit:
            image.flags.append(Flag("grayscale", f"is greyscale (colour spread {image.chroma:.0f}, at most {limit:g}) "
                                    f"while {colour} of {len(readable)} pictures are in colour; the LoRA would learn "
                                    "to drop colour, so use a colour version or drop it.",
                                    {"chroma": image.chroma, "limit": limit, "colour_images": colour,
                                     "images": len(readable)}))
