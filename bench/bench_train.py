"""Training step: our engine vs reference loops written like diffusers' LoRA training scripts.

    OMP_WAIT_POLICY=PASSIVE python bench/bench_train.py [--quick] [--no-write] [--scale toy|sd15|sdxl ...] [--images N]

Both sides train the same peft LoRA (rank 4, alpha 4, to_q/to_k/to_v/to_out.0, gaussian init, same seed) with the
same AdamW (lr 1e-4, weight decay 1e-2, clip 1.0), fp32, same images, captions, batch and resolution. Ours is
``build_setup(config)`` (model load, VAE latent cache, text-embedding cache) then ``optimizer_step(setup, step)``;
the reference encodes every batch with the VAE and the text encoder(s) at every step: ``train_reference.py``
(written like ``train_text_to_image_lora.py``) for SD 1.x, ``train_reference_sdxl.py`` (written like
``train_dreambooth_lora_sdxl.py`` with per-picture captions: both encoders, pooled embedding, time ids) for SDXL.
Each side runs in its own process with 2 torch threads; the two are set up one after the other, then their steps
alternate (``train_sides.py``), so both see the same load on the shared CPU. s/step is a side's median step
(wall clock); the speed-up is the median over rounds of reference step / ours step (the two steps of a round ran
back to back), shown beside the ratio of median CPU seconds per step (``time.process_time``, both threads). The
other load on this shared CPU moves each estimate by itself (CPU seconds too: here the same step cost up to 1.3x
more CPU time with its two threads side by side than squeezed onto one core), so the speed goal is called met only
when both reach it; every step is listed. Setup and
caching are reported apart, with about how many steps the cache takes to pay for itself (cache seconds / seconds
saved per step). Peak RSS is each process's own ``VmHWM``, so the sides do not share a high-water mark.
Scales: ``toy`` (the embedded toy-world model, or the same architecture with random weights while it is missing;
demo dataset ``star``, 32 px, batch 4), ``sd15`` (UNet/VAE/text encoder from the shipped SD 1.5 configs with
random weights, saved as a diffusers folder that our engine loads like a user's model; 4 generated 512 px images,
batch 1) and ``sdxl`` (SDXL base 1.0's configs, ``sdxl_shapes.py``, at half width, random weights, saved the same
way; the same 4 pictures at 512 px, batch 1). Why half width: with the real widths one process holds 13,671 MiB
of fp32 weights before its first step (measured), and the two sides run side by side on a 23.5 GB machine; half
width keeps SDXL's layout (3 levels, 2 ResNet layers each, transformer depth 1/2/10, two text encoders, the
text_time embedding) and its full-size VAE. That makes the UNet about a quarter of the real one's work while the
VAE encode the cache saves stays the same, so this scale's ratio is higher than the real SDXL's would be; the
notes below estimate the real width's ratio from a separate per-part measurement.
``--quick``: fewer timed steps (toy 1 warm-up + 5, SD 1.5 and SDXL 1 + 3; full: 2 + 20, 1 + 7 and 1 + 7).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from common import describe_machine, machine, markdown_table, replace_section, unwrap  # noqa: E402
from train_models import FLUX_HEADS, SDXL_WIDTH, generated_pictures, prepare_toy, run_child  # noqa: E402

SECTION = "## Training step"
SCALES = {"toy": {"resolution": 32, "batch": 4}, "sd15": {"resolution": 512, "batch": 1},
          "sdxl": {"resolution": 512, "batch": 1}, "flux": {"resolution": 512, "batch": 1}}
STEPS = {("toy", True): (1, 5), ("toy", False): (2, 20), ("sd15", True): (1, 3), ("sd15", False): (1, 7),
         ("sdxl", True): (1, 3), ("sdxl", False): (1, 7), ("flux", True): (1, 3), ("flux", False): (1, 7)}
MODELS = {"sd15": "SD 1.5 configs (UNet, VAE, CLIP text encoder), random weights",
          "sdxl": f"SDXL base 1.0 configs at {SDXL_WIDTH:g}× width (UNet 160/320/640 channels, text encoders 384 + 640 "
                  "hidden; layout, depths and the full-size VAE unchanged), random weights",
          "flux": f"FLUX.1-dev configs with {FLUX_HEADS} of 24 heads (hidden width {FLUX_HEADS * 128}; 19 + 38 blocks, "
                  "the full-size 16-channel VAE, one-layer CLIP and T5 stand-ins of FLUX's text widths), random "
                  "weights"}
THREADS = 2
DEFAULT_SCALES = ("toy", "sd15", "sdxl")
ENGINE_NOTES = """Where the time goes, and what was changed in the engine (recorded runs on this shared CPU; those of
2026-12-02 on an AMD EPYC, those of 2026-12-07 on the Intel Xeon named above):

