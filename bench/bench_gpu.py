"""GPU benchmarks: the SD 1.5-, SDXL- and FLUX.1-shaped training steps and the evaluation grid on a CUDA device.
CI never runs this.

    python bench/bench_gpu.py [--model sd15|sdxl|flux ...] [--quick] [--no-write]
    python bench/bench_gpu.py --list [--model ...] [--quick]   # what would run, without torch or a GPU
    python bench/bench_gpu.py --tiny --allow-cpu --no-write [--model sdxl|flux]   # checks the wiring on a CPU
    python bench/bench_gpu.py --model flux --json FILE; python bench/bench_gpu.py --render FILE   # FLUX, kept

FLUX.1 (``--model flux``, one command for one H100): ``gpu_flux.py`` says what it measures and how; its
``--base-weights`` are the choices its rows compare (all three by default).

Training: ours (``build_setup`` + ``optimizer_step``, latents and text embeddings cached) vs the reference loop
with its own mixed precision (frozen models in fp16/bf16, LoRA parameters in float32; the SDXL VAE stays float32 as
the SDXL script keeps it): ``train_reference.py`` (like diffusers' ``train_text_to_image_lora.py``) on UNet/VAE/text
encoder from the shipped SD 1.5 configs at 512 px, ``train_reference_sdxl.py`` (like
``train_dreambooth_lora_sdxl.py``) on SDXL base 1.0's configs at their real width (``sdxl_shapes.py``) at 1024 px;
random weights, for each batch size (1, 4) x precision (fp16, bf16) x gradient checkpointing (off, on). Each pair
runs in two fresh processes whose steps alternate (``train_sides.lockstep``); a step is timed up to
``torch.cuda.synchronize()``, and each side empties the allocator's cache after a step so the other side's process
can use the memory. Reported: s/step, it/s, the speed-up (median of paired rounds) and each side's peak GPU memory
(``torch.cuda.max_memory_allocated``). Grid (SD 1.5 only): ``render_grid`` vs the naive way (pipeline + LoRA
loaded per cell, ``bench_grid.naive``) on the same model at 512 px, 6 weights x 4 seeds, 25 steps, one round.
``--quick``: 4 training variants per model (and a 10-step grid). Estimated, not yet measured: SD 1.5 ``--quick``
fits a 10-minute device call; SDXL ``--quick`` (a 13 GB fp32 folder built, then 8 processes each loading it) needs
most of one, so run the two models in separate calls, and the full SDXL set (8 variants) needs about two.
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

import gpu_flux  # noqa: E402
from common import describe_machine, machine, markdown_table, replace_section  # noqa: E402

SECTIONS = {"sd15": "## GPU", "sdxl": "## GPU (SDXL)", "flux": gpu_flux.SECTION}
FULL = [(batch, precision, checkpointing) for batch in (1, 4) for precision in ("fp16", "bf16")
        for checkpointing in (False, True)]
QUICK = {"sd15": [(1, "fp16", False), (1, "bf16", False), (4, "fp16", False), (4, "fp16", True)],
         "sdxl": [(1, "fp16", False), (1, "bf16", True), (4, "bf16", False), (4, "fp16", True)]}
TINY = [(4, "no", False), (4, "bf16", True)]  # the wiring check on a CPU (fp16 autocast needs a GPU)
# --base-weights adds, per choice, a batch-1 bf16 step with gradient checkpointing whose frozen base model is stored
# that way (ours only: the reference keeps its fp16/bf16 base), for the memory it saves; nf4 needs bitsandbytes.
BASE_WEIGHTS = ("bf16", "fp8", "nf4")
# Per model: resolution, pictures, (warm-up, timed) steps full and quick, SDXL width; the tiny wiring check's own.
SPECS = {"sd15": {"resolution": 512, "pictures": 8, "steps": (3, 10), "quick_steps": (2, 5)},
         "sdxl": {"resolution": 1024, "pictures": 8, "steps": (2, 6), "quick_steps": (1, 3), "width": 1.0}}
TINY_SDXL = {"resolution": 64, "width": 0.25}


def plan(model: str, quick: bool, tiny: bool, base_weights: tuple[str, ...] = ()) -> tuple[list, tuple[int, int]]:
    """(variants (batch, precision, checkpointing, base_weights), (warm-up, timed) steps) for one model."""
    memory = [(1, "no" if tiny else "bf16", True, choice) for choice in base_weights]
    if tiny:
        return [(*v, "auto") for v in TINY] + memory, (1, 2)
    spec = SPECS[model]
    variants, steps = (QUICK[model], spec["quick_steps"]) if quick else (FULL, spec["steps"])
    return [(*v, "auto") for v in variants] + memory, steps


def train_variant(model: str, data: str, resolution: int, variant: tuple, steps: tuple[int, int], work: Path) -> dict:
    """Ours and the reference for one (batch, precision, checkpointing, base_weights), steps alternated."""
    from train_sides import SideProcess, lockstep

    batch, precision, checkpointing, base_weights = variant
    argv = ["--model", model, "--data", data, "--resolution", str(resolution), "--batch", str(batch),
            "--threads", "4", "--work", str(work / f"b{batch}-{precision}-{int(checkpointing)}-{base_weights}"),
            "--precision", precision, "--checkpointing", str(int(checkpointing)), "--base-weights", base_weights]
    sides = lockstep(lambda side: SideProcess(REPO / "bench" / "bench_train.py", side, argv, work),
                     ["ours", "reference"], *steps)
    ours, ref = sides["ours"], sides["reference"]
    paired = [r / o for o, r in zip(ours["step_s"], ref["step_s"])]
    return {"batch": batch, "precision": precision, "checkpointing": checkpointing, "base_weights": base_weights,
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


def prepare(model: str, tiny: bool, work: Path) -> tuple[str, str, int, str]:
    """(model folder, data folder, resolution, description) for one model."""
    import train_models

    pictures = 4 if tiny else SPECS[model]["pictures"]
    if model == "sd15" and tiny:
        folder = train_models.prepare_toy(work)[0]
        return folder, str(REPO / "assets" / "demo-datasets" / "star"), 32, "the embedded toy-world model, 32 px"
    if model == "sd15":
        folder = str(work / "sd15-random")
        train_models.run_child(["--build", "sd15", "--out", folder], timeout=1200)
        data = train_models.generated_pictures(work / "sd15-data", pictures)
        return folder, data, 512, "SD 1.5-shaped (random weights), 512 px"
    width, resolution = (TINY_SDXL["width"], TINY_SDXL["resolution"]) if tiny else (SPECS["sdxl"]["width"], 1024)
    folder = str(work / "sdxl-random")
    train_models.run_child(["--build", "sdxl", "--out", folder, "--width", str(width)], timeout=1800)
    data = train_models.generated_pictures(work / "sdxl-data", pictures, size=max(512, resolution))
    return folder, data, resolution, f"SDXL base 1.0 configs at {width:g}× width (random weights), {resolution} px"


def run(model: str, quick: bool, tiny: bool, base_weights: tuple[str, ...] = ()) -> dict:
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # the naive way's 24 LoRA loads would each log the same notice
    info = machine()
    started = time.perf_counter()
    variants, steps = plan(model, quick, tiny, base_weights)
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as scratch:
        work = Path(scratch)
        folder, data, resolution, description = prepare(model, tiny, work)
        rows = [train_variant(folder, data, resolution, variant, steps, work) for variant in variants]
        grid = grid_row(folder, data, resolution, 10 if quick or tiny else 25, work) if model == "sd15" else None
    command = "python bench/bench_gpu.py" + ("" if model == "sd15" else f" --model {model}")
    command += (" --quick" if quick else "") + (" --tiny --allow-cpu" if tiny else "")
    command += f" --base-weights {' '.join(base_weights)}" if base_weights else ""
    return {"model_name": model, "rows": rows, "grid": grid, "machine": info, "steps": steps, "tiny": tiny,
            "command": command, "wall_s": time.perf_counter() - started, "model": description}


def markdown(result: dict) -> str:
    """The model's GPU section (``SECTIONS``)."""
    def mib(value):
        return "—" if value is None else f"{value:,.0f}"

    header = ["batch", "precision", "gradient checkpointing", "base weights (ours)", "ours s/step", "ours it/s", "reference s/step",
              "speed-up (paired rounds)", "ours peak VRAM MiB", "reference peak VRAM MiB"]
    rows = [[r["batch"], r["precision"], "on" if r["checkpointing"] else "off", r.get("base_weights", "auto"),
             f"{r['ours_s']:.3f}",
             f"{1 / r['ours_s']:.2f}", f"{r['ref_s']:.3f}", f"**{r['ratio']:.2f}×**", mib(r["ours_vram"]),
             mib(r["ref_vram"])] for r in result["rows"]]
    grid = result["grid"]
    grid_lines = [] if grid is None else [
        f"Grid, 6 weights × 4 seeds, {grid['steps']} steps, one round: ours {grid['ours_s']:.2f} s, naive "
        f"{grid['naive_s']:.2f} s: **{grid['ratio']:.2f}×** (largest pixel difference {grid['max_pixel_diff']}).", ""]
    warmup, timed = result["steps"]
    return "\n".join([
        SECTIONS[result["model_name"]], "", f"Training step, {result['model']}, {warmup} warm-up + {timed} timed "
        "steps per variant, ours vs the reference loop in alternating processes (`bench/bench_gpu.py`).", "",
        markdown_table(header, rows, "rlrl" + "r" * 6), "", *grid_lines,
        f"{describe_machine(result['machine'])} Whole run: {result['wall_s']:.0f} s.", "",
        f"Command: `{result['command']}`", ""])


