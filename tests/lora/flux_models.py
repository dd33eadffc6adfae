"""Tiny random FLUX.1 pipelines (``studio.toyworld.flux_parts``) with trained-looking LoRA adapters, for the FLUX
LoRA file tests."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import torch

from studio.models.families import FLUX
from studio.train.adapters import add_lora_adapters

RANK, ALPHA = 4, 2.0  # alpha differs from the rank: the files fold alpha / rank into lora_B
ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]
# Every Linear layer of FluxTransformer2DModel, by the names PEFT matches (suffixes of the module paths).
EVERY_LINEAR = ATTENTION + [
    "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj",
    "ff_context.net.2", "norm1.linear", "norm1_context.linear", "norm.linear", "proj_mlp", "proj_out", "x_embedder",
    "context_embedder", "linear_1", "linear_2", "norm_out.linear",
]
TEXT = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]


def load_flux(model_dir: Path):
    from diffusers import FluxPipeline

    pipe = FluxPipeline.from_pretrained(str(model_dir))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def adapted(model_dir: Path, targets: list[str], seed: int = 5):
    """The model's pipeline with LoRA adapters on ``targets`` of the transformer and on CLIP, as a run adds them,
    with non-zero ``lora_B`` (a trained state)."""
    pipe = load_flux(model_dir)
    config = SimpleNamespace(
        effective_alpha=lambda: ALPHA, target_modules=targets, text_encoder_target_modules=TEXT, lora_rank=RANK,
        lora_dropout=0.0, use_dora=False, dora_axis="webui", seed=3, train_text_encoder=True)
    add_lora_adapters(pipe.transformer, {"text_encoder": pipe.text_encoder}, config, FLUX)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in (pipe.transformer, pipe.text_encoder):
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    return pipe


def transformer_inputs(transformer, seed: int = 0) -> dict:
    """Random inputs for one call of a FLUX transformer: 16 image tokens, 8 text tokens."""
    config = transformer.config
    generator = torch.Generator().manual_seed(seed)
    ids = torch.zeros(16, 3)
    ids[:, 1], ids[:, 2] = torch.arange(16) // 4, torch.arange(16) % 4
    inputs = dict(hidden_states=torch.randn(1, 16, config.in_channels, generator=generator),
                  encoder_hidden_states=torch.randn(1, 8, config.joint_attention_dim, generator=generator),
                  pooled_projections=torch.randn(1, config.pooled_projection_dim, generator=generator),
                  timestep=torch.tensor([0.6]), img_ids=ids, txt_ids=torch.zeros(8, 3), return_dict=False)
    if config.guidance_embeds:
        inputs["guidance"] = torch.tensor([3.5])
    return inputs
