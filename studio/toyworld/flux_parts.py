"""Build a FLUX.1-shaped pipeline at toy width from configs (the toy world's tokenizers and VAE, random weights).

The FLUX toy world's pretraining starts from it, and the tests build tiny random FLUX models with it, as
diffusers' own tests build their tiny pipelines from configs.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from studio.util.paths import repo_root

from . import architecture
from .vocab import build_clip_tokenizer, build_t5_tokenizer

if TYPE_CHECKING:
    from diffusers import FluxPipeline


def build_flux_pipeline(work: Path, guidance_embeds: bool = False, seed: int = 0, vae_dir: Path | None = None,
                        shift_factor: float | None = None, **transformer: int) -> FluxPipeline:
    """A ``FluxPipeline`` of toy width with random text encoders and transformer and the SD 1.x toy's VAE
    (``shift_factor`` set on it: FLUX's VAE shifts its latents). ``work`` holds the tokenizer files."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    clip_tokenizer = build_clip_tokenizer(Path(work) / "tokenizer")
    t5_tokenizer = build_t5_tokenizer(Path(work) / "tokenizer_2", architecture.FLUX_T5_LENGTH)
    ids = (len(clip_tokenizer), clip_tokenizer.bos_token_id, clip_tokenizer.eos_token_id, clip_tokenizer.pad_token_id)
    torch.manual_seed(seed)
    clip = CLIPTextModel(CLIPTextConfig(**architecture.flux_clip_config(*ids)))
    t5 = T5EncoderModel(T5Config(**architecture.flux_t5_config(len(t5_tokenizer))))
    vae = AutoencoderKL.from_pretrained(str(vae_dir or repo_root() / "assets" / "toy-world" / "vae"))
    vae.register_to_config(shift_factor=float(shift_factor or 0.0))
    denoiser = FluxTransformer2DModel(**architecture.flux_transformer_config(guidance_embeds, **transformer))
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**architecture.flux_scheduler_config()), vae=vae,
                        text_encoder=clip, tokenizer=clip_tokenizer, text_encoder_2=t5, tokenizer_2=t5_tokenizer,
                        transformer=denoiser)
