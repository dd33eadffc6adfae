"""What the denoiser is trained to predict, and at which noise levels: the family chooses one objective.

* ``NoisePrediction``: DDPM noising; the UNet predicts the noise (epsilon) or the velocity (v), as the model's
  scheduler says; optional Min-SNR-γ weights. SD 1.x and SDXL.
* ``FlowMatching``: rectified flow, ``x_t = (1 - σ) x_0 + σ ε``; the transformer predicts the velocity
  ``ε - x_0``. Noise levels are drawn and weighted by the schemes diffusers' FLUX LoRA example offers
  (``none`` = uniform, ``sigma_sqrt``, ``logit_normal``, ``mode``, ``cosmap``), optionally shifted toward noise
  (``flow_shift``: σ' = sσ / (1 + (s - 1)σ), as sd-scripts' discrete flow shift). FLUX.1.

Timesteps are what the denoiser is told: DDPM step numbers, or 1000·σ for flow matching (the FLUX transformer
is called with timestep / 1000, as ``FluxPipeline`` calls it).
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

WEIGHTING_SCHEMES = ("none", "sigma_sqrt", "logit_normal", "mode", "cosmap")


class Objective(ABC):
    """Noise levels, noisy inputs, targets and loss weights of one family's training."""

    prediction_type: str  # what the denoiser predicts, for the LoRA's metadata

    @abstractmethod
    def timesteps(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """``batch`` random timesteps (on the CPU) drawn from ``generator``."""

    @abstractmethod
    def noisy_and_target(self, latents: torch.Tensor, noise: torch.Tensor,
                         timesteps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(the denoiser's input, what it should predict)."""

    def loss_weights(self, timesteps: torch.Tensor) -> torch.Tensor | None:
        """A weight per picture for these timesteps, or None when every timestep counts the same."""
        return None

    @abstractmethod
    def fixed_timesteps(self, fractions: tuple[float, ...]) -> list[float]:
        """Timesteps at these fractions of the noise range (0 = clean, 1 = pure noise), for a repeatable score."""


class NoisePrediction(Objective):
    """DDPM: epsilon or v-prediction on the model's noise schedule, with optional Min-SNR-γ weights."""

    def __init__(self, scheduler: SchedulerMixin, min_snr_gamma: float | None = None) -> None:
        self.scheduler = scheduler
        self.min_snr_gamma = min_snr_gamma
        self.prediction_type = scheduler.config.prediction_type

    def timesteps(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, self.scheduler.config.num_train_timesteps, (batch,), generator=generator)

    def noisy_and_target(self, latents, noise, timesteps):
        noisy = self.scheduler.add_noise(latents, noise, timesteps)
        if self.prediction_type == "v_prediction":
            return noisy, self.scheduler.get_velocity(latents, noise, timesteps)
        return noisy, noise

    def loss_weights(self, timesteps: torch.Tensor) -> torch.Tensor | None:
        if not self.min_snr_gamma:
            return None
        return snr_weights(self.scheduler, timesteps, self.min_snr_gamma)

    def fixed_timesteps(self, fractions):
        total = self.scheduler.config.num_train_timesteps
        return [min(total - 1, int(f * total)) for f in fractions]


def snr_weights(noise_scheduler: SchedulerMixin, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023) for epsilon or v-prediction targets.

    A zero-terminal-SNR schedule has SNR 0 at its last timestep: the epsilon weight there is kept finite.
    """
    from diffusers.training_utils import compute_snr

    snr = compute_snr(noise_scheduler, timesteps)
    clipped = snr.clamp(max=gamma)
    if noise_scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr.clamp(min=1e-8)


class FlowMatching(Objective):
    """Rectified-flow training as diffusers' FLUX LoRA example does it (velocity target ``noise - latents``)."""

    prediction_type = "flow"

    def __init__(self, scheduler: SchedulerMixin, weighting_scheme: str = "none", logit_mean: float = 0.0,
                 logit_std: float = 1.0, mode_scale: float = 1.29, shift: float = 0.0) -> None:
        if weighting_scheme not in WEIGHTING_SCHEMES:
            raise ValueError(f"weighting_scheme {weighting_scheme!r}: choose one of {', '.join(WEIGHTING_SCHEMES)}")
        self.scheduler = scheduler
        self.scheme = weighting_scheme
        self.logit_mean, self.logit_std, self.mode_scale = logit_mean, logit_std, mode_scale
        self.shift = shift
        self.total = int(scheduler.config.num_train_timesteps)

    def _sigmas_of(self, u: torch.Tensor) -> torch.Tensor:
        """Noise levels for uniform-ish draws ``u`` in [0, 1): the model's own training sigmas, then the shift."""
        sigmas = self.scheduler.sigmas[:-1] if len(self.scheduler.sigmas) > self.total else self.scheduler.sigmas
        table = sigmas.flip(0).float()  # ascending: a small u is little noise
        index = (u * len(table)).long().clamp(0, len(table) - 1)
        sigma = table[index]
        if self.shift and self.shift != 1.0:
            sigma = self.shift * sigma / (1 + (self.shift - 1) * sigma)
        return sigma

    def timesteps(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        if self.scheme == "logit_normal":
            u = torch.sigmoid(torch.normal(self.logit_mean, self.logit_std, (batch,), generator=generator))
        elif self.scheme == "mode":
            u = torch.rand(batch, generator=generator)
            u = 1 - u - self.mode_scale * (torch.cos(math.pi * u / 2) ** 2 - 1 + u)
        else:
            u = torch.rand(batch, generator=generator)
        return self._sigmas_of(u) * self.total

    def noisy_and_target(self, latents, noise, timesteps):
        sigma = (timesteps.float() / self.total).to(latents.device, latents.dtype).view(-1, *[1] * (latents.ndim - 1))
        return (1.0 - sigma) * latents + sigma * noise, noise - latents

    def loss_weights(self, timesteps: torch.Tensor) -> torch.Tensor | None:
        sigma = timesteps.float() / self.total
        if self.scheme == "sigma_sqrt":
            return sigma.clamp(min=1e-4) ** -2.0
        if self.scheme == "cosmap":
            bottom = 1 - 2 * sigma + 2 * sigma**2
            return 2 / (math.pi * bottom)
        return None

    def fixed_timesteps(self, fractions):
        return [float(self._sigmas_of(torch.tensor([f])).item() * self.total) for f in fractions]
