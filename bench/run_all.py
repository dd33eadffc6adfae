"""Run every benchmark, print one table, and rewrite the summary section of BENCHMARKS.md.

    OMP_WAIT_POLICY=PASSIVE python bench/run_all.py [--quick] [--dry-run] [--only NAME ...] [--no-write]

Benchmarks: training (bench_train.py), grid (bench_grid.py), caption (bench_caption.py), scan (bench_scan.py),
startup (bench_startup.py), demo (bench_demo.py: the demo preset's wall time with the old and the new default
thread count); each exposes ``run(quick) -> dict`` and runs here in its own subprocess, so one
benchmark's threads, imports and memory never touch the next one's. A module that is not there is reported as
"not available" and skipped; one that fails is reported as failed (exit status 1) and the others still run.
``--dry-run`` lists what would run and imports nothing heavy. The summary goes into ``## Summary
(bench/run_all.py)`` at the top of BENCHMARKS.md; the per-benchmark sections below it belong to their own
scripts (each rewrites its section on a full run) and are left as they are.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

from common import describe_machine, machine, markdown_table, replace_section, verdict  # noqa: E402

SECTION = "## Summary (bench/run_all.py)"
BENCHMARKS = {"training": "bench_train", "grid": "bench_grid", "caption": "bench_caption", "scan": "bench_scan",
              "startup": "bench_startup", "demo": "bench_demo"}
HEADER = ["benchmark", "measure", "ours", "reference", "ratio", "goal", "met?"]


def available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _plain(value):
    """JSON-safe copy: dict keys as text, tuples and paths as lists and text."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def run_child(name: str, quick: bool, work: Path) -> dict:
    """Run one benchmark in a subprocess; returns its result, or {"error": ...}."""
    out = work / f"{name}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--child", name, "--json", str(out)]
    command += ["--quick"] if quick else []
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(command, cwd=BENCH.parent, capture_output=True, text=True, env=env)
    if done.returncode != 0 or not out.is_file():
        tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
        return {"error": f"exit status {done.returncode}: " + " | ".join(tail)}
    return json.loads(out.read_text(encoding="utf-8"))


def _x(value: float) -> str:
    return f"{value:.2f}×"


def rows_training(result: dict) -> list[list]:
    rows = []
    for row in result["rows"]:
        ours, ref = row["ours"], row["reference"]
        met = dict(row.get("goals") or [])
        # Each scale names its own goals ("SD 1.5 step ≥ 1.5× …", "SDXL-shaped (0.5× width) step ≥ 1.5× …").
        speed = next((v for goal, v in met.items() if "faster than the reference" in goal), "n/a")
        memory = next((v for goal, v in met.items() if "peak RSS no higher" in goal), "n/a")
        where = f"{row['scale']}, {row['resolution']} px, batch {row['batch']}, {row['timed']} timed steps"
        rows.append(["training step", f"s/step, median ({where}); ratio: median of paired rounds",
                     f"{ours['s_per_step']:.3f}", f"{ref['s_per_step']:.3f}", _x(row["speed_ratio"]),
                     "≥ 1.5× (both ratios)" if met else "—", speed])
        rows.append(["training step", f"CPU s/step, median ({row['scale']})", f"{ours['cpu_per_step']:.3f}",
                     f"{ref['cpu_per_step']:.3f}", _x(row["cpu_ratio"]), "≥ 1.5× (both ratios)" if met else "—",
                     speed])
        rows.append(["training step", f"peak RSS MiB ({row['scale']}; ratio ours/ref)", f"{ours['peak_rss_mb']:.0f}",
                     f"{ref['peak_rss_mb']:.0f}", f"{row['memory_ratio']:.2f}", "ours ≤ reference" if met else "—",
                     memory])
        even = row["break_even_steps"]
        rows.append(["training step", f"one-off cache s ({row['scale']}); pays off after", f"{ours['cache_s']:.1f}",
                     "0 (no cache)", "never" if even is None else f"about {even:.0f} steps", "—", "n/a"])
    return rows


def rows_grid(result: dict) -> list[list]:
    return [["grid", f"6 weights × 4 seeds, {row['steps']} steps, s ({row['model']})", f"{row['ours_s']:.2f}",
             f"{row['naive_s']:.2f} (naive)", f"{_x(row['ratio'])} (CPU {_x(row['cpu_ratio'])})", "≥ 3× (both)",
             verdict(row["ratio"] >= 3.0 and row["cpu_ratio"] >= 3.0)]
            for row in result["rows"]]


def rows_caption(result: dict) -> list[list]:
    return [["captioning", f"img/s, {row['images']} images ({row['model']}, batch {row['batch_size']})",
             f"{row['batched_ips']:.2f}", f"{row['single_ips']:.2f} (one at a time)", _x(row["speedup"]), "≥ 2×",
             verdict(row["speedup"] >= 2.0)] for row in result["rows"]]


def rows_scan(result: dict) -> list[list]:
    rows = []
    first = result["results"][0]
    for row in result["results"]:
        rows.append(["dataset scan", f"{row['workers']} worker(s): images/s on {result['pictures']:,} "
                     f"{result['side']} px JPEGs; 10,000 extrapolated",
                     f"{row['images_per_s']} img/s; {row['seconds_for_10k']} s",
                     "—", f"{row['images_per_s'] / first['images_per_s']:.2f}× vs 1 worker", "10k < 60 s",
                     verdict(row["seconds_for_10k"] < 60)])
    return rows


