"""Dataset scan throughput: 1,000 generated 768 px JPEGs, images per second with 1 and 2 workers.

    python bench/bench_scan.py [--quick] [--no-write]

The pictures (varied synthetic content, deterministic) are generated once into the temp folder and reused. Each
run times ``scan_folder`` over the whole folder and reports wall-clock images/s, CPU milliseconds per image (the
number that does not depend on other load on the machine) and the extrapolated time for 10,000 images. Goal:
10,000 images in under 60 s. Without ``--no-write`` the table replaces the ``## Dataset scan`` section of
BENCHMARKS.md (``--quick``, 100 pictures, never writes).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import PIL

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.data.decode import decode_rgb  # noqa: E402
from studio.data.parallel import map_files, reused_image_memory  # noqa: E402
from studio.data.quality import WORKING_SIDE, chroma, phash, sharpness, working_grey  # noqa: E402
from studio.data.scan import scan_folder  # noqa: E402
from studio.data.synthetic import synthetic_image  # noqa: E402
from studio.util.fs import atomic_write_text  # noqa: E402

SIDE = 768
SECTION = "## Dataset scan"
COMMAND = "OMP_NUM_THREADS=1 python bench/bench_scan.py"


def _write_picture(task: tuple[int, str]) -> None:
    seed, path = task
    synthetic_image(seed, (SIDE, SIDE)).save(path, quality=90)


def picture_folder(count: int) -> Path:
    """``count`` deterministic 768x768 JPEGs in a temp folder, generated on the first call only."""
    folder = Path(tempfile.gettempdir()) / f"lora-studio-bench-scan-{count}x{SIDE}"
    done = folder / ".complete"
    if not done.exists():
        folder.mkdir(parents=True, exist_ok=True)
        tasks = [(seed, str(folder / f"{seed:05d}.jpg")) for seed in range(count)]
        map_files(_write_picture, tasks, workers=2)
        done.write_text("ok\n")
    return folder


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)  # pool workers, counted once the pool has shut down
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def time_scan(folder: Path, workers: int, repeats: int) -> dict:
    """The fastest of ``repeats`` scans (other load on a shared machine only ever slows a run down)."""
    runs = []
    for _ in range(repeats):
        cpu, started = _cpu_seconds(), time.perf_counter()
        report = scan_folder(folder, workers=workers)
        runs.append((time.perf_counter() - started, _cpu_seconds() - cpu))
    seconds, cpu = min(runs)
    count = len(report.images)
    return {"workers": workers, "images": count, "seconds": round(seconds, 2),
            "all_seconds": [round(run[0], 2) for run in runs], "images_per_s": round(count / seconds, 1),
            "cpu_ms_per_image": round(cpu / count * 1000, 2), "seconds_for_10k": round(seconds / count * 10_000, 1),
            "flags": report.counts_by_flag}


def profile_stages(folder: Path, count: int = 200, repeats: int = 3) -> dict[str, float]:
    """CPU ms per picture of each step of the scan's worker (:func:`studio.data.scan.measure_file`), in this
    process, each step over ``count`` pictures (fastest of ``repeats`` passes)."""
    paths = sorted(folder.glob("*.jpg"))[:count]
    datas = [path.read_bytes() for path in paths]
    decoded = [decode_rgb(data, draft_side=WORKING_SIDE).image for data in datas]
    greys = [working_grey(image) for image in decoded]
    steps = [("read + sha256", lambda path: hashlib.sha256(path.read_bytes()).hexdigest(), paths),
             ("decode (JPEG draft mode, EXIF)", lambda data: decode_rgb(data, draft_side=WORKING_SIDE), datas),
             ("greyscale 512 px working copy", working_grey, decoded), ("sharpness", sharpness, greys),
             ("pHash", phash, greys), ("colour", chroma, decoded)]
    result = {}
    with reused_image_memory():
        for name, step, items in steps:
            best = float("inf")
            for _ in range(repeats):
                started = time.process_time()
                for item in items:
                    step(item)
                best = min(best, time.process_time() - started)
            result[name] = round(best / len(items) * 1000, 3)
    return result


def machine() -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        # GNU nproc reports OMP_NUM_THREADS when it is set; the machine's count is wanted here.
        env = {key: value for key, value in os.environ.items() if key not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
        nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True, env=env).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        nproc = str(os.cpu_count())
    return {"nproc": nproc, "python": platform.python_version(), "pillow": PIL.__version__,
            "date": date.today().isoformat(), "load_before": round(load, 2), "platform": platform.platform()}


def run(quick: bool = False) -> dict:
    """Generate (once) and scan 100 (quick, once) or 1,000 pictures (best of 3) with 1 and then 2 workers."""
    count, repeats = (100, 1) if quick else (1000, 3)
    folder = picture_folder(count)
    info = machine()
    results = [time_scan(folder, workers, repeats) for workers in (1, 2)]
    return {"pictures": count, "side": SIDE, "repeats": repeats, "machine": info, "results": results,
            "profile": profile_stages(folder, count=min(count, 200))}


def markdown(result: dict) -> str:
    info = result["machine"]
    lines = [SECTION, "",
             f"`{COMMAND}` — {result['pictures']:,} generated {result['side']}x{result['side']} JPEGs (quality 90, "
             "synthetic shapes, textures, strokes and grain), each scanned in full: read, sha256, JPEG decode, "
             "sharpness, pHash, colour, then duplicate grouping.",
             "",
             f"Machine: {info['nproc']} CPUs (`nproc`), Python {info['python']}, Pillow {info['pillow']}, "
             f"{info['platform']}, {info['date']}. Other programs share these CPUs (load average "
             f"{info['load_before']} when the run started), which slows the wall clock; CPU ms per image is the "
             "cost that does not depend on that load.",
             "",
             f"Best of {result['repeats']} runs (all runs listed, in order). With 1 worker the scan runs in the "
             "benchmark's own process; with 2, each run starts a new pool of worker processes.",
             "",
             "| workers | images | seconds (best) | all runs (s) | images/s | CPU ms / image | 10,000 images "
             "(extrapolated) |",
             "|---:|---:|---:|---|---:|---:|---:|"]
    for row in result["results"]:
        runs = ", ".join(str(value) for value in row["all_seconds"])
        lines.append(f"| {row['workers']} | {row['images']:,} | {row['seconds']} | {runs} | {row['images_per_s']} | "
                     f"{row['cpu_ms_per_image']} | {row['seconds_for_10k']} s |")
    best = min(row["seconds_for_10k"] for row in result["results"])
    verdict = "**met**" if best < 60 else "**NOT met**"
    pooled = result["results"][-1]
    cores = min(pooled["workers"], int(info["nproc"]) if info["nproc"].isdigit() else 1)
    projected = round(pooled["cpu_ms_per_image"] * 10_000 / 1000 / cores, 1)
    lines += ["", f"Goal: 10,000 images in under 60 s — {verdict} ({best} s extrapolated from the best run). "
              f"CPU-bound projection with {cores} core(s) free for the scan: 10,000 x {pooled['cpu_ms_per_image']} ms "
              f"/ {cores} = {projected} s.", ""]
    profile = result.get("profile")
    if profile:
        steps = ", ".join(f"{name} {ms:.2f}" for name, ms in profile.items())
        lines += [f"CPU ms per picture of each step of the scan's worker (fastest of 3 passes over "
                  f"{min(result['pictures'], 200)} pictures, this process): {steps}; total "
                  f"{sum(profile.values()):.2f}.", ""]
    lines += ["Reading: the scan is CPU-bound. Decoding a 768 px JPEG cannot use a reduced DCT scale (half would be "
              "384 px, below the 512 px working copy that keeps the blur measure calibrated, see "
              "`studio/data/quality.py`), so decode and the scaled greyscale copy are most of the cost. Worker "
              "processes keep freed memory for reuse (Pillow's image blocks and glibc's allocator), which spares a "
              "fresh process from mapping and faulting in every picture's buffers anew; the in-process 1-worker "
              "scan leaves the calling program's allocator alone, so its first run is slower. Extra workers help "
              "only as far as cores are free.",
              ""]
    return "\n".join(lines)


def write_section(text: str, path: Path = ROOT / "BENCHMARKS.md") -> None:
    """Replace this benchmark's section in BENCHMARKS.md (created with its title if missing), leaving others."""
    current = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    lines = current.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.rstrip() == SECTION), None)
    if start is None:
        body = current.rstrip("\n") + "\n\n" + text
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
        rest = "".join(lines[end:])
        body = "".join(lines[:start]) + text + ("\n" + rest if rest else "")
    atomic_write_text(path, body.rstrip("\n") + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 pictures, nothing written")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args()
    result = run(quick=args.quick)
    text = markdown(result)
    print(text)
    if not args.quick and not args.no_write:
        write_section(text)


if __name__ == "__main__":
    main()
