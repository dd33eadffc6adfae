"""The SDXL reference training loop for ``bench_train.py``: written the way diffusers'
``examples/dreambooth/train_dreambooth_lora_sdxl.py`` trains an SDXL UNet LoRA on pictures with their own captions
(``--caption_column``), text encoders frozen.

Set-up, in the script's order: the scheduler, both tokenizers and text encoders, the VAE and the UNet loaded per
subfolder with ``from_pretrained``, frozen; the UNet and the text encoders in the mixed-precision dtype, the VAE
always in float32; the same peft LoRA our engine adds (gaussian init, alpha = rank), its parameters in float32;
AdamW; the dataset, which (as the script's does) resizes, centre-crops and normalises every picture once up front
and keeps each one's original size and crop corner. Per step: both text encoders on the batch's captions under
``no_grad`` (penultimate hidden states concatenated, pooled output of the second), ``vae.encode(pixels)
.latent_dist.sample() * scaling_factor``, noise and timesteps, ``add_noise``, the six time ids per picture
(original size, crop corner, target size), the UNet with ``added_cond_kwargs``, MSE on the float32 prediction,
``loss.item()`` for the log, ``accelerator.backward``, clip, AdamW step, LR scheduler step, ``zero_grad``.
Nothing is cached between steps. Our own code (a re-implementation for measuring, not a copy of the script).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from train_reference import add_lora, finish_step, load_pixels, prepare, read_metadata, target_for


class SDXLPictures(torch.utils.data.Dataset):
    """Every picture transformed once (as the script's ``DreamBoothDataset`` does), with its caption, original
    (height, width) and crop (top, left)."""

    def __init__(self, folder: Path, resolution: int):
        self.items = []
        for path, caption in read_metadata(folder):
            pixels, original, crop = load_pixels(path, resolution)
            self.items.append({"pixel_values": pixels, "prompt": caption, "original_size": original,
                               "crop_top_left": crop})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]


def collate(examples: list[dict]) -> dict:
    pixels = torch.stack([e["pixel_values"] for e in examples]).to(memory_format=torch.contiguous_format).float()
    return {"pixel_values": pixels, "prompts": [e["prompt"] for e in examples],
            "original_sizes": [e["original_size"] for e in examples],
            "crop_top_lefts": [e["crop_top_left"] for e in examples]}


def encode_prompt(text_encoders, tokenizers, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """(penultimate hidden states of both encoders side by side, the second encoder's pooled projection)."""
    hidden = []
    for tokenizer, text_encoder in zip(tokenizers, text_encoders):
        ids = tokenizer(prompts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids
        output = text_encoder(ids.to(text_encoder.device), output_hidden_states=True, return_dict=False)
        pooled = output[0]
        hidden.append(output[-1][-2])
    return torch.concat(hidden, dim=-1), pooled.view(pooled.shape[0], -1)


def load_reference_sdxl(model_dir: str, data_dir: str, resolution: int, batch_size: int, rank: int, seed: int,
                        learning_rate: float, mixed_precision: str = "no",
                        gradient_checkpointing: bool = False) -> dict:
    """Everything the SDXL reference loop needs (the keys ``reference_sdxl_step`` reads)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    accelerator = Accelerator(mixed_precision=mixed_precision)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)
    set_seed(seed)
    tokenizers = [CLIPTokenizer.from_pretrained(model_dir, subfolder=name) for name in ("tokenizer", "tokenizer_2")]
    noise_scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
    text_encoders = [CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder"),
                     CLIPTextModelWithProjection.from_pretrained(model_dir, subfolder="text_encoder_2")]
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    for model, dtype in ((unet, weight_dtype), (vae, torch.float32), *((e, weight_dtype) for e in text_encoders)):
        model.requires_grad_(False)
        model.to(accelerator.device, dtype=dtype)
    lora_layers, optimizer = add_lora(unet, rank, seed, learning_rate, gradient_checkpointing)
    dataset = SDXLPictures(Path(data_dir), resolution)
    unet, optimizer, loader, lr_scheduler = prepare(accelerator, unet, optimizer, dataset, collate, batch_size)
    return {"accelerator": accelerator, "noise_scheduler": noise_scheduler, "text_encoders": text_encoders,
            "tokenizers": tokenizers, "vae": vae, "unet": unet, "optimizer": optimizer, "lr_scheduler": lr_scheduler,
            "loader": loader, "params": lora_layers, "weight_dtype": weight_dtype, "resolution": resolution}


def _time_ids(parts: dict, batch: dict) -> torch.Tensor:
    """The script's ``compute_time_ids`` per picture: original size + crop corner + (resolution, resolution)."""
    target = (parts["resolution"], parts["resolution"])
    rows = [torch.tensor([list(size + crop + target)]) for size, crop in
            zip(batch["original_sizes"], batch["crop_top_lefts"])]
    return torch.cat(rows).to(parts["accelerator"].device, dtype=parts["weight_dtype"])


def reference_sdxl_step(parts: dict, batch: dict, max_grad_norm: float = 1.0) -> float:
    """One optimizer step the way the script takes it; returns the logged loss."""
    accelerator, scheduler, unet, vae = parts["accelerator"], parts["noise_scheduler"], parts["unet"], parts["vae"]
    with accelerator.accumulate(unet):
        with torch.no_grad():
            prompt_embeds, pooled = encode_prompt(parts["text_encoders"], parts["tokenizers"], batch["prompts"])
        model_input = vae.encode(batch["pixel_values"].to(dtype=vae.dtype)).latent_dist.sample()
        model_input = (model_input * vae.config.scaling_factor).to(parts["weight_dtype"])
        noise = torch.randn_like(model_input)
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (model_input.shape[0],),
                                  device=model_input.device).long()
        noisy_model_input = scheduler.add_noise(model_input, noise, timesteps)
        added = {"time_ids": _time_ids(parts, batch), "text_embeds": pooled}
        model_pred = unet(noisy_model_input, timesteps, prompt_embeds, added_cond_kwargs=added, return_dict=False)[0]
        target = target_for(scheduler, model_input, noise, timesteps)
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        finish_step(parts, loss, max_grad_norm)
    return loss.detach().item()
