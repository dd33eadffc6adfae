"""The demo as a user runs it, timed with the old and the new default CPU thread count.

    OMP_WAIT_POLICY=PASSIVE python bench/bench_demo.py [--quick] [--no-write] [--rounds N]

Each side is ``studio.py train --config presets/demo/demo-star.yaml`` in its own process and its own output
folder (so each draws its 20 prior images, as a user's first run does), timed from start to exit. The old default
is torch's own thread count, one per core (``--set cpu_threads=N``, N read from torch in a child process); the new
default is no setting, so ``studio/train/threads.py`` chooses by the model's size. ``OMP_NUM_THREADS`` is removed
from both environments, since it would override the choice. With ``--rounds`` above 1 the order alternates, so
a load that comes and goes on a shared CPU hits both sides alike; the medians are reported. Each run's
``run.json`` confirms its step count and the threads it used. ``--quick``: 20 steps and 2 prior images, to check
the wiring in about a minute. A full run rewrites the "Demo training time" section of BENCHMARKS.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from common import describe_machine, machine, markdown_table, replace_section  # noqa: E402

SECTION = "## Demo training time (bench/bench_demo.py)"
PRESET = "presets/demo/demo-star.yaml"
QUICK = ["max_steps=20", "prior_count=2", "save_steps=0"]


def _environment() -> dict[str, str]:
    return {key: value for key, value in {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"}.items()
            if key not in ("OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}


def torch_default_threads() -> int:
    """What torch picks by itself in a fresh process here (what every run used before threads.py)."""
    done = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=_environment(),
                          capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


def time_demo(settings: list[str], output: Path) -> dict:
    """Run the demo once with ``settings`` (``key=value``); wall seconds, steps and the threads its run used."""
    command = [sys.executable, "studio.py", "train", "--config", PRESET, "--quiet", "--set", f"output_dir={output}"]
    for setting in settings:
        command += ["--set", setting]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=_environment(), capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {done.returncode}: {done.stderr[-2000:]}")
    (run_json,) = output.glob("*/run.json")
    info = json.loads(run_json.read_text(encoding="utf-8"))
    return {"seconds": round(seconds, 1), "steps": info["step"], "threads": info.get("cpu_threads"),
            "load_average": round(os.getloadavg()[0], 2)}


def run(quick: bool = False, rounds: int = 1) -> dict:
    old_threads = torch_default_threads()
    sides = {"old default (torch: one thread per core)": [f"cpu_threads={old_threads}"],
             "new default (by the model's size)": []}
    times: dict[str, list[dict]] = {name: [] for name in sides}
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as scratch:
        for number in range(rounds):
            order = list(sides) if number % 2 == 0 else list(reversed(sides))
            for name in order:
                output = Path(scratch) / f"round{number}-{len(times[name])}-{'old' if 'old' in name else 'new'}"
                times[name].append(time_demo(sides[name] + (QUICK if quick else []), output))
    rows = [{"default": name, "threads": runs[0]["threads"], "steps": runs[0]["steps"],
             "seconds": statistics.median(r["seconds"] for r in runs), "each": [r["seconds"] for r in runs],
             "load_after": [r["load_average"] for r in runs]} for name, runs in times.items()]
    return {"rows": rows, "quick": quick, "rounds": rounds,
            "ratio": round(rows[0]["seconds"] / rows[1]["seconds"], 2)}


def markdown(result: dict, info: dict, command: str) -> str:
    table = markdown_table(
        ["default", "torch threads", "steps", "wall s (median)", "each run, s", "load average after each"],
        [[row["default"], row["threads"], row["steps"], f"{row['seconds']:.1f}",
          ", ".join(f"{s:.1f}" for s in row["each"]), ", ".join(f"{v:.2f}" for v in row["load_after"])]
         for row in result["rows"]], "lrrrrr")
    return "\n".join([
        SECTION, "",
        f"`studio.py train --config {PRESET}` from start to exit (model load, {2 if result['quick'] else 20} prior "
        f"images, {result['rows'][0]['steps']} steps, the final files), old default vs new default thread count; the new "
        f"default is {result['ratio']:.2f}× faster here. The old default is what torch picks by itself; the new one "
        "is `studio/train/threads.py`'s choice by the model's size (one thread for the toy world's 1.7 M-parameter "
        "UNet). Both run without `OMP_NUM_THREADS`.", "",
        table, "",
        f"{describe_machine(info)} The CPU is shared with other virtual machines, so absolute times are noisy.", "",
        f"Command: `{command}`", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="20 steps and 2 prior images: checks the wiring")
    parser.add_argument("--rounds", type=int, default=1, help="runs of each side, in alternating order")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    info = machine()
    result = run(quick=args.quick, rounds=args.rounds)
    command = "OMP_WAIT_POLICY=PASSIVE python bench/bench_demo.py" + (f" --rounds {args.rounds}"
                                                                        if args.rounds > 1 else "")
    text = markdown(result, info, command + (" --quick" if args.quick else ""))
    print(text)
    if not args.no_write and not args.quick:
        print(f"updated {replace_section(SECTION, text)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
