"""Tiny models with SD 1.5's and SDXL's block layouts and trained-looking LoRA / DoRA adapters, for the client
tests."""
from __future__ import annotations

from types import SimpleNamespace

import torch

from studio.models.families import SD1, SDXL
from studio.train.adapters import add_lora_adapters

RANK, ALPHA = 4, 2.0
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
EVERY_LAYER = ATTENTION + ["proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2", "conv_shortcut",
                           "time_emb_proj", "conv_in", "conv_out", "conv", "linear_1", "linear_2"]
TEXT = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def sd15_layout_model():
    """UNet and CLIP text encoder with SD 1.5's structure, tiny widths, random weights."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16, 16, 16), layers_per_block=2, norm_num_groups=4, cross_attention_dim=16,
        attention_head_dim=2, sample_size=8,
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3)
    text = CLIPTextModel(CLIPTextConfig(hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                        num_attention_heads=2, vocab_size=64, max_position_embeddings=16))
    return unet, text


def sdxl_layout_model():
    """UNet and both text encoders with SDXL base's structure (three levels; 1, 2 and 10 transformer layers; the
    time-ids embedding; CLIP-L and OpenCLIP-bigG-shaped encoders with a projection), tiny widths, random weights."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(8, 16, 16), layers_per_block=2, norm_num_groups=4, cross_attention_dim=16,
        attention_head_dim=(2, 2, 2), transformer_layers_per_block=(1, 2, 10), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=4, projection_class_embeddings_input_dim=32,
        sample_size=8, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"))
    config = dict(hidden_size=8, intermediate_size=12, num_hidden_layers=2, num_attention_heads=2, vocab_size=64,
                  max_position_embeddings=16)
    text = {"text_encoder": CLIPTextModel(CLIPTextConfig(**config)),
            "text_encoder_2": CLIPTextModelWithProjection(CLIPTextConfig(**config, projection_dim=8))}
    return unet, text


def trained(targets, use_dora: bool, family=SD1):
    """The model of ``family``'s layout adapted as a run adapts it (``add_lora_adapters``), with trained-looking
    weights: ``(unet, {component: text encoder})``."""
    if family is SDXL:
        unet, texts = sdxl_layout_model()
    else:
        unet, text = sd15_layout_model()
        texts = {"text_encoder": text}
    config = SimpleNamespace(
        effective_alpha=lambda: ALPHA, target_modules=targets, text_encoder_target_modules=TEXT, lora_rank=RANK,
        lora_dropout=0.0, use_dora=use_dora, dora_axis="webui", seed=3, train_text_encoder=True)
    add_lora_adapters(unet, texts, config, family)
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():  # a trained state: non-zero B, magnitudes away from the base norms
        for model in (unet, *texts.values()):
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(0.3 * torch.randn(param.shape, generator=generator))
                elif name.endswith("dora_scale"):
                    param.mul_(1 + 0.2 * torch.rand(param.shape, generator=generator))
    return unet, texts
