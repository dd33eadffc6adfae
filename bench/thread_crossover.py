"""Where one torch thread stops beating all cores: seconds per training step by model size, 1 thread vs N.

    OMP_WAIT_POLICY=PASSIVE python bench/thread_crossover.py [--widths 1 2 4 8] [--rounds 6] [--threads 2]

Each scale is the toy-world model with its UNet widened ``--widths`` times (random weights; the embedded model's
own weights at width 1), trained by our engine (``build_setup`` + ``optimizer_step``) on the ``star`` demo dataset
with the demo preset's LoRA (rank 16, attention and ResNet convolutions, text encoder trained, 32 px, batch 8).
One process per scale: two warm-up steps at each thread count, then ``--rounds`` rounds that alternate 1 thread
and ``--threads`` threads (``torch.set_num_threads``), so a load that comes and goes on a shared CPU hits both
alike. Prints, per scale, the UNet's and the text encoder's parameter counts (without the LoRA) and the median wall
and CPU seconds per step of each thread count; ``studio/train/threads.py`` takes its size threshold from these
numbers (BENCHMARKS.md, "CPU threads by model size").
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as the studio and the CLI run (before torch is imported)
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]
PREFIX = "@@crossover "


def widened_model(width: int, out: Path) -> Path:
    """The toy-world model folder, its UNet ``width`` times as wide (random weights) unless ``width`` is 1."""
    from studio.models import default_model_path

    source = default_model_path()
    if width == 1:
        return source
    import torch
    from diffusers import UNet2DConditionModel

    shutil.copytree(source, out, ignore=shutil.ignore_patterns("unet"))
    config = dict(UNet2DConditionModel.load_config(source / "unet"))
    config["block_out_channels"] = [channels * width for channels in config["block_out_channels"]]
    torch.manual_seed(0)
    UNet2DConditionModel.from_config(config).save_pretrained(out / "unet")
    return out


def measure(width: int, threads: int, rounds: int, work: Path) -> dict:
    import torch

    from studio.config import load_config
    from studio.train.loop import optimizer_step
    from studio.train.setup import build_setup

    model = widened_model(width, work / f"toy-x{width}")
    config = load_config(REPO / "presets" / "demo" / "demo-star.yaml", overrides=[
        f"base_model={model}", f"train_data_dir={REPO / 'assets' / 'demo-datasets' / 'star'}",
        "prior_count=0", "validation_steps=0", "sample_steps=0", "max_steps=100000", f"output_dir={work / 'out'}"])
    setup = build_setup(config)
    def own(model) -> int:  # the model's parameters without the LoRA's (as threads.py counts them)
        return sum(p.numel() for name, p in model.named_parameters() if "lora_" not in name)

    unet = own(setup.components.unet)
    text = sum(own(encoder) for encoder in setup.components.text_encoders.values())
    times: dict[int, list[float]] = {1: [], threads: []}
    cpu: dict[int, list[float]] = {1: [], threads: []}
    step = 0
    for phase in range(2 + rounds):
        for count in (1, threads) if phase % 2 == 0 else (threads, 1):
            torch.set_num_threads(count)
            started, cpu_started = time.perf_counter(), time.process_time()
            optimizer_step(setup, step)
            step += 1
            if phase >= 2:  # the first two phases warm up each thread count
                times[count].append(time.perf_counter() - started)
                cpu[count].append(time.process_time() - cpu_started)
    one, many = statistics.median(times[1]), statistics.median(times[threads])
    return {"width": width, "unet_parameters": unet, "text_encoder_parameters": text, "threads": threads,
            "s_per_step_1": round(one, 4), f"s_per_step_{threads}": round(many, 4),
            "cpu_s_per_step_1": round(statistics.median(cpu[1]), 4),
            f"cpu_s_per_step_{threads}": round(statistics.median(cpu[threads]), 4),
            "speedup_of_1_thread": round(many / one, 2), "load_average": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory(prefix="crossover-") as work:
            print(PREFIX + json.dumps(measure(args.child, args.threads, args.rounds, Path(work))), flush=True)
        return 0
    for width in args.widths:  # one process per scale: each model's memory and thread pool start fresh
        done = subprocess.run([sys.executable, __file__, "--child", str(width), "--rounds", str(args.rounds),
                               "--threads", str(args.threads)], capture_output=True, text=True, cwd=REPO,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        lines = [line[len(PREFIX):] for line in done.stdout.splitlines() if line.startswith(PREFIX)]
        print(lines[0] if lines else f"width {width} failed: {done.stderr[-2000:]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