def listing(models: list[str], quick: bool, tiny: bool, base_weights: tuple[str, ...] = ()) -> str:
    """What a run would measure, one line per training variant (nothing is imported or built)."""
    lines = []
    for model in models:
        if model == "flux":
            lines.append(gpu_flux.listing(quick, tiny, base_weights or gpu_flux.BASE_WEIGHTS))
            continue
        variants, (warmup, timed) = plan(model, quick, tiny, base_weights)
        resolution = (TINY_SDXL["resolution"] if model == "sdxl" else 32) if tiny else SPECS[model]["resolution"]
        for batch, precision, checkpointing, weights in variants:
            stored = "" if weights == "auto" else f" base_weights {weights}"
            lines.append(f"{model} {resolution} px batch {batch} {precision} checkpointing "
                         f"{'on' if checkpointing else 'off'}{stored}: {warmup} warm-up + {timed} timed steps per side")
        if model == "sd15":
            lines.append(f"sd15 grid 6 weights x 4 seeds, {10 if quick or tiny else 25} steps")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs="+", choices=sorted(SECTIONS), default=["sd15"],
                        help="which models to measure (each writes its own section)")
    parser.add_argument("--quick", action="store_true",
                        help="4 training variants per model and a 10-step grid (flux: 1024 px only)")
    parser.add_argument("--tiny", action="store_true", help="tiny models at 32/64 px on a CPU (a wiring check)")
    parser.add_argument("--allow-cpu", action="store_true", help="run without a GPU (with --tiny)")
    parser.add_argument("--base-weights", nargs="+", choices=BASE_WEIGHTS, default=[],
                        help="also train with the frozen base stored this way (batch 1, bf16, checkpointing on); "
                             "flux: the choices to compare (default: all three)")
    parser.add_argument("--list", action="store_true", help="list what would run, then exit")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    parser.add_argument("--json", type=Path, help="flux: save the result here, rewritten after every side process")
    parser.add_argument("--render", type=Path, help="flux: write the section from a saved --json result (nothing is "
                                                    "measured; a run cut short shows what it finished)")
    args = parser.parse_args(argv)
    if args.render:
        import json

        text = gpu_flux.markdown(json.loads(args.render.read_text(encoding="utf-8")))
        print(text)
        if not args.no_write:
            replace_section(gpu_flux.SECTION, text)
        return 0
    if args.list:
        print(listing(args.model, args.quick, args.tiny, tuple(args.base_weights)))
        return 0
    import importlib.util

    import torch

    flux_weights = list(args.base_weights or gpu_flux.BASE_WEIGHTS)
    if importlib.util.find_spec("bitsandbytes") is None:
        for chosen in (args.base_weights, flux_weights):
            if "nf4" in chosen:
                print("base_weights nf4 left out: bitsandbytes is not installed (pip install bitsandbytes)")
                chosen.remove("nf4")
    if not torch.cuda.is_available() and not args.allow_cpu:
        print("no CUDA device here: nothing to measure (the GPU benchmarks run where a GPU is at hand)")
        return 0
    for model in args.model:
        if model == "flux":
            result = gpu_flux.run(args.quick, args.tiny, tuple(flux_weights), save=args.json)
            text = gpu_flux.markdown(result)
        else:
            result = run(model, args.quick, args.tiny, tuple(args.base_weights))
            text = markdown(result)
        print(text)
        if not args.no_write and not args.tiny:
            replace_section(SECTIONS[model], text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
