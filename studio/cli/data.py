"""``python studio.py scan DIR``: the dataset quality report (and a prepared copy) from the command line.

Exit codes: 0 the folder is ready for training (every picture is ready or kept/dropped by the user's choice, every
picture has a caption) or, with ``--prepare``, the clean copy is (pictures, each with a caption); 1 something needs
action first (unreadable files, flagged pictures, missing captions or metadata.csv, no pictures, a clean copy
without pictures or captions); 2 bad usage (missing folder, output folder refused, bad option values).

``--resolution`` is the side the LoRA will train at (512 for SD 1.x, 1024 for SDXL, 32 for the toy worlds):
pictures whose shorter side is below it are flagged as too small, and ``--prepare`` resizes to it.
"""
from __future__ import annotations

import sys
import time

from studio.cli.console import CountBar, print_error
from studio.cli.exits import EXIT_FINDINGS, EXIT_OK, EXIT_USER_ERROR


def register(subparsers) -> None:
    """Add the ``scan`` sub-command to the studio's argument parser."""
    scan = subparsers.add_parser("scan", help="check a folder of images for what hurts a LoRA; optionally write a "
                                 "clean, resized copy of the good ones")
    scan.add_argument("folder", metavar="DIR", help="the folder of training images (with metadata.csv, if any)")
    scan.add_argument("--json", metavar="REPORT.json", help="also write the full report as JSON")
    scan.add_argument("--prepare", metavar="OUT", help="write the kept images, resized, to this new folder")
    scan.add_argument("--resolution", type=int, default=512, metavar="PX",
                      help="the training resolution: 512 for SD 1.x (default), 1024 for SDXL, 32 for the toy worlds")
    scan.add_argument("--min-side", type=int, default=None, metavar="PX",
                      help="flag images whose shorter side is below this (default: the training resolution)")
    scan.add_argument("--recursive", action="store_true", help="include images in sub-folders")
    scan.add_argument("--workers", type=int, default=None, metavar="N",
                      help="decoding processes (default: CPU cores, at most 4)")
    scan.add_argument("--keep-flagged", action="store_true", help="with --prepare: keep flagged images too")
    scan.add_argument("--upscale", action="store_true",
                      help="with --prepare: upscale images smaller than the target side (they are flagged)")
    scan.add_argument("--target-side", type=int, default=None, metavar="PX",
                      help="with --prepare: shorter side of the written images (default: the training resolution)")
    scan.add_argument("--format", default="png", choices=("png", "jpg", "webp"),
                      help="with --prepare: file format of the written images (default png)")
    scan.add_argument("--quiet", action="store_true", help="no progress bar and no per-image lines")
    scan.set_defaults(handler=cmd_scan)


def cmd_scan(args) -> int:
    from studio.data.metadata import DatasetError
    from studio.data.prepare import PrepareError, prepare_dataset
    from studio.data.scan import scan_folder
    from studio.util.fs import atomic_write_text

    if args.workers is not None and args.workers < 1:
        return _usage(f"--workers must be at least 1, got {args.workers}.")
    if args.resolution < 8:
        return _usage(f"--resolution {args.resolution} is too small; give the side the LoRA trains at, such as 512.")
    started = time.perf_counter()
    try:
        with CountBar("img", args.quiet, leave=False) as bar:
            report = scan_folder(args.folder, recursive=args.recursive, min_side=args.min_side or args.resolution,
                                 workers=args.workers, progress=bar)
    except DatasetError as error:
        return _usage(str(error))
    _print_report(report, time.perf_counter() - started, args.quiet)
    if args.json:
        try:
            atomic_write_text(args.json, report.to_json())
        except OSError as error:
            return _usage(f"{args.json}: cannot be written ({error.strerror or error}); choose another path.")
        print(f"report: {args.json}")
    if args.prepare:
        try:
            result = prepare_dataset(report, args.prepare, target_side=args.target_side or args.resolution,
                                     upscale=args.upscale, keep_flagged=args.keep_flagged, format=args.format,
                                     workers=args.workers)
        except (PrepareError, DatasetError) as error:
            return _usage(str(error))
        print(result.summary())
        print(report.verdict)
        return EXIT_OK if _copy_ready(result) else EXIT_FINDINGS
    print(report.verdict)
    return EXIT_FINDINGS if report.needs_action else EXIT_OK


def _copy_ready(result) -> bool:
    """Whether the clean copy can be trained on: it holds pictures, each with a caption."""
    uncaptioned = [item.source for item in result.written if "no_caption" in result.report.image(item.source).codes]
    if result.written and result.metadata_path and not uncaptioned:
        return True
    why = ("it holds no picture" if not result.written else
           f"{len(uncaptioned)} of its pictures have no caption" if result.metadata_path and uncaptioned else
           "it has no metadata.csv (the dataset has no captions)")
    print(f"The clean copy is not ready for training: {why}.", file=sys.stderr)
    return False


def _usage(message: str) -> int:
    print_error(message)
    return EXIT_USER_ERROR


def _print_report(report, seconds: float, quiet: bool) -> None:
    """Flagged images on stdout (one line per reason), errors and notes on stderr, the verdict printed last."""
    print(f"Scanned {len(report.images)} image(s) in {report.folder} in {seconds:.1f} s.")
    if not quiet:
        for image in report.images:
            for flag in image.flags:
                print(f"  {image.relpath}: [{flag.code}] {flag.message}")
    if report.counts_by_flag:
        print("Flags: " + ", ".join(f"{code} {count}" for code, count in report.counts_by_flag.items()))
    for problem in report.errors:
        print(f"error: {problem}", file=sys.stderr)
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
