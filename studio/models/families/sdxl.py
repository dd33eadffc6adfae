"""SDXL (and the single-file SDXL models Pony, Illustrious and NoobAI): two CLIP text encoders and added time ids.

A caption is encoded by both encoders; the penultimate hidden states are concatenated for cross-attention and
the second encoder's pooled projection goes, with six micro-conditioning numbers per picture (original height and
width, crop top and left, target height and width), into the UNet's added "text_time" embedding.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .base import Components, Conditioning, Family, LoraNaming, tokens

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline, SchedulerMixin
    from transformers import PreTrainedModel


class SDXL(Family):
    name = "sdxl"
    label = "SDXL"
    default_resolution = 1024
    default_guidance = 5.0
    config_dir = Path(__file__).resolve().parents[1] / "sdxl"
    text_encoder_names = ("text_encoder", "text_encoder_2")
    lora_text_encoder_names = ("text_encoder", "text_encoder_2")
    lora_naming = LoraNaming(
        text_prefixes={"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"},
        base_model_version="sdxl_base_v1-0",
        architecture="stable-diffusion-xl-v1-base/lora",
        patched_together={"text_encoder_2": ("q_proj", "k_proj", "v_proj", "out_proj")},
    )

    def pipeline_class(self) -> type[DiffusionPipeline]:
        from diffusers import StableDiffusionXLPipeline

        return StableDiffusionXLPipeline

    def matches_index(self, index: dict) -> bool:
        name = str(index.get("_class_name", ""))
        return "text_encoder_2" in index and "XL" in name and "Img2Img" not in name and "Inpaint" not in name

    def encode(self, components: Components, captions: list[str], device: torch.device | str) -> Conditioning:
        first = components.text_encoder(tokens(components.tokenizer, captions, device), output_hidden_states=True)
        second = components.text_encoder_2(tokens(components.tokenizer_2, captions, device), output_hidden_states=True)
        hidden = torch.cat([first.hidden_states[-2], second.hidden_states[-2]], dim=-1)
        return Conditioning(hidden, second.text_embeds)

    def text_encoder_layers(self, name: str, encoder: PreTrainedModel) -> list[int] | None:
        """The first encoder is read at its penultimate layer; the second's last layer feeds the pooled vector."""
        if name == "text_encoder":
            return list(range(encoder.config.num_hidden_layers - 1))
        return None

    def micro_conditioning(self, original_size: tuple[int, int], crop_top_left: tuple[int, int],
                           target_size: tuple[int, int]) -> list[float]:
        return [float(v) for v in (*original_size, *crop_top_left, *target_size)]

    def unet_kwargs(self, conditioning: Conditioning, micro: torch.Tensor | None) -> dict:
        added = {"text_embeds": conditioning.pooled, "time_ids": micro.to(conditioning.hidden)}
        return {"encoder_hidden_states": conditioning.hidden, "added_cond_kwargs": added}

    def assemble_pipeline(self, components: Components, scheduler: SchedulerMixin) -> DiffusionPipeline:
        return self.pipeline_class()(
            vae=components.vae, text_encoder=components.text_encoder, text_encoder_2=components.text_encoder_2,
            tokenizer=components.tokenizer, tokenizer_2=components.tokenizer_2, unet=components.denoiser,
            scheduler=scheduler, force_zeros_for_empty_prompt=False,
        )


FAMILY = SDXL()
