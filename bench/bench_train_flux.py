"""Training step on this CPU, FLUX.1-shaped: our engine vs a loop written like diffusers'
``train_dreambooth_lora_flux.py``.

    OMP_WAIT_POLICY=PASSIVE python bench/bench_train_flux.py [--quick] [--no-write] [--log FILE] [--json FILE]

The model is FLUX.1-dev's layout narrowed to 3 of its 24 attention heads (hidden width 384 instead of 3,072;
19 double- and 38 single-stream blocks, heads of 128, guidance embedding; transformer 188 M parameters instead
of 11.9 B), FLUX's 16-channel VAE at its real size, and one-layer CLIP and T5 stand-ins with FLUX's text widths
(pooled 768; 4096 × 512 tokens), random weights (``flux_shapes.py``), saved as a diffusers folder that both sides
load like a user's model. Both train the same peft LoRA (rank 4, alpha 4, ``to_q/to_k/to_v/to_out.0``, gaussian
init, same seed) with AdamW (lr 1e-4, clip 1.0) in fp32 on 4 generated 512 px pictures with their own captions,
batch 1. Ours is ``build_setup`` (VAE latents and text conditioning cached once) then ``optimizer_step``; the
reference (``train_reference_flux.py``) runs both text encoders and the VAE encode at every step, as the script
does with per-picture captions and without ``--cache_latents``. Each side runs in its own process with 2 torch
threads, their steps alternated (``train_sides.py``, as ``bench_train.py`` does); the speed-up is the median of
the rounds' reference / ours step times, beside the ratio of median CPU seconds.

What the ratio holds: the transformer's forward and backward, which both sides pay, plus, for the reference, a
512 px encode by FLUX's real VAE encoder and the stand-ins' text encoding (negligible here; CLIP-L and T5-XXL
would cost the script much more each step). At FLUX.1's real width the transformer has 63 times these
parameters while the VAE encode stays the same, so there the cache's gain shrinks toward what CLIP-L and T5-XXL
cost the script per step.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

import bench_train  # noqa: E402
from common import describe_machine, machine, replace_section, unwrap  # noqa: E402

SECTION = "## Training step (FLUX.1-shaped, CPU)"


def run(quick: bool, images: int = 4) -> dict:
    info = machine()
    with tempfile.TemporaryDirectory(prefix="bench-train-flux-") as scratch:
        row = bench_train.measure_scale("flux", quick, Path(scratch), images)
    command = "OMP_WAIT_POLICY=PASSIVE python bench/bench_train_flux.py" + (" --quick" if quick else "")
    return {"rows": [row], "machine": info, "threads": bench_train.THREADS, "quick": quick, "command": command}


def markdown(result: dict, log: str | None = None) -> str:
    """The ``SECTION`` of BENCHMARKS.md."""
    row = result["rows"][0]
    ours, reference = row["ours"], row["reference"]
    share = 1 - ours["s_per_step"] / reference["s_per_step"]
    where = f" Log of this run: `{log}`." if log else ""
    return "\n".join([
        SECTION, "", unwrap(__doc__.split("\n\n", 2)[2].strip()), "", bench_train.table(result), "",
        f"Reading: here the cached step is {row['speed_ratio']:.2f}× faster (paired rounds; {row['cpu_ratio']:.2f}× "
        f"in CPU seconds): the reference spends about {share:.0%} of its step on work our cache did once.", "",
        f"Every timed step, wall s (CPU s): {bench_train.step_times(result)}.", "",
        f"{describe_machine(result['machine'])} torch threads per side: {result['threads']}. The CPU is shared with "
        "other virtual machines and with other engineers' jobs (load average above), so wall-clock times are noisy; "
        "the sides' steps alternate, so the ratios compare like with like. The GPU counterpart, FLUX.1-dev's real "
        "width at 512 and 1024 px with bf16, fp8 and nf4 base weights, is `python bench/bench_gpu.py --model flux` "
        "(section `GPU (FLUX.1)`; not yet run: no GPU was at hand).", "",
        f"Command: `{result['command']}`.{where}", ""])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 warm-up + 3 timed steps per side (full: 1 + 7)")
    parser.add_argument("--no-write", action="store_true", help="print, do not update BENCHMARKS.md")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--json", type=Path, help="also save the measured result here")
    parser.add_argument("--render", type=Path, help="write the section from a saved result (nothing is measured)")
    parser.add_argument("--log", type=Path, help="also write the result and the section to this file")
    args = parser.parse_args(argv)
    result = json.loads(args.render.read_text(encoding="utf-8")) if args.render else run(args.quick, args.images)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1), encoding="utf-8")
    log = None
    if args.log:
        log = str(args.log.resolve().relative_to(REPO)) if args.log.resolve().is_relative_to(REPO) else str(args.log)
    text = markdown(result, log)
    print(text)
    if args.log:
        args.log.write_text(json.dumps(result, indent=1) + "\n\n" + text, encoding="utf-8")
    if not args.no_write:
        replace_section(SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
