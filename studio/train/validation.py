"""A deterministic validation loss: fixed images, fixed timesteps, fixed noise — so two scores differ only when
the LoRA differs. The training loss jumps with every step's random timesteps; this one shows the trend.

The images are held out from training (``validation_split`` > 0) or, by default, the first images of the set.
"""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from studio.models.families.base import scale_latents

if TYPE_CHECKING:
    from studio.data import TrainingImages
    from studio.models import Components
    from studio.models.families.objectives import Objective

TIMESTEP_FRACTIONS = (0.1, 0.3, 0.5, 0.7, 0.9)
DEFAULT_IMAGES = 8
NOISE_SEED = 20_241_122


def split_for_validation(count: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """(training indices, validation indices). ``share`` 0 scores the first images without holding them out."""
    everything = list(range(count))
    if share <= 0:
        return everything, everything[:DEFAULT_IMAGES]
    held = max(1, round(count * share))
    if held >= count:
        raise ValueError(f"validation_split {share} leaves no image to train on ({count} images)")
    chosen = sorted(random.Random(seed).sample(everything, held))
    return [i for i in everything if i not in set(chosen)], chosen


class Validator:
    """Scores the current LoRA on fixed (latent, caption, timestep, noise) tuples."""

    def __init__(self, images: TrainingImages, captions: list[str], indices: list[int], components: Components,
                 device: torch.device | str, objective: Objective, guidance: float = 1.0) -> None:
        vae, self.family = components.vae, components.family
        self.objective = objective
        self.guidance = guidance
        self.device = device
        self.items: list[tuple[torch.Tensor, str, torch.Tensor | None]] = []
        with torch.no_grad():
            for index in indices:
                pixels = images[index]["pixel_values"].unsqueeze(0).to(device, dtype=vae.dtype)
                latent = scale_latents(vae, vae.encode(pixels).latent_dist.mean.float())
                micro = self.family.micro_conditioning(*images.geometry(index))
                micro = None if micro is None else torch.tensor([micro], device=device)
                self.items.append((latent.cpu(), captions[index], micro))
        self.timesteps = objective.fixed_timesteps(TIMESTEP_FRACTIONS)

    def __call__(self, denoiser, text) -> float:
        """Mean loss over every image and fixed timestep (LoRA dropout off while scoring)."""
        generator = torch.Generator().manual_seed(NOISE_SEED)
        was_training = denoiser.training
        denoiser.eval()
        losses = []
        try:
            with torch.no_grad():
                for latent, caption, micro in self.items:
                    conditioning = text.for_scoring([caption])
                    for timestep in self.timesteps:
                        noise = torch.randn(latent.shape, generator=generator)
                        losses.append(self._loss(denoiser, latent, noise, timestep, conditioning, micro))
        finally:
            denoiser.train(was_training)
        return float(sum(losses) / max(1, len(losses)))

    def _loss(self, denoiser, latent, noise, timestep: float, conditioning, micro) -> float:
        latent, noise = latent.to(self.device), noise.to(self.device)
        t = torch.tensor([timestep], device=self.device)
        noisy, target = self.objective.noisy_and_target(latent, noise, t)
        prediction = self.family.predict(denoiser, noisy, t, conditioning, micro, self.guidance)
        return F.mse_loss(prediction.float(), target.float()).item()
