"""Tiny random SDXL pipelines for single-file tests, shaped as diffusers' own SDXL tests build them.

The two text encoders get different widths (32 and 48): diffusers' ``from_single_file`` tells CLIP ViT-L's weights
from OpenCLIP's by the width of their position embeddings, so with equal widths it converts the first encoder's
weights for the second and leaves the second's own weights unloaded. The tokenizers are CLIP's real vocabulary
from the shipped configs.
"""
from __future__ import annotations

import torch

from studio.models.single_file import SD15_CONFIG_DIR, SDXL_CONFIG_DIR

TEXT_WIDTH, TEXT_2_WIDTH, POOLED_WIDTH, TIME_WIDTH = 32, 48, 32, 8


def tiny_sdxl_pipeline(prediction_type: str = "epsilon", seed: int = 0):
    """A randomly initialised ``StableDiffusionXLPipeline`` (UNet 32/64 channels, transformer depth 1/2)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=2, sample_size=32, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=TIME_WIDTH, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=6 * TIME_WIDTH + POOLED_WIDTH,
        cross_attention_dim=TEXT_WIDTH + TEXT_2_WIDTH, norm_num_groups=16,
    )
    vae = AutoencoderKL(
        block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
        norm_num_groups=16, sample_size=32, scaling_factor=0.13025, force_upcast=True,
    )
    text = dict(bos_token_id=49406, eos_token_id=49407, pad_token_id=1, intermediate_size=37, layer_norm_eps=1e-05,
                num_attention_heads=4, num_hidden_layers=5, vocab_size=49408, max_position_embeddings=77)
    text_encoder = CLIPTextModel(CLIPTextConfig(**text, hidden_size=TEXT_WIDTH, hidden_act="quick_gelu"))
    text_encoder_2 = CLIPTextModelWithProjection(
        CLIPTextConfig(**text, hidden_size=TEXT_2_WIDTH, hidden_act="gelu", projection_dim=POOLED_WIDTH))
    scheduler = EulerDiscreteScheduler.from_pretrained(str(SDXL_CONFIG_DIR / "scheduler"), prediction_type=prediction_type)
    return StableDiffusionXLPipeline(
        vae=vae, unet=unet, scheduler=scheduler, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
        tokenizer=CLIPTokenizer.from_pretrained(str(SD15_CONFIG_DIR / "tokenizer")),
        tokenizer_2=CLIPTokenizer.from_pretrained(str(SDXL_CONFIG_DIR / "tokenizer_2")),
    )
