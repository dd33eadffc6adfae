"""The reference training loop for ``bench_train.py``: written the way diffusers'
``examples/text_to_image/train_text_to_image_lora.py`` trains an SD 1.x UNet LoRA.

Per step: decode and transform the batch's images in the main process (the script's DataLoader has no workers
by default), tokenize the captions, ``vae.encode(pixels).latent_dist.sample() * scaling_factor``, noise and
timesteps, ``noise_scheduler.add_noise``, the target by prediction type, ``text_encoder(input_ids)[0]``, the
UNet, MSE, ``accelerator.gather(...).item()`` for the logged loss, ``accelerator.backward``, clip, AdamW step,
LR scheduler step, ``zero_grad``. Nothing is cached. The models are loaded per subfolder with ``from_pretrained``,
frozen, moved to the device, and the UNet gets the same peft LoRA (gaussian init, alpha = rank) our engine adds.
Our own code (a re-implementation for measuring, not a copy of the script).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class CaptionedImages(torch.utils.data.Dataset):
    """``metadata.csv`` (file_name/filename, prompt/text) beside the images, transformed on access like the script:
    resize the short side to ``resolution`` (bilinear), centre crop, to [-1, 1]; captions tokenized to 77."""

    def __init__(self, folder: Path, tokenizer, resolution: int):
        with open(folder / "metadata.csv", newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
        self.items = [(folder / (row.get("file_name") or row["filename"]), row.get("prompt") or row.get("text", ""))
                      for row in rows]
        self.tokenizer = tokenizer
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.items)

    def _pixels(self, path: Path) -> torch.Tensor:
        from PIL import Image

        size = self.resolution
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        scale = size / min(image.size)
        image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
        left, top = (image.width - size) // 2, (image.height - size) // 2
        image = image.crop((left, top, left + size, top + size))
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def __getitem__(self, index: int) -> dict:
        path, caption = self.items[index]
        ids = self.tokenizer(caption, max_length=self.tokenizer.model_max_length, padding="max_length",
                             truncation=True, return_tensors="pt").input_ids[0]
        return {"pixel_values": self._pixels(path), "input_ids": ids}


def collate(examples: list[dict]) -> dict:
    pixels = torch.stack([e["pixel_values"] for e in examples]).to(memory_format=torch.contiguous_format).float()
    return {"pixel_values": pixels, "input_ids": torch.stack([e["input_ids"] for e in examples])}


def load_reference(model_dir: str, data_dir: str, resolution: int, batch_size: int, rank: int, seed: int,
                   learning_rate: float, mixed_precision: str = "no", gradient_checkpointing: bool = False) -> dict:
    """Everything the reference loop needs, set up in the script's order.

    ``mixed_precision`` "fp16"/"bf16" does what the script does with it: the frozen models in that dtype, the
    LoRA parameters kept in float32, the UNet's forward under the accelerator's autocast."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.optimization import get_scheduler
    from peft import LoraConfig
    from transformers import CLIPTextModel, CLIPTokenizer

    accelerator = Accelerator(mixed_precision=mixed_precision)
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(mixed_precision, torch.float32)
    set_seed(seed)
    noise_scheduler = DDPMScheduler.from_pretrained(model_dir, subfolder="scheduler")
    tokenizer = CLIPTokenizer.from_pretrained(model_dir, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(model_dir, subfolder="text_encoder")
    vae = AutoencoderKL.from_pretrained(model_dir, subfolder="vae")
    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet")
    for model in (unet, vae, text_encoder):
        model.requires_grad_(False)
        model.to(accelerator.device, dtype=weight_dtype)
    torch.manual_seed(seed)  # the same LoRA initialisation as our engine's (it seeds right before add_adapter)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TARGETS))
    lora_layers = [p for p in unet.parameters() if p.requires_grad]
    for param in lora_layers:  # the script's cast_training_params: trainable parameters stay float32
        param.data = param.data.float()
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(lora_layers, lr=learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    dataset = CaptionedImages(Path(data_dir), tokenizer, resolution)
    loader = torch.utils.data.DataLoader(dataset, shuffle=True, collate_fn=collate, batch_size=batch_size,
                                         num_workers=0, drop_last=len(dataset) >= batch_size)
    lr_scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=10_000)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    unet.train()
    return {"accelerator": accelerator, "noise_scheduler": noise_scheduler, "text_encoder": text_encoder,
            "vae": vae, "unet": unet, "optimizer": optimizer, "lr_scheduler": lr_scheduler, "loader": loader,
            "params": lora_layers, "batch_size": batch_size, "weight_dtype": weight_dtype}


def batches(parts: dict):
    """The DataLoader's batches, epoch after epoch (images are read and transformed as each batch is drawn)."""
    while True:
        yield from parts["loader"]


def reference_step(parts: dict, batch: dict, max_grad_norm: float = 1.0) -> float:
    """One optimizer step the way the script takes it; returns the logged (gathered) loss."""
    accelerator, scheduler, unet, vae = parts["accelerator"], parts["noise_scheduler"], parts["unet"], parts["vae"]
    with accelerator.accumulate(unet):
        latents = vae.encode(batch["pixel_values"].to(dtype=parts["weight_dtype"])).latent_dist.sample()
        latents = latents * vae.config.scaling_factor
        noise = torch.randn_like(latents)
        bsz = latents.shape[0]
        timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (bsz,), device=latents.device).long()
        noisy_latents = scheduler.add_noise(latents, noise, timesteps)
        encoder_hidden_states = parts["text_encoder"](batch["input_ids"], return_dict=False)[0]
        if scheduler.config.prediction_type == "epsilon":
            target = noise
        elif scheduler.config.prediction_type == "v_prediction":
            target = scheduler.get_velocity(latents, noise, timesteps)
        else:
            raise ValueError(f"unknown prediction type {scheduler.config.prediction_type}")
        model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        train_loss = accelerator.gather(loss.repeat(parts["batch_size"])).mean().item()
        accelerator.backward(loss)
        if accelerator.sync_gradients:
            accelerator.clip_grad_norm_(parts["params"], max_grad_norm)
        parts["optimizer"].step()
        parts["lr_scheduler"].step()
        parts["optimizer"].zero_grad()
    return train_loss