def rows_startup(result: dict) -> list[list]:
    return [["start-up", f"`python studio.py` to HTTP 200, s (median of {result['repeats']})",
             f"{result['studio_s']:.2f}", f"{result['bare_gradio_s']:.2f} (bare gradio app)",
             f"{result['ratio']:.2f} (studio/bare)", "< 10 s", verdict(result["studio_s"] < 10.0)]]


def rows_demo(result: dict) -> list[list]:
    old, new = result["rows"]
    return [["demo training", f"`train --config presets/demo/demo-star.yaml`, wall s, {new['steps']} steps "
             f"({new['threads']} vs {old['threads']} torch threads)", f"{new['seconds']:.1f}",
             f"{old['seconds']:.1f} (old default)", _x(result["ratio"]), "—", "n/a"]]


ROWS = {"training": rows_training, "grid": rows_grid, "caption": rows_caption, "scan": rows_scan,
        "startup": rows_startup, "demo": rows_demo}


def table_rows(name: str, result: dict | None) -> list[list]:
    """The summary rows of one benchmark, or one row saying why there are none."""
    if result is None:
        return [[name, f"not available ({BENCHMARKS[name]}.py missing)", "—", "—", "—", "—", "n/a"]]
    if "error" in result:
        return [[name, f"FAILED: {result['error'][:300]}", "—", "—", "—", "—", "NOT met"]]
    try:
        return ROWS[name](result)
    except (KeyError, TypeError, ZeroDivisionError, IndexError) as error:
        return [[name, f"result not understood ({error!r})", "—", "—", "—", "—", "n/a"]]


def markdown(rows: list[list], info: dict, timings: dict, command: str, quick: bool) -> str:
    total = sum(timings.values())
    each = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.items())
    mode = ("`--quick`: fewer steps and repeats than the full runs (training: toy 1 + 5 and SD 1.5 1 + 3 steps; "
            "grid: 10 steps, 1 repeat; captioning: tiny BLIP only; scan: 100 pictures, one pass each; "
            "start-up: one start; demo: 20 steps, 2 prior images). " if quick else "")
    gpu = (" No GPU was at hand, so the SD 1.5-shaped training benchmark has not been run on a GPU "
           "(`python bench/bench_gpu.py --quick` measures it, and the grid, where one is)."
           if info["gpu"] == "none" else "")
    return "\n".join([
        SECTION, "",
        "Every benchmark in one table, from the latest `bench/run_all.py` run. Ratio: reference time / ours "
        "(training, grid, captioning), ours / reference for memory; the training speed goal is met only when the "
        "paired wall-clock ratio and the CPU-time ratio both reach it. The sections below hold each benchmark's "
        "details from each script's own last full run (each names its command and date), so where this run was "
        "`--quick` their numbers differ from the table's.", "",
        markdown_table(HEADER, rows, "lllllll"), "",
        f"{describe_machine(info)} The CPU is shared with other virtual machines (and any other work "
        "running here), so absolute times are noisy; ratios are measured back to back on the same machine." + gpu, "",
        f"{mode}Wall time of the whole run: {total:.0f} s ({each}).", "",
        f"Command: `{command}`", ""])


def dry_run(names: list[str], quick: bool) -> int:
    print(f"would run {len(names)} benchmark(s){' (--quick)' if quick else ''}:")
    for name in names:
        module = BENCHMARKS[name]
        state = "available" if available(module) else "not available"
        print(f"  {name:<9} bench/{module}.py run(quick={quick})  [{state}]")
    print(f"would print the table ({', '.join(HEADER)}) and rewrite '{SECTION}' in BENCHMARKS.md")
    return 0


def child(name: str, quick: bool, out: Path) -> None:
    module = importlib.import_module(BENCHMARKS[name])
    out.write_text(json.dumps(_plain(module.run(quick=quick)), indent=1), encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats (the whole run < 10 min)")
    parser.add_argument("--dry-run", action="store_true", help="list what would run; run and write nothing")
    parser.add_argument("--only", nargs="+", choices=sorted(BENCHMARKS), metavar="NAME",
                        help=f"run only these: {', '.join(BENCHMARKS)}")
    parser.add_argument("--no-write", action="store_true", help="print the table; leave BENCHMARKS.md alone")
    parser.add_argument("--child", choices=sorted(BENCHMARKS), help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.quick, args.json)
        return 0
    names = [name for name in BENCHMARKS if not args.only or name in args.only]
    if args.dry_run:
        return dry_run(names, args.quick)
    given = argv if argv is not None else sys.argv[1:]
    command = " ".join(["OMP_WAIT_POLICY=PASSIVE python bench/run_all.py", *(shlex.quote(a) for a in given)])
    info, results, timings = machine(), {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-all-") as scratch:
        for name in names:
            started = time.perf_counter()
            print(f"running {name} ...", file=sys.stderr, flush=True)
            results[name] = run_child(name, args.quick, Path(scratch)) if available(BENCHMARKS[name]) else None
            timings[name] = time.perf_counter() - started
    rows = [row for name in names for row in table_rows(name, results[name])]
    print(markdown_table(HEADER, rows, "lllllll"))
    print(f"\nwall time {sum(timings.values()):.0f} s: " + ", ".join(f"{k} {v:.0f} s" for k, v in timings.items()))
    if not args.no_write:
        replace_section(SECTION, markdown(rows, info, timings, command, args.quick), first=True)
    return 1 if any(result and "error" in result for result in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
