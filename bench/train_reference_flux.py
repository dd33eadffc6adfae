"""The FLUX.1 reference training loop: written the way diffusers' ``examples/dreambooth/train_dreambooth_lora_flux.py``
trains a FLUX transformer LoRA on pictures with their own captions (``--caption_column``), text encoders frozen.

Set-up, in the script's order: the flow-matching scheduler and a copy of it, both tokenizers and text encoders,
the VAE and the transformer, frozen, every one moved to the device in the mixed-precision dtype (the script's
``weight_dtype``, the VAE included); gradient checkpointing when asked; the peft LoRA on
``to_k/to_q/to_v/to_out.0`` (gaussian init, alpha = rank) added after that cast, so its parameters take the base
layer's dtype and are cast to float32 only under fp16 (``cast_training_params``); AdamW (betas 0.9/0.999,
weight decay 1e-4, eps 1e-8); the pictures transformed once up front; constant LR schedule;
``accelerator.prepare``. Per step: both text encoders on the batch's captions under ``no_grad`` (CLIP's pooled
output, T5's hidden states over 512 tokens, zero text ids); ``vae.encode(pixels).latent_dist.sample()``,
``(x - shift_factor) * scaling_factor``; the image position ids (``FluxPipeline._prepare_latent_image_ids``);
noise; ``u`` from ``compute_density_for_timestep_sampling``, the timesteps from the scheduler copy's table and
their sigmas (``get_sigmas``: one table look-up per picture); the flow-matching input ``(1 - σ) x + σ ε``;
``_pack_latents``; the guidance value (dev); the transformer told ``timestep / 1000``; ``_unpack_latents``;
``compute_loss_weighting_for_sd3``; the target ``ε - x``; the weighted MSE; backward, clip, AdamW step,
LR scheduler step, ``zero_grad``; ``loss.item()`` for the log. Nothing is cached between steps.
Our own code (a re-implementation for measuring, not a copy of the script).
"""
from __future__ import annotations

import copy
from pathlib import Path

import torch

from train_reference import prepare
from train_reference_sdxl import SDXLPictures, collate

TARGETS = ["to_k", "to_q", "to_v", "to_out.0"]
GUIDANCE = 3.5  # the script's --guidance_scale default
COMPONENTS = ("scheduler", "tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "vae", "transformer")


def models_from_folder(model_dir: str) -> dict:
    """Scheduler, tokenizers, text encoders, VAE and transformer loaded per subfolder, as the script loads them."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxTransformer2DModel
    from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

    return {"scheduler": FlowMatchEulerDiscreteScheduler.from_pretrained(model_dir, subfolder="scheduler"),
            "tokenizer": CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer"),
            "tokenizer_2": T5TokenizerFast.from_pretrained(model_dir, subfolder="tokenizer_2"),
            "text_encoder": CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder"),
            "text_encoder_2": T5EncoderModel.from_pretrained(model_dir, subfolder="text_encoder_2"),
            "vae": AutoencoderKL.from_pretrained(model_dir, subfolder="vae"),
            "transformer": FluxTransformer2DModel.from_pretrained(model_dir, subfolder="transformer")}


def add_lora(transformer: torch.nn.Module, rank: int, seed: int, mixed_precision: str) -> list[torch.nn.Parameter]:
    """The script's LoRA, seeded right before ``add_adapter`` (as our engine seeds); float32 only under fp16."""
    from peft import LoraConfig

    torch.manual_seed(seed)
    transformer.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian",
                                       target_modules=TARGETS))
    params = [p for p in transformer.parameters() if p.requires_grad]
    if mixed_precision == "fp16":
        for param in params:
            param.data = param.data.float()
    return params


def load_reference_flux(models: dict, data_dir: str, resolution: int, batch_size: int, rank: int, seed: int,
                        learning_rate: float, mixed_precision: str = "no", gradient_checkpointing: bool = False,
                        max_sequence_length: int = 512) -> dict:
    """Everything the FLUX reference loop needs (the keys ``reference_flux_step`` reads). ``models``: the
    ``COMPONENTS`` (``models_from_folder``, or built in memory)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    accelerator = Accelerator(mixed_precision=mixed_precision)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)
    set_seed(seed)
    parts = dict(models)
    parts["scheduler_copy"] = copy.deepcopy(parts["scheduler"])
    for name in ("transformer", "vae", "text_encoder", "text_encoder_2"):
        parts[name].requires_grad_(False)
        parts[name].to(accelerator.device, dtype=weight_dtype)
    transformer = parts["transformer"]
    if gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    params = add_lora(transformer, rank, seed, mixed_precision)
    optimizer = torch.optim.AdamW(params, lr=learning_rate, betas=(0.9, 0.999), weight_decay=1e-4, eps=1e-8)
    dataset = SDXLPictures(Path(data_dir), resolution)
    transformer, optimizer, loader, lr_scheduler = prepare(accelerator, transformer, optimizer, dataset, collate,
                                                           batch_size)
    parts.update(accelerator=accelerator, transformer=transformer, optimizer=optimizer, loader=loader,
                 lr_scheduler=lr_scheduler, params=params, weight_dtype=weight_dtype,
                 max_sequence_length=max_sequence_length)
    return parts


def encode_prompt(parts: dict, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(T5 hidden states, CLIP pooled output, zero text ids), as the script's ``encode_prompt``."""
    device, clip, t5 = parts["accelerator"].device, parts["text_encoder"], parts["text_encoder_2"]
    dtype = clip.dtype
    ids = parts["tokenizer"](prompts, padding="max_length", max_length=77, truncation=True,
                             return_tensors="pt").input_ids
    pooled = clip(ids.to(device), output_hidden_states=False).pooler_output.to(dtype=dtype, device=device)
    ids = parts["tokenizer_2"](prompts, padding="max_length", max_length=parts["max_sequence_length"],
                               truncation=True, return_tensors="pt").input_ids
    hidden = t5(ids.to(device))[0].to(dtype=dtype, device=device)
    text_ids = torch.zeros(hidden.shape[1], 3).to(device=device, dtype=dtype)
    return hidden, pooled, text_ids


