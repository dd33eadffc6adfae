"""One training step: the diffusion loss of a batch, and one optimizer step over its micro-batches.

It owns no files, events or UI (``run.py`` does): a step is a function of (setup, step number), every random
choice of step k drawn from generators seeded with (seed, k), so a resumed run repeats the steps it lost.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from .batches import step_generator
from .control import Requests

if TYPE_CHECKING:
    from studio.models.families import Conditioning

    from .setup import TrainingSetup


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(
            f"the loss became {loss} at step {step}; the last good checkpoint is kept. "
            "Try a lower learning_rate, mixed_precision: no (fp32), or a smaller noise_offset "
            "(the VAE already encodes in fp32, as kohya's --no_half_vae does)"
        )
        self.step = step


def diffusion_loss(setup: TrainingSetup, latents: torch.Tensor, conditioning: Conditioning, generator: torch.Generator,
                   batch: int, part: slice, weights: torch.Tensor | None = None,
                   micro: torch.Tensor | None = None) -> torch.Tensor:
    """Noise the latents at random timesteps and score the denoiser's prediction against the family's target
    (epsilon or v for the UNet families, the flow velocity for FLUX: ``setup.objective``).

    ``conditioning`` is the captions' ``families.Conditioning``; ``micro`` the family's per-picture numbers
    (SDXL's time ids) or None.

    ``weights`` (one per picture of ``part``) scale each picture's loss: prior pictures count
    ``prior_loss_weight``.

    ``latents`` are this process's ``part`` of a global batch of ``batch``; noise and timesteps are drawn for the
    whole batch and sliced, so the result does not depend on how many processes share the batch.
    """
    config, objective = setup.config, setup.objective
    device = latents.device
    channels = latents.shape[1:]
    noise = torch.randn((batch, *channels), generator=generator)[part].to(device)
    if config.noise_offset:
        offset = torch.randn((batch, channels[0], 1, 1), generator=generator)[part].to(device)
        noise = noise + config.noise_offset * offset
    timesteps = objective.timesteps(batch, generator)[part].to(device)
    noisy, target = objective.noisy_and_target(latents, noise, timesteps)
    family = setup.components.family
    with setup.accelerator.autocast():
        prediction = family.predict(setup.components.denoiser, noisy, timesteps, conditioning, micro,
                                    config.guidance_scale)
    timestep_weights = objective.loss_weights(timesteps)
    if timestep_weights is None and weights is None:
        return F.mse_loss(prediction.float(), target.float())
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if timestep_weights is not None:
        per_sample = per_sample * timestep_weights.to(device)
    if weights is not None:
        per_sample = per_sample * weights.to(device)
    return per_sample.mean()


def optimizer_step(setup: TrainingSetup, step: int) -> tuple[float, int]:
    """One optimizer step; returns (mean loss over the micro-batches, epoch)."""
    config = setup.config
    torch.manual_seed((config.seed * 31 + step) % (2**63 - 1))  # LoRA dropout and anything else global
    generator = step_generator(config.seed, step)
    epoch, micro_batches = setup.batches.micro_batches(step, config.gradient_accumulation_steps)
    total = torch.zeros((), device=setup.accelerator.device)
    for number, indices in enumerate(micro_batches):
        part = setup.batches.shard(len(indices))
        latents = setup.batches.latents(indices, epoch, generator, part)
        captions = setup.batches.captions_for(indices, generator)[part]
        last = number == len(micro_batches) - 1
        with _no_sync_unless(setup, last):
            with setup.accelerator.autocast():
                conditioning = setup.text(captions)
            weights = setup.batches.weights_for(indices)
            micro = setup.batches.micro_for(indices, epoch, part, setup.components.family)
            loss = diffusion_loss(setup, latents, conditioning, generator, len(indices), part,
                                  None if weights is None else weights[part], micro)
            setup.accelerator.backward(loss / len(micro_batches))
        total += loss.detach() / len(micro_batches)
    if setup.accelerator.num_processes > 1:
        total = setup.accelerator.reduce(total, reduction="mean")
    if config.max_grad_norm:
        setup.accelerator.clip_grad_norm_(setup.params, config.max_grad_norm)
    setup.optimizer.step()
    if not setup.accelerator.optimizer_step_was_skipped:
        setup.lr_scheduler.step()
    setup.optimizer.zero_grad(set_to_none=True)
    return total.item(), epoch


def agreed(setup: TrainingSetup, requests: Requests) -> Requests:
    """With several processes, a request seen by any one of them is done by all of them at the same step."""
    if setup.accelerator.num_processes == 1:
        return requests
    flags = torch.tensor([float(requests.stop), float(requests.save), float(requests.sample)],
                         device=setup.accelerator.device)
    stop, save, sample = (bool(value > 0) for value in setup.accelerator.reduce(flags, reduction="sum").tolist())
    return Requests(stop=stop, save=save, sample=sample)


def _no_sync_unless(setup: TrainingSetup, last: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation (several processes)."""
    if last or setup.accelerator.num_processes == 1:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    for model in setup.trained_models:
        stack.enter_context(setup.accelerator.no_sync(model))
    return stack