- The run above (2026-12-07 17:48-18:04) shared the CPU with other engineers' training jobs that started during
  it (load average up to 4 on 2 cores): each side's two threads got about one core (CPU s ≈ wall s per step),
  which is why its SD 1.5 steps take about twice the 2026-12-02 ones; the sides' steps alternate, so the ratios
  still compare like with like.

- SDXL, part by part (`bench/sdxl_parts.py --width W --threads 2 --repeats 3`, one process, 512 px, batch 1,
  medians of 2 repeats after a warm-up, 2026-12-07 right after the run above, another engineer's training jobs
  holding part of the CPU). Real width (UNet 2,567 M parameters): UNet LoRA step U 36.7 s, VAE encode V 14.0 s,
  both text encoders T 1.7 s; (U + V + T) / U = 1.43x wall, 1.42x CPU; peak RSS of that one process 18,809 MiB
  (13,671 MiB of it the fp32 weights, measured right after building). So both sides at real width would need
  about 37 GB, more than this machine's 23.5 GB, which is why the scale above is half width; and at real width
  the cache's saving is bounded at about 1.43x on this CPU, under the 1.5x goal: the UNet step both sides
  share is 70 % of the reference's step, the VAE encode our cache removes 27 %, the text encoders 3 %.
  Half width (UNet 643 M): U 10.3 s, V 13.0 s, T 0.6 s, (U + V + T) / U = 2.33x wall and CPU (the lock-step run
  above measured 2.24x / 2.23x, so the part-by-part estimate is close); peak RSS 6,631 MiB. Halving the widths
  quarters most of the UNet's work while the VAE stays full size, so the half-width ratio overstates what the
  real SDXL gets here: the half-width goal verdict above does not carry over to SDXL at its real width.
  Nothing in our step is left to remove on a CPU in fp32: it is the UNet forward and backward with the LoRA
  (the SD 1.5 profile below) plus an AdamW step on the LoRA's parameters.

- Profile of one SD 1.5-shaped UNet forward + backward with the LoRA (512 px, batch 1, 2 threads, a quiet
  machine on 2026-12-02, `torch.profiler`, 11.7 s): flash SDPA 34 % (backward 2.77 s, forward 1.20 s), matmuls
  30 % (`mm` 2.27 s, `addmm` 1.24 s), convolutions 30 % (backward 1.91 s, forward 1.60 s), everything else
  under 5 %; our step is that and nothing else (10.1-12.6 s per step in that day's run,
  on an AMD EPYC). The reference adds one
  VAE encode of a 512 px picture (about 5.5 s here) and the text encoder (about 0.2 s) to the same UNet step,
  so on this CPU in fp32 the saving is bounded at about (U + V) / U = (11 + 5.6) / 11 = 1.5x, and the goal
  sits on that bound: runs land either side of it.
