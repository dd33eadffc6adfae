"""A dataset brought in as a zip (pictures + metadata.csv or caption .txt files), unpacked safely into the workspace.

This is how a remote user brings data in. Nothing in the zip can choose where it lands: names that are absolute or
climb out with ``..``, links, encrypted entries and device files refuse the whole upload; only pictures and caption
files are written (other files are skipped and listed); the number of files, their total size and each entry's
compression ratio are capped, and every entry is written by counting the bytes that really come out of it, so a
zip bomb stops at the cap. The folder appears under ``<workspace>/datasets/`` only once it is complete.
"""
from __future__ import annotations

import os
import re
import secrets
import shutil
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from studio.data.metadata import IMAGE_EXTENSIONS
from studio.util.reading import size_text

from .access import AccessError

CAPTION_EXTENSIONS = frozenset({".csv", ".txt", ".caption"})
SKIPPED_QUIETLY = frozenset({"Thumbs.db", "desktop.ini"})
CHUNK = 1 << 20


class UploadError(AccessError):
    """The zip was refused; the message names the entry and what to do."""


@dataclass(frozen=True)
class UploadLimits:
    max_files: int = 20_000
    max_total_bytes: int = 8 << 30  # unpacked
    max_ratio: float = 200.0  # unpacked / packed size of one entry, checked past 1 MiB unpacked
    max_depth: int = 8  # folders inside the dataset


@dataclass
class UploadResult:
    folder: Path
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # entries that are neither pictures nor caption files

    def summary(self) -> str:
        pictures = sum(Path(name).suffix.lower() in IMAGE_EXTENSIONS for name in self.written)
        text = f"unpacked {pictures} picture(s) and {len(self.written) - pictures} caption file(s) into {self.folder}"
        if self.skipped:
            more = len(self.skipped) - 5
            shown = ", ".join(self.skipped[:5]) + (f" and {more} more" if more > 0 else "")
            text += f"; skipped {len(self.skipped)} other file(s) ({shown})"
        return text


def unpack_dataset_zip(zip_path: str | os.PathLike, datasets_dir: Path, name: str = "",
                       limits: UploadLimits = UploadLimits()) -> UploadResult:
    """Unpack ``zip_path`` into a new folder ``datasets_dir/<name>`` (``<name>-2`` … when taken)."""
    zip_path = Path(zip_path)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as error:
        raise UploadError(f"{zip_path.name} is not a readable zip file ({type(error).__name__}); make the archive "
                          "again with your system's 'compress to zip'") from None
    with archive:
        plan, skipped = _plan(archive, limits)
        datasets_dir.mkdir(parents=True, exist_ok=True)
        staging = datasets_dir / f".upload-{secrets.token_hex(8)}"
        staging.mkdir()  # the user's umask applies, unlike mkdtemp's 0700
        try:
            written = _extract(archive, plan, staging, limits)
            target = _free_name(datasets_dir, _safe_stem(name or zip_path.stem))
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return UploadResult(target, written, skipped)


def _plan(archive: zipfile.ZipFile, limits: UploadLimits) -> tuple[list[tuple[zipfile.ZipInfo, str]], list[str]]:
    """(entry, relative name to write) for every picture and caption file; the names of the other files."""
    entries = [info for info in archive.infolist() if not info.is_dir()]
    if len(entries) > limits.max_files:
        raise UploadError(f"the zip holds {len(entries)} files, more than {limits.max_files}; split the dataset "
                          "into several zips")
    named = [(info, _checked_name(info)) for info in entries]
    named = [(info, name) for info, name in named if not _junk(name)]
    prefix = _common_folder([name for _, name in named])
    plan, skipped, declared = [], [], 0
    for info, name in named:
        relative = name[len(prefix):]
        if PurePosixPath(relative).suffix.lower() not in IMAGE_EXTENSIONS | CAPTION_EXTENSIONS:
            skipped.append(relative)
            continue
        if len(PurePosixPath(relative).parts) - 1 > limits.max_depth:
            raise UploadError(f"{name} is nested more than {limits.max_depth} folders deep; flatten the dataset")
        declared += info.file_size
        plan.append((info, relative))
    if declared > limits.max_total_bytes:
        raise UploadError(f"the zip unpacks to {size_text(declared)}, more than "
                          f"{size_text(limits.max_total_bytes)}; upload fewer or smaller pictures")
    if not any(PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS for _, name in plan):
        raise UploadError("the zip holds no pictures (.png, .jpg, .webp …); zip the folder of training pictures "
                          "with its metadata.csv")
    return plan, skipped


def _junk(name: str) -> bool:
    """Files that file managers add to a zip (resource forks, folder settings, hidden files): skipped silently."""
    path = PurePosixPath(name)
    return path.parts[0] == "__MACOSX" or path.name in SKIPPED_QUIETLY or path.name.startswith(".")


def _checked_name(info: zipfile.ZipInfo) -> str:
    """The entry's name as a safe relative POSIX path; UploadError for anything that could land elsewhere."""
    name = info.filename.replace("\\", "/")
    kind = stat.S_IFMT(info.external_attr >> 16)
    if kind and kind != stat.S_IFREG:
        what = "a link" if kind == stat.S_IFLNK else "not a plain file"
        raise UploadError(f"{name!r} in the zip is {what}; zip the pictures themselves, not links to them")
    if info.flag_bits & 0x1:
        raise UploadError(f"{name!r} in the zip is encrypted; zip the dataset without a password")
    if "\x00" in name or name.startswith("/") or re.match(r"^[A-Za-z]:", name) or ".." in name.split("/"):
        raise UploadError(f"{name!r} in the zip points outside the dataset folder (an absolute path or '..'); "
                          "zip the folder itself")
    return str(PurePosixPath(name))


def _common_folder(names: list[str]) -> str:
    """``"top/"`` when every entry lies in one top folder (as a zipped folder does), else ``""``."""
    tops = {PurePosixPath(name).parts[0] for name in names if len(PurePosixPath(name).parts) > 1}
    if len(tops) == 1 and all(len(PurePosixPath(name).parts) > 1 for name in names):
        return tops.pop() + "/"
    return ""


def _extract(archive: zipfile.ZipFile, plan, staging: Path, limits: UploadLimits) -> list[str]:
    total, written = 0, []
    for info, relative in plan:
        target = staging / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        size = 0
        with archive.open(info) as source, open(target, "xb") as sink:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                total += len(chunk)
                _check_growth(relative, size, info.compress_size, total, limits)
                sink.write(chunk)
        written.append(relative)
    return written


def _check_growth(name: str, size: int, packed: int, total: int, limits: UploadLimits) -> None:
    if total > limits.max_total_bytes:
        raise UploadError(f"the zip unpacks to more than {size_text(limits.max_total_bytes)} (stopped at {name}); "
                          "upload fewer or smaller pictures")
    if size > CHUNK and size > limits.max_ratio * max(packed, 1):
        raise UploadError(f"{name} in the zip unpacks to over {limits.max_ratio:.0f} times its packed size, as a "
                          "zip bomb does; it was not unpacked")


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:80] or "dataset"


def _free_name(folder: Path, stem: str) -> Path:
    for index in range(1, 10_000):
        candidate = folder / (stem if index == 1 else f"{stem}-{index}")
        if not candidate.exists():
            return candidate
    raise UploadError(f"{folder} already holds too many datasets named {stem}; pick another name")
