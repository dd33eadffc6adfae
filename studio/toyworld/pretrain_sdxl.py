"""Pretrain the SDXL toy-world model on the CPU and save it as a diffusers SDXL folder.

    python -m studio.toyworld.pretrain_sdxl --out assets/toy-world-sdxl [--steps 9000] [--threads 1]

The same world and recipe as the SD 1.x toy (``pretrain.py``), in SDXL's architecture: the UNet and both text
encoders are trained jointly with v-prediction on a zero-terminal-SNR schedule, an EMA of the weights and 10 %
empty captions (the empty caption is encoded, not zeroed, so the folder sets ``force_zeros_for_empty_prompt``
off). Conditioning is built as SDXL pipelines build it: the penultimate hidden states of both encoders
concatenated, the second encoder's pooled projection and the six micro-conditioning numbers as added embeddings.
The VAE is copied from the SD 1.x toy (same class, same latents), so only the denoiser is trained here.
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

from . import architecture  # noqa: E402
from .pretrain import denoiser_arguments, encode_pool, start_run, train_denoiser  # noqa: E402
from .vocab import build_clip_tokenizer  # noqa: E402
from .world import BASE_SHAPES, caption, random_scene  # noqa: E402

if TYPE_CHECKING:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

SIZE = 32


def build_components(tokenizer_dir: Path, vae_dir: Path) -> tuple[CLIPTokenizer, CLIPTextModel,
                                                                   CLIPTextModelWithProjection, AutoencoderKL,
                                                                   UNet2DConditionModel, DDIMScheduler]:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    tokenizer = build_clip_tokenizer(tokenizer_dir)
    ids = (len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    torch.manual_seed(0)
    text_encoder = CLIPTextModel(CLIPTextConfig(**architecture.sdxl_text_encoder_config(*ids)))
    text_encoder_2 = CLIPTextModelWithProjection(CLIPTextConfig(**architecture.sdxl_text_encoder_config(*ids)))
    vae = AutoencoderKL.from_pretrained(str(vae_dir))
    unet = UNet2DConditionModel(**architecture.sdxl_unet_config())
    return tokenizer, text_encoder, text_encoder_2, vae, unet, DDIMScheduler(**architecture.scheduler_config())


def encode_text(text_encoder: CLIPTextModel, text_encoder_2: CLIPTextModelWithProjection,
                tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden states for cross-attention, pooled embedding), as ``StableDiffusionXLPipeline.encode_prompt``."""
    first = text_encoder(tokens, output_hidden_states=True)
    second = text_encoder_2(tokens, output_hidden_states=True)
    hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
    return hidden, second.text_embeds


def save_pipeline(out: Path, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel,
                  text_encoder_2: CLIPTextModelWithProjection, vae: AutoencoderKL, unet: UNet2DConditionModel,
                  scheduler: DDIMScheduler) -> None:
    from diffusers import StableDiffusionXLPipeline

    pipe = StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=tokenizer, unet=unet, scheduler=scheduler, force_zeros_for_empty_prompt=False,
    )
    pipe.save_pretrained(str(out), safe_serialization=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    denoiser_arguments(parser).add_argument(
        "--vae-from", type=Path, default=repo_root() / "assets" / "toy-world" / "vae")
    args = parser.parse_args(argv)
    rng, log, started = start_run(args)

    with tempfile.TemporaryDirectory() as work:
        tokenizer, text_encoder, text_encoder_2, vae, unet, scheduler = build_components(Path(work), args.vae_from)
    scenes = [random_scene(rng, BASE_SHAPES) for _ in range(args.pool)]
    means, stds = encode_pool(vae, scenes)
    args.scale = float(vae.config.scaling_factor)
    log(f"VAE from {args.vae_from} (scaling factor {args.scale:.4f}); {args.pool} scenes encoded")
    ids = tokenizer([caption(s) for s in scenes], padding="max_length", max_length=77, return_tensors="pt").input_ids
    empty_ids = tokenizer([""], padding="max_length", max_length=77, return_tensors="pt").input_ids[0]
    time_ids = torch.tensor([[SIZE, SIZE, 0, 0, SIZE, SIZE]], dtype=torch.float32)

    def predict(noisy, timesteps, tokens):
        hidden, pooled = encode_text(text_encoder, text_encoder_2, tokens)
        added = {"text_embeds": pooled, "time_ids": time_ids.repeat(len(tokens), 1)}
        return unet(noisy, timesteps, hidden, added_cond_kwargs=added).sample

    modules = [unet, text_encoder, text_encoder_2]
    train_denoiser(modules, predict, scheduler, (means, stds, ids, empty_ids), args, log)
    if args.out.exists():
        shutil.rmtree(args.out / "unet", ignore_errors=True)
    save_pipeline(args.out, tokenizer, text_encoder, text_encoder_2, vae, unet, scheduler)
    stats = {
        "unet_steps": args.steps, "batch": args.batch, "pool": args.pool, "lr": args.lr, "ema": args.ema,
        "seed": args.seed, "threads": args.threads, "vae_from": "assets/toy-world/vae",
        "scaling_factor": round(args.scale, 5), "wall_time_s": round(time.time() - started, 1),
    }
    (args.out / "pretrain.json").write_text(json.dumps(stats, indent=2) + "\n")
    log(f"saved to {args.out}: {stats}")


if __name__ == "__main__":
    main()
