"""Pretrain the FLUX.1 toy-world model on the CPU and save it as a diffusers FluxPipeline folder.

    python -m studio.toyworld.pretrain_flux --out assets/toy-world-flux [--steps 9000] [--threads 1]
        [--double-layers 2] [--single-layers 2] [--heads 4] [--head-dim 16] [--sigmas logit_normal|uniform]

The same world as the SD 1.x toy, in FLUX.1's architecture (``flux_parts.build_flux_pipeline``): the transformer,
the CLIP text encoder and the T5 encoder are trained jointly with rectified flow (``x_t = (1 - σ)·x0 + σ·ε``, the
transformer predicts ``ε - x0`` at timestep ``1000·σ``), an EMA of the weights and 10 % empty captions, so the model
is drawn with true classifier-free guidance (it has no guidance embedding, as schnell). The transformer is called
through the ``flux`` family (packing, position ids), as the studio's training calls it. The VAE is the SD 1.x toy's,
with FLUX's latent normalisation: ``shift_factor`` the mean of the pool's latents, ``scaling_factor`` one over their
standard deviation.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from studio.util.paths import repo_root  # noqa: E402

from .flux_parts import build_flux_pipeline  # noqa: E402
from .pretrain import Corruption, denoiser_arguments, encode_pool, start_run, train_denoiser  # noqa: E402
from .world import BASE_SHAPES, caption, random_scene  # noqa: E402

if TYPE_CHECKING:
    from diffusers import FluxPipeline

SIGMA_SAMPLINGS = ("logit_normal", "uniform")


def flow_matching(sampling: str) -> Corruption:
    """Rectified-flow noising at σ drawn logit-normal (SD3's pretraining choice, mean 0, std 1) or uniform."""

    def corrupt(latents: torch.Tensor, noise: torch.Tensor, generator: torch.Generator):
        if sampling == "uniform":
            sigmas = torch.rand(len(latents), generator=generator)
        else:
            sigmas = torch.sigmoid(torch.randn(len(latents), generator=generator))
        s = sigmas.view(-1, 1, 1, 1)
        return (1 - s) * latents + s * noise, sigmas * 1000, noise - latents

    return corrupt


def caption_tokens(pipe: FluxPipeline, captions: list[str]) -> torch.Tensor:
    """CLIP ids (77) and T5 ids (the T5 tokenizer's length) side by side in one row per caption."""
    from studio.models.families import FLUX

    clip = pipe.tokenizer(captions, padding="max_length", max_length=pipe.tokenizer.model_max_length,
                          truncation=True, return_tensors="pt").input_ids
    t5 = pipe.tokenizer_2(captions, padding="max_length", max_length=FLUX.text_length(pipe.tokenizer_2),
                          truncation=True, return_tensors="pt").input_ids
    return torch.cat([clip, t5], dim=1)


def make_predict(pipe: FluxPipeline):
    """``predict(noisy, timesteps, tokens)``: both text encoders as ``Flux.encode``, the transformer as
    ``Flux.predict``."""
    from studio.models.families import FLUX, Conditioning

    clip_length = pipe.tokenizer.model_max_length

    def predict(noisy: torch.Tensor, timesteps: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        pooled = pipe.text_encoder(tokens[:, :clip_length]).pooler_output
        hidden = pipe.text_encoder_2(tokens[:, clip_length:])[0]
        return FLUX.predict(pipe.transformer, noisy, timesteps, Conditioning(hidden, pooled))

    return predict


def arguments() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    denoiser_arguments(parser)
    parser.add_argument("--vae-from", type=Path, default=repo_root() / "assets" / "toy-world" / "vae")
    parser.add_argument("--double-layers", type=int, default=2)
    parser.add_argument("--single-layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument("--sigmas", choices=SIGMA_SAMPLINGS, default="logit_normal")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = arguments().parse_args(argv)
    rng, log, started = start_run(args)
    shape = dict(double_layers=args.double_layers, single_layers=args.single_layers, heads=args.heads,
                 head_dim=args.head_dim)
    with tempfile.TemporaryDirectory() as work:
        pipe = build_flux_pipeline(Path(work), guidance_embeds=False, seed=args.seed, vae_dir=args.vae_from, **shape)
    scenes = [random_scene(rng, BASE_SHAPES) for _ in range(args.pool)]
    means, stds = encode_pool(pipe.vae, scenes)
    args.shift = float(means.mean())
    args.scale = float(1.0 / (means - args.shift).std())
    pipe.vae.register_to_config(shift_factor=args.shift, scaling_factor=args.scale)
    log(f"VAE from {args.vae_from}: shift factor {args.shift:.4f}, scaling factor {args.scale:.4f}; "
        f"{args.pool} scenes encoded")
    ids = caption_tokens(pipe, [caption(s) for s in scenes])
    empty_ids = caption_tokens(pipe, [""])[0]
    modules = [pipe.transformer, pipe.text_encoder, pipe.text_encoder_2]
    counts = {name: sum(p.numel() for p in m.parameters()) for name, m in zip(("transformer", "clip", "t5"), modules)}
    log(f"parameters: {counts}")
    args.denoiser_name = "transformer"
    train_denoiser(modules, make_predict(pipe), None, (means, stds, ids, empty_ids), args, log,
                   corrupt=flow_matching(args.sigmas))
    if args.out.exists():
        shutil.rmtree(args.out / "transformer", ignore_errors=True)
    pipe.save_pretrained(str(args.out), safe_serialization=True)
    stats = {
        "transformer_steps": args.steps, "batch": args.batch, "pool": args.pool, "lr": args.lr, "ema": args.ema,
        "seed": args.seed, "threads": args.threads, "sigmas": args.sigmas, "transformer": shape,
        "parameters": counts, "vae_from": "assets/toy-world/vae", "shift_factor": round(args.shift, 5),
        "scaling_factor": round(args.scale, 5), "wall_time_s": round(time.time() - started, 1),
    }
    (args.out / "pretrain.json").write_text(json.dumps(stats, indent=2) + "\n")
    log(f"saved to {args.out}: {stats}")


if __name__ == "__main__":
    main()
