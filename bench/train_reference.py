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


def load_pixels(path: Path, size: int) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """(pixels in [-1, 1], original (height, width), crop (top, left)): the short side resized to ``size``
    (bilinear), then a centred ``size`` x ``size`` crop, the corner rounded as the SDXL script rounds it."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    original = (image.height, image.width)
    scale = size / min(image.size)
    image = image.resize((max(size, round(image.width * scale)), max(size, round(image.height * scale))),
                         Image.Resampling.BILINEAR)
    top, left = max(0, round((image.height - size) / 2.0)), max(0, round((image.width - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous(), original, (top, left)


def read_metadata(folder: Path) -> list[tuple[Path, str]]:
    """(image path, caption) per row of ``metadata.csv`` (file_name/filename, prompt/text)."""
    with open(folder / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [(folder / (row.get("file_name") or row["filename"]), row.get("prompt") or row.get("text", ""))
            for row in rows]


class CaptionedImages(torch.utils.data.Dataset):
    """``metadata.csv`` (file_name/filename, prompt/text) beside the images, transformed on access like the script:
    resize the short side to ``resolution`` (bilinear), centre crop, to [-1, 1]; captions tokenized to 77."""

    def __init__(self, folder: Path, tokenizer, resolution: int):
        self.items = read_metadata(folder)
        self.tokenizer = tokenizer
        self.resolution = resolution

    def __len__(self) -> int:
        return len(self.items)

    def _pixels(self, path: Path) -> torch.Tensor:
        return load_pixels(path, self.resolution)[0]

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
    lora_layers, optimizer = add_lora(unet, rank, seed, learning_rate, gradient_checkpointing)
    dataset = CaptionedImages(Path(data_dir), tokenizer, resolution)
    unet, optimizer, loader, lr_scheduler = prepare(accelerator, unet, optimizer, dataset, collate, batch_size)
    return {"accelerator": accelerator, "noise_scheduler": noise_scheduler, "text_encoder": text_encoder,
            "vae": vae, "unet": unet, "optimizer": optimizer, "lr_scheduler": lr_scheduler, "loader": loader,
            "params": lora_layers, "batch_size": batch_size, "weight_dtype": weight_dtype}


def add_lora(unet, rank: int, seed: int, learning_rate: float, gradient_checkpointing: bool):
    """The same peft LoRA our engine adds (seeded right before ``add_adapter``, as our engine seeds), its
    parameters cast to float32 (the scripts' ``cast_training_params``), and the scripts' AdamW; returns
    (LoRA parameters, optimizer)."""
    from peft import LoraConfig

    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=TARGETS))
    lora_layers = [p for p in unet.parameters() if p.requires_grad]
    for param in lora_layers:
        param.data = param.data.float()
    if gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    optimizer = torch.optim.AdamW(lora_layers, lr=learning_rate, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    return lora_layers, optimizer


def prepare(accelerator, unet, optimizer, dataset, collate_fn, batch_size: int) -> tuple:
    """The scripts' DataLoader (shuffled, no workers), constant LR schedule and ``accelerator.prepare``; the UNet
    in train mode. Returns (unet, optimizer, loader, lr_scheduler)."""
    from diffusers.optimization import get_scheduler

    loader = torch.utils.data.DataLoader(dataset, shuffle=True, collate_fn=collate_fn, batch_size=batch_size,
                                         num_workers=0, drop_last=len(dataset) >= batch_size)
    lr_scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=10_000)
    unet, optimizer, loader, lr_scheduler = accelerator.prepare(unet, optimizer, loader, lr_scheduler)
    unet.train()
    return unet, optimizer, loader, lr_scheduler


def target_for(scheduler, latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """What the UNet learns to predict, by the scheduler's prediction type."""
    if scheduler.config.prediction_type == "epsilon":
        return noise
    if scheduler.config.prediction_type == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    raise ValueError(f"unknown prediction type {scheduler.config.prediction_type}")


def finish_step(parts: dict, loss: torch.Tensor, max_grad_norm: float) -> None:
    """Backward, clip (when gradients sync), optimizer and LR scheduler steps, ``zero_grad``."""
    accelerator = parts["accelerator"]
    accelerator.backward(loss)
    if accelerator.sync_gradients:
        accelerator.clip_grad_norm_(parts["params"], max_grad_norm)
    parts["optimizer"].step()
    parts["lr_scheduler"].step()
    parts["optimizer"].zero_grad()


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
        target = target_for(scheduler, latents, noise, timesteps)
        model_pred = unet(noisy_latents, timesteps, encoder_hidden_states, return_dict=False)[0]
        loss = F.mse_loss(model_pred.float(), target.float(), reduction="mean")
        train_loss = accelerator.gather(loss.repeat(parts["batch_size"])).mean().item()
        finish_step(parts, loss, max_grad_norm)
    return train_loss
