"""GPU benchmarks: the SD 1.5-shaped training step and evaluation grid on a CUDA device. CI never runs this.

    python bench/bench_gpu.py [--quick] [--no-write]
    python bench/bench_gpu.py --tiny --allow-cpu --no-write     # checks the wiring on a CPU in about 2 minutes

Training: ours (``build_setup`` + ``optimizer_step``, latents and text embeddings cached) vs the reference loop
(``train_reference.py``, written like diffusers' ``train_text_to_image_lora.py``, with its own mixed precision:
frozen models in fp16/bf16, LoRA parameters in float32), UNet/VAE/text encoder from the shipped SD 1.5 configs
with random weights, 512 px, for each batch size x precision x gradient checkpointing. Each pair runs in two fresh
processes whose steps alternate (``train_sides.lockstep``); a step is timed up to ``torch.cuda.synchronize()``.
Reported: s/step, it/s, the speed-up (median of paired rounds) and each side's peak GPU memory
(``torch.cuda.max_memory_allocated``). Grid: ``render_grid`` vs the naive way (pipeline + LoRA loaded per cell,
``bench_grid.naive``) on the same model at 512 px, 6 weights x 4 seeds, 25 steps, one round.
``--quick``: 4 training variants and a 10-step grid, so the whole run fits a 10-minute device call.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from common import describe_machine, machine, markdown_table, replace_section  # noqa: E402

SECTION = "## GPU"
FULL = [(batch, precision, checkpointing) for batch in (1, 4) for precision in ("fp16", "bf16")
        for checkpointing in (False, True)]
QUICK = [(1, "fp16", False), (1, "bf16", False), (4, "fp16", False), (4, "fp16", True)]
TINY = [(4, "no", False), (4, "bf16", True)]  # the wiring check on a CPU (fp16 autocast needs a GPU)


def train_variant(model: str, data: str, resolution: int, variant: tuple, steps: tuple[int, int], work: Path) -> dict:
    """Ours and the reference for one (batch, precision, checkpointing), steps alternated."""
    from train_sides import SideProcess, lockstep

    batch, precision, checkpointing = variant
    argv = ["--model", model, "--data", data, "--resolution", str(resolution), "--batch", str(batch),
            "--threads", "4", "--work", str(work / f"b{batch}-{precision}-{int(checkpointing)}"),
            "--precision", precision, "--checkpointing", str(int(checkpointing))]
    sides = lockstep(lambda side: SideProcess(REPO / "bench" / "bench_train.py", side, argv, work),
                     ["ours", "reference"], *steps)
    ours, ref = sides["ours"], sides["reference"]
    paired = [r / o for o, r in zip(ours["step_s"], ref["step_s"])]
    return {"batch": batch, "precision": precision, "checkpointing": checkpointing,
            "ours_s": statistics.median(ours["step_s"]), "ref_s": statistics.median(ref["step_s"]),
            "ratio": statistics.median(paired), "ours_vram": ours.get("peak_vram_mb"),
            "ref_vram": ref.get("peak_vram_mb"), "ours_rss": ours["peak_rss_mb"], "ref_rss": ref["peak_rss_mb"]}


def grid_row(model: str, data: str, resolution: int, steps: int, work: Path) -> dict:
    """A LoRA trained 2 steps on ``model``, then the 6 x 4 grid both ways (one round)."""
    import bench_grid
    from studio.config import load_config
    from studio.train import run_training

    config = load_config({"train_data_dir": data, "base_model": model, "resolution": resolution, "batch_size": 1,
                          "lora_rank": 4, "max_steps": 2, "save_steps": 2, "output_dir": str(work / "grid-runs"),
                          "output_name": "gpu", "seed": 7})
    run_dir = run_training(config).run_dir
    return bench_grid.measure("gpu", run_dir, model, work, steps, repeats=1)


def run(quick: bool, tiny: bool) -> dict:
    import train_models

    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the naive way's 24 LoRA loads would each log the same notice
    info = machine()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        work = Path(scratch)
        if tiny:
            model, resolution = train_models.prepare_toy(work)[0], 32
            data = str(REPO / "assets" / "demo-datasets" / "star")
            variants, steps, grid_steps = TINY, (1, 2), 10
        else:
            model, resolution = str(work / "sd15-random"), 512
            train_models.build_model("sd15", Path(model))
            data = train_models.generated_pictures(work / "sd15-data", 8)
            variants, steps, grid_steps = (QUICK, (2, 5), 10) if quick else (FULL, (3, 10), 25)
        rows = [train_variant(model, data, resolution, variant, steps, work) for variant in variants]
        grid = grid_row(model, data, resolution, grid_steps, work)
    command = "python bench/bench_gpu.py" + (" --quick" if quick else "") + (" --tiny --allow-cpu" if tiny else "")
    return {"rows": rows, "grid": grid, "machine": info, "steps": steps, "tiny": tiny, "command": command,
            "wall_s": time.perf_counter() - started,
            "model": "the embedded toy-world model, 32 px" if tiny else "SD 1.5-shaped (random weights), 512 px"}


def markdown(result: dict) -> str:
    """The ``## GPU`` section."""
    def mib(value):
        return "—" if value is None else f"{value:,.0f}"

    header = ["batch", "precision", "gradient checkpointing", "ours s/step", "ours it/s", "reference s/step",
              "speed-up (paired rounds)", "ours peak VRAM MiB", "reference peak VRAM MiB"]
    rows = [[r["batch"], r["precision"], "on" if r["checkpointing"] else "off", f"{r['ours_s']:.3f}",
             f"{1 / r['ours_s']:.2f}", f"{r['ref_s']:.3f}", f"**{r['ratio']:.2f}×**", mib(r["ours_vram"]),
             mib(r["ref_vram"])] for r in result["rows"]]
    grid = result["grid"]
    warmup, timed = result["steps"]
    return "\n".join([
        SECTION, "", f"Training step, {result['model']}, {warmup} warm-up + {timed} timed steps per "
        "variant, ours vs the reference loop in alternating processes (`bench/bench_gpu.py`).", "",
        markdown_table(header, rows, "rlr" + "r" * 6), "",
        f"Grid, 6 weights × 4 seeds, {grid['steps']} steps, one round: ours {grid['ours_s']:.2f} s, naive "
        f"{grid['naive_s']:.2f} s: **{grid['ratio']:.2f}×** (largest pixel difference {grid['max_pixel_diff']}).", "",
        f"{describe_machine(result['machine'])} Whole run: {result['wall_s']:.0f} s.", "",
        f"Command: `{result['command']}`", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="4 training variants and a 10-step grid")
    parser.add_argument("--tiny", action="store_true", help="the toy-world model at 32 px (a wiring check)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (with --tiny)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available() and not args.allow_cpu:
        print("no CUDA device here: nothing to measure (the GPU benchmarks run where a GPU is at hand)")
        return 0
    text = markdown(run(args.quick, args.tiny))
    print(text)
    if not args.no_write and not args.tiny:
        replace_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