def get_sigmas(parts: dict, timesteps: torch.Tensor, n_dim: int, dtype: torch.dtype) -> torch.Tensor:
    """The sigma of each timestep, looked up in the scheduler copy's table one picture at a time."""
    device, scheduler = parts["accelerator"].device, parts["scheduler_copy"]
    sigmas = scheduler.sigmas.to(device=device, dtype=dtype)
    schedule_timesteps = scheduler.timesteps.to(device)
    indices = [(schedule_timesteps == t).nonzero().item() for t in timesteps.to(device)]
    sigma = sigmas[indices].flatten()
    while len(sigma.shape) < n_dim:
        sigma = sigma.unsqueeze(-1)
    return sigma


def predict(transformer: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor, hidden: torch.Tensor,
            pooled: torch.Tensor, text_ids: torch.Tensor, guidance_scale: float, vae_scale_factor: int) -> torch.Tensor:
    """Pack, the transformer, unpack: the script's forward pass for latents ``noisy``."""
    from diffusers import FluxPipeline

    batch, channels, height, width = noisy.shape
    image_ids = FluxPipeline._prepare_latent_image_ids(batch, height // 2, width // 2, noisy.device, noisy.dtype)
    packed = FluxPipeline._pack_latents(noisy, batch_size=batch, num_channels_latents=channels, height=height,
                                        width=width)
    guidance = None
    if getattr(transformer, "module", transformer).config.guidance_embeds:
        guidance = torch.tensor([guidance_scale], device=noisy.device).expand(batch)
    prediction = transformer(hidden_states=packed, timestep=timesteps / 1000, guidance=guidance,
                             pooled_projections=pooled, encoder_hidden_states=hidden, txt_ids=text_ids,
                             img_ids=image_ids, return_dict=False)[0]
    return FluxPipeline._unpack_latents(prediction, height=height * vae_scale_factor, width=width * vae_scale_factor,
                                        vae_scale_factor=vae_scale_factor)


def reference_flux_step(parts: dict, batch: dict, max_grad_norm: float = 1.0,
                        weighting_scheme: str = "none") -> float:
    """One optimizer step the way the script takes it; returns the logged loss."""
    from diffusers.training_utils import compute_density_for_timestep_sampling, compute_loss_weighting_for_sd3

    accelerator, transformer, vae = parts["accelerator"], parts["transformer"], parts["vae"]
    with accelerator.accumulate([transformer]):
        with torch.no_grad():
            hidden, pooled, text_ids = encode_prompt(parts, batch["prompts"])
        pixels = batch["pixel_values"].to(accelerator.device, dtype=vae.dtype)
        latents = vae.encode(pixels).latent_dist.sample()
        latents = ((latents - vae.config.shift_factor) * vae.config.scaling_factor).to(dtype=parts["weight_dtype"])
        noise = torch.randn_like(latents)
        u = compute_density_for_timestep_sampling(weighting_scheme=weighting_scheme, batch_size=latents.shape[0],
                                                  logit_mean=0.0, logit_std=1.0, mode_scale=1.29)
        indices = (u * parts["scheduler_copy"].config.num_train_timesteps).long()
        timesteps = parts["scheduler_copy"].timesteps[indices].to(device=latents.device)
        sigmas = get_sigmas(parts, timesteps, latents.ndim, latents.dtype)
        noisy = (1.0 - sigmas) * latents + sigmas * noise
        vae_scale_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        prediction = predict(transformer, noisy, timesteps, hidden, pooled, text_ids, GUIDANCE, vae_scale_factor)
        weighting = compute_loss_weighting_for_sd3(weighting_scheme=weighting_scheme, sigmas=sigmas)
        target = noise - latents
        loss = torch.mean((weighting.float() * (prediction.float() - target.float()) ** 2).reshape(target.shape[0], -1),
                          1).mean()
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(transformer.parameters(), max_grad_norm)
        parts["optimizer"].step()
        parts["lr_scheduler"].step()
        parts["optimizer"].zero_grad()
    return loss.detach().item()