- Changed (commit 3d37224, `studio/train/batches.py`): the latent cache encodes at most 4 pictures' worth of
  512 px per VAE call instead of 16 pictures. Ours side alone, SD 1.5 shape, 16 pictures of 512 px, one step
  (`bench_train.py` of commit 53544eb, `--side ours --warmup 0 --timed 1`): peak RSS 10,863 -> 6,699 MiB (the
  training step's own peak is about 6.8 GB, so the cache no longer sets the high-water mark), cache 192 -> 106 s
  (the load differed between the two runs; alone, batch 1 and batch 4 encode at the same 5.2-5.4 s per picture).
  Toy-sized (32 px) pictures are still encoded 16 per call, so their numbers are unchanged.
- Tried and not kept: channels_last UNet (steps 19.2-20.0 s vs 19.0-20.0 s, peak RSS 9.1 vs 6.8 GB);
  fused / foreach AdamW (optimizer step 2.09 -> 0.37 / 1.31 ms on the toy LoRA's 112 tensors, 5.95 -> 1.38 /
  4.46 ms on SD 1.5's 256: at most 3 % of a toy step and 0.03 % of an SD 1.5 step, not worth touching the
  optimizer); releasing the VAE and text encoder after caching (the validation loss and the checkpoint samples
  use them); torch.compile (the step is 96 % matmul, convolution and SDPA kernels it would not speed up on a CPU,
  and compiling the SD 1.5 UNet would cost more than a quick run). SDPA is diffusers' default already; with
  one process on a CPU there are no host syncs to save (one `.item()` per step). Checked on 2026-12-02: the
  math SDPA backend instead of flash (one 1 x 8 x 4096 x 40 attention: forward 0.6-2.2 s vs 0.16 s, backward
  1.2-1.5 s vs 0.42 s); glibc `mallopt` to keep freed blocks (from the third step on, a step makes no page
  faults anyway; steps 12.8 vs 11.1 s). Running the frozen weights in bf16 (this CPU has AVX-512 BF16) would
  change the arithmetic the reference does, so it is not a like-for-like speed-up and is not used here."""

def measure_sides(scale: str, model: str, data: str, steps: tuple[int, int], work: Path) -> dict[str, dict]:
    """Ours and the reference in two processes, set up one after the other, their steps alternated."""
    from train_sides import SideProcess, lockstep

    spec = SCALES[scale]
    argv = ["--model", model, "--data", data, "--resolution", str(spec["resolution"]), "--batch", str(spec["batch"]),
            "--threads", str(THREADS), "--work", str(work / f"{scale}-work")]
    results = lockstep(lambda side: SideProcess(Path(__file__).resolve(), side, argv, work), ["ours", "reference"],
                       *steps)
    for result in results.values():
        result.update(s_per_step=statistics.median(result["step_s"]),
                      cpu_per_step=statistics.median(result["step_cpu_s"]))
    return results


def measure_scale(scale: str, quick: bool, work: Path, images: int = 4) -> dict:
    """Both sides of one scale (ours first), each in its own process; the model folder is deleted after."""
    import shutil

    started = time.perf_counter()
    if scale == "toy":
        model, note = prepare_toy(work)
        data = str(REPO / "assets" / "demo-datasets" / "star")
    else:
        model, note = str(work / f"{scale}-random"), MODELS[scale]
        run_child(["--build", scale, "--out", model], timeout=1800)
        data = generated_pictures(work / "pictures", images)
    prepare_s = time.perf_counter() - started
    steps = STEPS[(scale, quick)]
    try:
        sides = measure_sides(scale, model, data, steps, work)
    finally:
        if scale != "toy":
            shutil.rmtree(model, ignore_errors=True)
    ours, ref = sides["ours"], sides["reference"]
    saved = ref["s_per_step"] - ours["s_per_step"]
    paired = [r / o for o, r in zip(ours["step_s"], ref["step_s"])]  # the two steps of a round saw the same load
    row = {"scale": scale, "model": note, **SCALES[scale], "warmup": steps[0], "timed": steps[1],
            "prepare_s": round(prepare_s, 1), "ours": ours, "reference": ref,
            "speed_ratio": statistics.median(paired), "round_ratios": paired,
            "cpu_ratio": ref["cpu_per_step"] / ours["cpu_per_step"],
            "memory_ratio": ours["peak_rss_mb"] / ref["peak_rss_mb"],
            "break_even_steps": (ours["cache_s"] / saved) if saved > 0 else None}
    return {**row, "goals": goals(row)}


def run(quick: bool = False, scales: tuple[str, ...] = DEFAULT_SCALES, images: int = 4) -> dict:
    """Measure each scale; returns the rows and the machine."""
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        rows = [measure_scale(scale, quick, Path(scratch), images) for scale in scales]
    command = "OMP_WAIT_POLICY=PASSIVE python bench/bench_train.py" + (" --quick" if quick else "")
    command += "" if tuple(scales) == DEFAULT_SCALES else " --scale " + " ".join(scales)
    command += "" if images == 4 else f" --images {images}"
    return {"rows": rows, "machine": info, "threads": THREADS, "quick": quick, "command": command}


GOAL_NAMES = {"sd15": "SD 1.5", "sdxl": f"SDXL-shaped ({SDXL_WIDTH:g}× width)"}


def goals(row: dict) -> list[tuple[str, str]]:
    """The issue's goals at SD 1.5 and SDXL shape, as (goal, verdict).

    Speed is met only when both estimators agree (median of the per-round wall-time ratios, and the ratio of the
    median CPU seconds), since the shared CPU moves either one by itself. Peak RSS within 1 % is called equal:
    repeated runs of one side here spread by about 1 % (ours) to 5 % (the reference).
    """
    if row["scale"] not in GOAL_NAMES:
        return []
    name = GOAL_NAMES[row["scale"]]
    fast = min(row["speed_ratio"], row["cpu_ratio"]) >= 1.5
    ours, ref = row["ours"]["peak_rss_mb"], row["reference"]["peak_rss_mb"]
    memory = "met" if ours <= ref else ("met (equal within 1 %)" if ours <= ref * 1.01 else "NOT met")
    return [(f"{name} step ≥ 1.5× faster than the reference", "met" if fast else "NOT met"),
            (f"{name} peak RSS no higher than the reference's", memory)]


def step_times(result: dict) -> str:
    def listed(side: dict) -> str:
        return ", ".join(f"{wall:.3f} ({cpu:.3f})" for wall, cpu in zip(side["step_s"], side["step_cpu_s"]))
    return "; ".join(f"{row['scale']} ours {listed(row['ours'])}, reference {listed(row['reference'])}"
                     for row in result["rows"])


def table(result: dict) -> str:
    """The markdown table of the measured scales, one row each."""
    header = ["scale", "model", "px", "batch", "steps (warm-up + timed)", "ours s/step", "reference s/step",
              "speed-up (paired rounds)", "ours CPU s/step", "reference CPU s/step", "speed-up (CPU)",
              "ours peak RSS MiB", "reference peak RSS MiB", "memory ours/ref", "ours setup s (cache s, cache CPU s)",
              "reference setup s", "cache pays off after"]
    rows = []
    for row in result["rows"]:
        ours, ref = row["ours"], row["reference"]
        even = "never" if row["break_even_steps"] is None else f"{row['break_even_steps']:.1f} steps"
        rows.append([row["scale"], row["model"], row["resolution"], row["batch"], f"{row['warmup']} + {row['timed']}",
                     f"{ours['s_per_step']:.3f}", f"{ref['s_per_step']:.3f}", f"**{row['speed_ratio']:.2f}×**",
                     f"{ours['cpu_per_step']:.3f}", f"{ref['cpu_per_step']:.3f}", f"{row['cpu_ratio']:.2f}×",
                     f"{ours['peak_rss_mb']:.0f}", f"{ref['peak_rss_mb']:.0f}", f"{row['memory_ratio']:.2f}",
                     f"{ours['setup_s']:.1f} ({ours['cache_s']:.1f}, {ours['cache_cpu_s']:.1f})",
                     f"{ref['setup_s']:.1f}", even])
    return markdown_table(header, rows, "llrrl" + "r" * 12)


def markdown(result: dict) -> str:
    """The ``## Training step`` section of BENCHMARKS.md (the engine notes are the recorded before/after runs)."""
    goal_lines = [f"- {name}: **{met}**" for row in result["rows"] for name, met in goals(row)]
    gpu = (" No GPU was at hand, so the SD 1.5- and SDXL-shaped runs on a GPU are still to be done "
           "(`python bench/bench_gpu.py --model sd15 sdxl`)."
           if result["machine"]["gpu"] == "none" else "")
    lines = [SECTION, "", unwrap(__doc__.split("\n\n", 2)[2].split("``--quick``")[0].strip()), "",
             table(result), "", *goal_lines, "",
             f"Every timed step, wall s (CPU s): {step_times(result)}.", "",
             f"{describe_machine(result['machine'])} torch threads per side: {result['threads']}. The CPU is shared "
             "with other virtual machines (and any other work running here), so wall-clock times are noisy." + gpu, "",
             f"Command: `{result['command']}`", "", unwrap(ENGINE_NOTES), ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    parser.add_argument("--scale", nargs="*", choices=sorted(SCALES), default=list(DEFAULT_SCALES))
    parser.add_argument("--images", type=int, default=4, help="how many 512 px pictures sd15 and sdxl train on")
    parser.add_argument("--json", type=Path, help="also save the measured result here")
    parser.add_argument("--render", type=Path, help="write the section from a saved result (nothing is measured)")
    parser.add_argument("--serve", choices=("ours", "reference"), help=argparse.SUPPRESS)  # one side (train_sides)
    for name in ("model", "data", "work"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    for name, default in (("resolution", 512), ("batch", 1), ("threads", THREADS), ("checkpointing", 0)):
        parser.add_argument(f"--{name}", type=int, default=default, help=argparse.SUPPRESS)
    parser.add_argument("--precision", choices=("no", "fp16", "bf16"), default="no", help=argparse.SUPPRESS)
    parser.add_argument("--base-weights", default="auto", help=argparse.SUPPRESS)  # ours only (TrainConfig's)
    args = parser.parse_args(argv)
    if args.serve:
        from train_sides import serve

        serve(args.serve, args.model, args.data, args.resolution, args.batch, Path(args.work), args.threads,
              {"precision": args.precision, "checkpointing": bool(args.checkpointing),
               "base_weights": args.base_weights})
    else:
        if args.render:
            result = json.loads(args.render.read_text(encoding="utf-8"))
        else:
            result = run(quick=args.quick, scales=tuple(args.scale), images=args.images)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
        text = markdown(result)
        print(text)
        if not args.no_write:
            replace_section(SECTION, text)


if __name__ == "__main__":
    main()
