"""One side of the FLUX.1 GPU benchmark (``gpu_flux.py``), alone in its own process.

    python bench/flux_gpu_side.py --side ours|reference --base-weights bf16|fp8|nf4 --resolution 1024 \\
        --data FOLDER --work FOLDER [--checkpointing 1 0] [--steps 2 5] [--tiny]

The FLUX-shaped pipeline is built in memory (``flux_shapes.build_pipeline``), its transformer made straight on the
device in the dtype each side's loader hands over: float32 for ours with bf16/fp8 (``load_components`` loads
float32 and ``precision.store_base_weights`` casts after the LoRA is added), the compute dtype for ours with nf4
(``precision.nf4_quantize`` then quantizes it), the mixed-precision dtype for the reference (the script casts the
whole model while moving it to the device). Ours is then ``build_setup`` (``load_components`` answered by the
in-memory pipeline; everything after it is the engine's own: base weights, LoRA, latent and text caches, text
encoders off the GPU, optimizer) and ``optimizer_step``; the reference is ``train_reference_flux.py``. For each
gradient-checkpointing setting (switched on the same model between settings) it runs the warm-up and timed
steps, each timed up to ``torch.cuda.synchronize()``, and prints one ``@@bench`` JSON line with the step times
and the peak memory the allocator handed out during them; the first line reports the set-up (seconds, peak and
resident memory). An out-of-memory step ends that setting only: its line says so and the next setting runs.
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

from train_sides import PREFIX  # noqa: E402

RANK, LR, SEED = 16, 1e-4, 42
PRECISION = "bf16"  # both sides' mixed precision (the script's --mixed_precision bf16)


def _say(message: dict) -> None:
    import json

    sys.stdout.write(PREFIX + json.dumps(message) + "\n")
    sys.stdout.flush()


def _shape(tiny: bool) -> dict:
    import flux_shapes

    return flux_shapes.TINY if tiny else flux_shapes.DEV


def open_ours(args: argparse.Namespace, device: str):
    """(step function, the unwrapped transformer, set-up's ``TrainingSetup``) of our engine."""
    import torch

    import studio.models
    from flux_shapes import build_pipeline
    from studio.config import load_config
    from studio.models.families import family_of_pipeline
    from studio.models.precision import nf4_quantize, plan_weights
    from studio.train.loop import optimizer_step
    from studio.train.setup import build_setup

    plan = plan_weights(args.base_weights, device, PRECISION)
    handed_over = plan.compute if args.base_weights == "nf4" else torch.float32
    pipe = build_pipeline(args.work / "tokenizers", _shape(args.tiny), args.tiny, device, handed_over)

    def in_memory(*_args, weights=None, **_kwargs):
        family = family_of_pipeline(pipe)
        if weights is not None and weights.choice == "nf4":
            nf4_quantize(pipe, family, weights.compute)
        return family.components(pipe, "FLUX.1-shaped, in memory", "folder")

    studio.models.load_components = in_memory  # build_setup imports it from the package when it runs
    config = load_config({"train_data_dir": str(args.data), "base_model": str(args.work), "resolution": args.resolution,
                          "batch_size": 1, "lora_rank": RANK, "learning_rate": LR, "seed": SEED, "max_steps": 10_000,
                          "output_dir": str(args.work / "out"), "mixed_precision": PRECISION,
                          "base_weights": args.base_weights, "gradient_checkpointing": bool(args.checkpointing[0]),
                          "guidance_scale": 3.5, "adam_weight_decay": 1e-4})
    setup = build_setup(config)
    denoiser = setup.accelerator.unwrap_model(setup.components.denoiser)
    return (lambda number: optimizer_step(setup, number)[0]), denoiser, setup.optimizer


def open_reference(args: argparse.Namespace, device: str):
    """(step function, the unwrapped transformer, optimizer) of the script-like loop."""
    import torch

    from flux_shapes import build_pipeline
    from train_reference import batches
    from train_reference_flux import COMPONENTS, load_reference_flux, reference_flux_step

    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[PRECISION]
    pipe = build_pipeline(args.work / "tokenizers", _shape(args.tiny), args.tiny, device, dtype)
    models = {name: getattr(pipe, name) for name in COMPONENTS}
    del pipe
    parts = load_reference_flux(models, str(args.data), args.resolution, 1, RANK, SEED, LR, PRECISION,
                                bool(args.checkpointing[0]))
    stream = batches(parts)
    denoiser = parts["accelerator"].unwrap_model(parts["transformer"])
    return (lambda number: reference_flux_step(parts, next(stream))), denoiser, parts["optimizer"]


def measure(step, denoiser, optimizer, checkpointing: bool, steps: tuple[int, int], first: int) -> dict:
    """Warm-up and timed steps with gradient checkpointing on or off; an out-of-memory step ends them."""
    import torch

    cuda = torch.cuda.is_available()
    if checkpointing:
        denoiser.enable_gradient_checkpointing()
    else:
        denoiser.disable_gradient_checkpointing()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    result = {"checkpointing": checkpointing, "step_s": [], "losses": []}
    warmup, timed = steps
    try:
        for number in range(warmup + timed):
            started = time.perf_counter()
            loss = float(step(first + number))
            if cuda:
                torch.cuda.synchronize()
            result["losses"].append(loss)
            if number >= warmup:
                result["step_s"].append(time.perf_counter() - started)
    except torch.OutOfMemoryError as error:
        result["out_of_memory"] = str(error).splitlines()[0][:200]
        optimizer.zero_grad(set_to_none=True)
    if result["step_s"]:
        result["s_per_step"] = statistics.median(result["step_s"])
    result["peak_vram_mb"] = torch.cuda.max_memory_allocated() / 2**20 if cuda else None
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--side", choices=("ours", "reference"), required=True)
    parser.add_argument("--base-weights", choices=("bf16", "fp8", "nf4"), default="bf16")
    parser.add_argument("--resolution", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--checkpointing", type=int, nargs="+", default=[1, 0])
    parser.add_argument("--steps", type=int, nargs=2, default=[2, 5], metavar=("WARMUP", "TIMED"))
    parser.add_argument("--tiny", action="store_true", help="the tiny FLUX layout (a wiring check on a CPU)")
    args = parser.parse_args(argv)
    import torch
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    args.work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    opener = open_ours if args.side == "ours" else open_reference
    step, denoiser, optimizer = opener(args, device)
    setup = {"setup": True, "setup_s": time.perf_counter() - started}
    if device == "cuda":
        setup.update(setup_peak_vram_mb=torch.cuda.max_memory_allocated() / 2**20,
                     resident_vram_mb=torch.cuda.memory_allocated() / 2**20)
    _say(setup)
    done = 0
    for checkpointing in args.checkpointing:
        _say(measure(step, denoiser, optimizer, bool(checkpointing), tuple(args.steps), done))
        done += sum(args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
