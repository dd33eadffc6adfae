"""Training step: our engine vs a reference loop written like diffusers' train_text_to_image_lora.py.

    OMP_WAIT_POLICY=PASSIVE python bench/bench_train.py [--quick] [--no-write] [--scale toy|sd15 ...]
    python bench/bench_train.py --side ours|reference --scale toy|sd15 --model DIR --data DIR --json OUT  (one side)

Both sides train the same peft LoRA (rank 4, alpha 4, to_q/to_k/to_v/to_out.0, gaussian init, same seed) with the
same AdamW (lr 1e-4, weight decay 1e-2, clip 1.0), fp32, same images, captions, batch and resolution. Ours is
``build_setup(config)`` (model load, VAE latent cache, text-embedding cache) then ``optimizer_step(setup, step)``;
the reference (``train_reference.py``) encodes every batch with the VAE and the text encoder at every step.
s/step is the median of the timed steps after the warm-up; setup and caching are reported apart, with the number
of steps after which the cache has paid for itself. Each side runs in its own subprocess with ``threads`` torch
threads, and its peak RSS is that process's ``VmHWM``, so the sides do not share a high-water mark.
Scales: ``toy`` (the embedded toy-world model, or the same architecture with random weights while it is missing;
demo dataset ``star``, 32 px, batch 4) and ``sd15`` (UNet/VAE/text encoder from the shipped SD 1.5 configs with
random weights, saved as a diffusers folder that our engine loads like a user's model; 4 generated 512 px images,
batch 1). ``--quick``: fewer timed steps (toy 1 warm-up + 5, SD 1.5 1 + 2; full: 2 + 20 and 1 + 5).
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

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from common import describe_machine, machine, markdown_table, peak_rss_mb, replace_section, verdict  # noqa: E402

SECTION = "## Training step"
SCALES = {"toy": {"resolution": 32, "batch": 4}, "sd15": {"resolution": 512, "batch": 1}}
STEPS = {("toy", True): (1, 5), ("toy", False): (2, 20), ("sd15", True): (1, 2), ("sd15", False): (1, 5)}
RANK, LR, SEED, THREADS = 4, 1e-4, 42, 2
SD15_CAPTIONS = ["a red circle on a blue background", "a green square in a field", "a yellow star at night",
                 "a purple triangle on white"]


def prepare_toy(work: Path) -> tuple[str, str]:
    """(model folder, note): the embedded toy-world model, or its architecture with random weights."""
    from studio.models import default_model_path

    if (default_model_path() / "model_index.json").is_file():
        return str(default_model_path()), "embedded toy-world model"
    _run_child(["--build", "toy", "--out", str(work / "toy-random")], timeout=600)
    return str(work / "toy-random"), "toy-world architecture, random weights (assets/toy-world not built yet)"


def build_model(kind: str, out: Path) -> None:
    """Save a random-weight diffusers folder: the toy-world architecture, or SD 1.5 from the shipped configs."""
    import torch

    from studio.toyworld.pretrain import build_components, save_pipeline

    torch.manual_seed(0)
    if kind == "toy":
        save_pipeline(out, *build_components(out.parent / "toy-tokenizer"))
        return
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    configs = REPO / "studio" / "models" / "sd15"
    unet = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(configs / "unet"))
    vae = AutoencoderKL.from_config(AutoencoderKL.load_config(configs / "vae"))
    text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(configs / "text_encoder"))
    tokenizer = CLIPTokenizer.from_pretrained(configs / "tokenizer")
    scheduler = PNDMScheduler.from_pretrained(configs / "scheduler")
    save_pipeline(out, tokenizer, text_encoder, vae, unet, scheduler)


def sd15_data(folder: Path, count: int = 4, size: int = 512) -> str:
    """``count`` generated pictures (a gradient, a disc, some noise) with captions in metadata.csv."""
    import csv

    import numpy as np
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["filename", "prompt"])
        for index in range(count):
            caption = f"{SD15_CAPTIONS[index % len(SD15_CAPTIONS)]}, picture {index}"
            ramp = np.linspace(0, 255, size, dtype=np.float32)
            pixels = np.stack([np.add.outer(ramp, ramp) / 2, np.tile(ramp, (size, 1)), np.full((size, size), 90.0)], -1)
            pixels = np.clip(pixels + rng.normal(0, 12, pixels.shape), 0, 255).astype(np.uint8)
            image = Image.fromarray(pixels)
            x, y = rng.integers(64, size - 192, 2)
            ImageDraw.Draw(image).ellipse([int(x), int(y), int(x) + 160, int(y) + 160], fill=(200, 40 * index % 256, 60))
            image.save(folder / f"img_{index}.png")
            writer.writerow([f"img_{index}.png", caption])
    return str(folder)


def _timed_steps(step, warmup: int, timed: int) -> tuple[list[float], list[float]]:
    """Run ``step(i)`` warmup + timed times; returns (seconds of the timed steps, all losses)."""
    seconds, losses = [], []
    for index in range(warmup + timed):
        started = time.perf_counter()
        losses.append(float(step(index)))
        if index >= warmup:
            seconds.append(time.perf_counter() - started)
    return seconds, losses


def side_ours(args) -> dict:
    """Our engine: build_setup (timed, with its two caches timed apart), then optimizer_step."""
    from studio.config import load_config
    from studio.train import batches as batches_module
    from studio.train.loop import optimizer_step
    from studio.train.setup import build_setup

    cache = {"latents": 0.0, "text": 0.0}

    def timed(cls, name, key):
        original = getattr(cls, name)

        def wrapper(*a, **k):
            started = time.perf_counter()
            try:
                return original(*a, **k)
            finally:
                cache[key] += time.perf_counter() - started
        setattr(cls, name, wrapper)

    timed(batches_module.BatchSource, "fill_latent_cache", "latents")
    timed(batches_module.TextConditioner, "fill_cache", "text")
    config = load_config({"train_data_dir": args.data, "base_model": args.model, "resolution": args.resolution,
                          "batch_size": args.batch, "lora_rank": RANK, "learning_rate": LR, "seed": SEED,
                          "max_steps": args.warmup + args.timed, "output_dir": str(Path(args.json).parent / "out")})
    started = time.perf_counter()
    setup = build_setup(config)
    setup_s = time.perf_counter() - started
    seconds, losses = _timed_steps(lambda i: optimizer_step(setup, i)[0], args.warmup, args.timed)
    return {"setup_s": setup_s, "cache_s": cache["latents"] + cache["text"], "latent_cache_s": cache["latents"],
            "text_cache_s": cache["text"], "step_s": seconds, "losses": losses}


def side_reference(args) -> dict:
    """The diffusers-script way: load, then VAE + text encoder + UNet at every step."""
    from train_reference import batches, load_reference, reference_step

    started = time.perf_counter()
    parts = load_reference(args.model, args.data, args.resolution, args.batch, RANK, SEED, LR)
    setup_s = time.perf_counter() - started
    stream = batches(parts)
    seconds, losses = _timed_steps(lambda i: reference_step(parts, next(stream)), args.warmup, args.timed)
    return {"setup_s": setup_s, "cache_s": 0.0, "step_s": seconds, "losses": losses}


def _run_child(argv: list[str], timeout: float) -> None:
    command = [sys.executable, str(Path(__file__).resolve()), *argv]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1"})
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:4])} failed:\n{done.stderr[-3000:]}")


def measure_side(side: str, scale: str, model: str, data: str, steps: tuple[int, int], work: Path) -> dict:
    out = work / f"{scale}-{side}.json"
    spec = SCALES[scale]
    _run_child(["--side", side, "--scale", scale, "--model", model, "--data", data, "--json", str(out),
                "--warmup", str(steps[0]), "--timed", str(steps[1]), "--resolution", str(spec["resolution"]),
                "--batch", str(spec["batch"])], timeout=1800)
    return json.loads(out.read_text(encoding="utf-8"))


def measure_scale(scale: str, quick: bool, work: Path, images: int = 4) -> dict:
    """Both sides of one scale (ours first), each in its own process; the model folder is deleted after."""
    import shutil

    started = time.perf_counter()
    if scale == "toy":
        model, note = prepare_toy(work)
        data = str(REPO / "assets" / "demo-datasets" / "star")
    else:
        model, note = str(work / "sd15-random"), "SD 1.5 configs (UNet, VAE, CLIP text encoder), random weights"
        _run_child(["--build", "sd15", "--out", model], timeout=1200)
        data = sd15_data(work / "sd15-data", images)
    prepare_s = time.perf_counter() - started
    steps = STEPS[(scale, quick)]
    try:
        sides = {side: measure_side(side, scale, model, data, steps, work) for side in ("ours", "reference")}
    finally:
        if scale == "sd15":
            shutil.rmtree(model, ignore_errors=True)
    ours, ref = sides["ours"], sides["reference"]
    saved = ref["s_per_step"] - ours["s_per_step"]
    extra = ours["setup_s"] - ref["setup_s"]
    return {"scale": scale, "model": note, **SCALES[scale], "warmup": steps[0], "timed": steps[1],
            "prepare_s": round(prepare_s, 1), "ours": ours, "reference": ref,
            "speed_ratio": ref["s_per_step"] / ours["s_per_step"],
            "memory_ratio": ours["peak_rss_mb"] / ref["peak_rss_mb"],
            "break_even_steps": (ours["cache_s"] / saved) if saved > 0 else None,
            "setup_difference_s": extra}


def run(quick: bool = False, scales: tuple[str, ...] = ("toy", "sd15"), images: int = 4) -> dict:
    """Measure each scale; returns the rows and the machine."""
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        rows = [measure_scale(scale, quick, Path(scratch), images) for scale in scales]
    command = "OMP_WAIT_POLICY=PASSIVE python bench/bench_train.py" + (" --quick" if quick else "")
    command += "" if images == 4 else f" --images {images}"
    return {"rows": rows, "machine": info, "threads": THREADS, "quick": quick, "command": command}


def goals(row: dict) -> list[tuple[str, bool | None]]:
    """The issue's goals for a row: speed ≥ 1.5× and peak memory no higher, at SD 1.5 shape only."""
    if row["scale"] != "sd15":
        return []
    return [("SD 1.5 step ≥ 1.5× faster than the reference", row["speed_ratio"] >= 1.5),
            ("SD 1.5 peak RSS ours ≤ reference", row["ours"]["peak_rss_mb"] <= row["reference"]["peak_rss_mb"])]


