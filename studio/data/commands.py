"""``python studio.py scan DIR``: the dataset quality report (and a prepared copy) from the command line.

Exit codes: 0 the scan ran and found no errors (flags are advice, not errors), 1 there are errors (corrupt files,
decompression bombs, captions without an image, an unreadable metadata.csv), 2 bad usage (missing folder, output
folder refused, bad option values).
"""
from __future__ import annotations

import sys
import time

EXIT_OK, EXIT_ERRORS, EXIT_USAGE = 0, 1, 2


def register(subparsers) -> None:
    """Add the ``scan`` sub-command to the studio's argument parser."""
    scan = subparsers.add_parser("scan", help="check a folder of images for what hurts a LoRA; optionally write a "
                                 "clean, resized copy of the good ones")
    scan.add_argument("folder", metavar="DIR", help="the folder of training images (with metadata.csv, if any)")
    scan.add_argument("--json", metavar="REPORT.json", help="also write the full report as JSON")
    scan.add_argument("--prepare", metavar="OUT", help="write the kept images, resized, to this new folder")
    scan.add_argument("--min-side", type=int, default=512, metavar="PX",
                      help="flag images whose shorter side is below this (default 512)")
    scan.add_argument("--recursive", action="store_true", help="include images in sub-folders")
    scan.add_argument("--workers", type=int, default=None, metavar="N",
                      help="decoding processes (default: CPU cores, at most 4)")
    scan.add_argument("--keep-flagged", action="store_true", help="with --prepare: keep flagged images too")
    scan.add_argument("--upscale", action="store_true",
                      help="with --prepare: upscale images smaller than the target side (they are flagged)")
    scan.add_argument("--target-side", type=int, default=512, metavar="PX",
                      help="with --prepare: shorter side of the written images (default 512)")
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
    started = time.perf_counter()
    bar = _ProgressBar(args.quiet)
    try:
        report = scan_folder(args.folder, recursive=args.recursive, min_side=args.min_side, workers=args.workers,
                             progress=bar)
    except DatasetError as error:
        return _usage(str(error))
    finally:
        bar.close()
    _print_report(report, time.perf_counter() - started, args.quiet)
    if args.json:
        try:
            atomic_write_text(args.json, report.to_json())
        except OSError as error:
            return _usage(f"{args.json}: cannot be written ({error.strerror or error}); choose another path.")
        print(f"report: {args.json}")
    if args.prepare:
        try:
            result = prepare_dataset(report, args.prepare, target_side=args.target_side, upscale=args.upscale,
                                     keep_flagged=args.keep_flagged, format=args.format, workers=args.workers)
        except (PrepareError, DatasetError) as error:
            return _usage(str(error))
        print(result.summary())
    print(report.verdict)
    return EXIT_ERRORS if report.errors else EXIT_OK


def _usage(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return EXIT_USAGE


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


class _ProgressBar:
    """A tqdm bar on stderr fed by ``progress(done, total)``; silent with ``quiet``."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="img", dynamic_ncols=True, file=sys.stderr, leave=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
