"""Stable Diffusion 1.x (and the SD 1.x-shaped toy world): one CLIP text encoder, last hidden state."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .base import Components, Conditioning, Family, LoraNaming, tokens

if TYPE_CHECKING:
    import torch
    from diffusers import DiffusionPipeline, SchedulerMixin


class SD1(Family):
    name = "sd1"
    label = "SD 1.x"
    default_resolution = 512
    config_dir = Path(__file__).resolve().parents[1] / "sd15"
    lora_naming = LoraNaming(
        text_prefixes={"text_encoder": "lora_te_"},
        base_model_version="sd_v1",
        architecture="stable-diffusion-v1/lora",
        extra_metadata={"ss_v2": "False"},
    )

    def pipeline_class(self) -> type[DiffusionPipeline]:
        from diffusers import StableDiffusionPipeline

        return StableDiffusionPipeline

    def matches_index(self, index: dict) -> bool:
        return "text_encoder_2" not in index and "XL" not in str(index.get("_class_name", ""))

    def encode(self, components: Components, captions: list[str], device: torch.device | str) -> Conditioning:
        return Conditioning(components.text_encoder(tokens(components.tokenizer, captions, device))[0])

    def assemble_pipeline(self, components: Components, scheduler: SchedulerMixin) -> DiffusionPipeline:
        return self.pipeline_class()(
            vae=components.vae, text_encoder=components.text_encoder, tokenizer=components.tokenizer,
            unet=components.denoiser, scheduler=scheduler, safety_checker=None, feature_extractor=None,
            requires_safety_checker=False,
        )


FAMILY = SD1()