def markdown(result: dict) -> str:
    """The ``## Training step`` section of BENCHMARKS.md."""
    header = ["scale", "model", "px", "batch", "timed steps", "ours s/step", "reference s/step", "speed-up",
              "ours peak RSS MiB", "reference peak RSS MiB", "memory ours/ref", "ours setup s (cache s)",
              "reference setup s", "cache pays off after"]
    rows = []
    for row in result["rows"]:
        ours, ref = row["ours"], row["reference"]
        even = "never" if row["break_even_steps"] is None else f"{row['break_even_steps']:.1f} steps"
        rows.append([row["scale"], row["model"], row["resolution"], row["batch"], f"{row['warmup']} + {row['timed']}",
                     f"{ours['s_per_step']:.3f}", f"{ref['s_per_step']:.3f}", f"**{row['speed_ratio']:.2f}×**",
                     f"{ours['peak_rss_mb']:.0f}", f"{ref['peak_rss_mb']:.0f}", f"{row['memory_ratio']:.2f}",
                     f"{ours['setup_s']:.1f} ({ours['cache_s']:.1f})", f"{ref['setup_s']:.1f}", even])
    goal_lines = [f"- {name}: **{verdict(met)}**" for row in result["rows"] for name, met in goals(row)]
    lines = [SECTION, "", __doc__.split("\n\n", 2)[2].split("``--quick``")[0].strip(), "",
             markdown_table(header, rows, "llrrlrrrrrrrrr"), "", *goal_lines, "",
             f"{describe_machine(result['machine'])} torch threads per side: {result['threads']}. The CPU was shared "
             "with a long background job and other engineers' work, so absolute times are noisy; the ratio of two "
             "sides measured back to back is what to read.", "", f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def _side_main(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = side_ours(args) if args.side == "ours" else side_reference(args)
    result.update(side=args.side, scale=args.scale, threads=args.threads, peak_rss_mb=peak_rss_mb(),
                  s_per_step=statistics.median(result["step_s"]))
    Path(args.json).write_text(json.dumps(result, indent=1), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    parser.add_argument("--scale", nargs="*", choices=sorted(SCALES), default=["toy", "sd15"])
    parser.add_argument("--side", choices=("ours", "reference"), help="run one side in this process")
    parser.add_argument("--build", choices=("toy", "sd15"), help="save a random-weight model to --out")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--images", type=int, default=4, help="how many 512 px pictures the sd15 scale trains on")
    for name in ("model", "data", "json"):
        parser.add_argument(f"--{name}")
    for name, default in (("warmup", 1), ("timed", 2), ("resolution", 512), ("batch", 1), ("threads", THREADS)):
        parser.add_argument(f"--{name}", type=int, default=default)
    args = parser.parse_args(argv)
    if args.build:
        build_model(args.build, args.out)
    elif args.side:
        args.scale = args.scale[0]
        _side_main(args)
    else:
        result = run(quick=args.quick, scales=tuple(args.scale), images=args.images)
        text = markdown(result)
        print(text)
        if not args.no_write:
            replace_section(SECTION, text)


if __name__ == "__main__":
    main()
