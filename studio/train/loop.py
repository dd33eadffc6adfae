"""The training loop: a function of (setup, start step) that reports through ``emit`` and stops on ``should_stop``.

Like minGPT's trainer it owns no files and no UI: saving a checkpoint is a callback, progress is an event.
One iteration is one optimizer step over ``gradient_accumulation_steps`` micro-batches.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable

import torch
import torch.nn.functional as F

from .batches import step_generator
from .events import Emit, ShouldStop, TrainEvent


class NonFiniteLoss(RuntimeError):
    """The loss became NaN or infinite; the run stops and keeps its last good checkpoint."""

    def __init__(self, step: int, loss: float):
        super().__init__(
            f"the loss became {loss} at step {step}; the last good checkpoint is kept. "
            "Try a lower learning_rate, mixed_precision: no (fp32), or a smaller noise_offset "
            "(the VAE already encodes in fp32, as kohya's --no_half_vae does)"
        )
        self.step = step


def snr_weights(noise_scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """Min-SNR-γ loss weights (Hang et al. 2023) for epsilon or v-prediction targets."""
    alphas = noise_scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = alphas / (1 - alphas).clamp(min=1e-8)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    if noise_scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr.clamp(min=1e-8)


def diffusion_loss(setup, latents: torch.Tensor, conditioning, generator: torch.Generator,
                   batch: int, part: slice, weights: torch.Tensor | None = None,
                   micro: torch.Tensor | None = None) -> torch.Tensor:
    """Noise the latents at random timesteps and score the UNet's prediction (epsilon or v).

    ``conditioning`` is the captions' ``families.Conditioning``; ``micro`` the family's per-picture numbers
    (SDXL's time ids) or None.

    ``weights`` (one per picture of ``part``) scale each picture's loss: prior pictures count
    ``prior_loss_weight``.

    ``latents`` are this process's ``part`` of a global batch of ``batch``; noise and timesteps are drawn for the
    whole batch and sliced, so the result does not depend on how many processes share the batch.
    """
    config, scheduler = setup.config, setup.components.noise_scheduler
    device = latents.device
    channels = latents.shape[1:]
    noise = torch.randn((batch, *channels), generator=generator)[part].to(device)
    if config.noise_offset:
        offset = torch.randn((batch, channels[0], 1, 1), generator=generator)[part].to(device)
        noise = noise + config.noise_offset * offset
    timesteps = torch.randint(0, scheduler.config.num_train_timesteps, (batch,), generator=generator)[part]
    timesteps = timesteps.to(device)
    noisy = scheduler.add_noise(latents, noise, timesteps)
    if scheduler.config.prediction_type == "v_prediction":
        target = scheduler.get_velocity(latents, noise, timesteps)
    else:
        target = noise
    family, hidden = setup.components.family, conditioning.hidden
    with setup.accelerator.autocast():
        prediction = setup.components.unet(noisy.to(hidden.dtype), timesteps,
                                           **family.unet_kwargs(conditioning, micro)).sample
    if not config.min_snr_gamma and weights is None:
        return F.mse_loss(prediction.float(), target.float())
    per_sample = F.mse_loss(prediction.float(), target.float(), reduction="none").mean(dim=(1, 2, 3))
    if config.min_snr_gamma:
        per_sample = per_sample * snr_weights(scheduler, timesteps, config.min_snr_gamma)
    if weights is not None:
        per_sample = per_sample * weights.to(device)
    return per_sample.mean()


def optimizer_step(setup, step: int) -> tuple[float, int]:
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


def _agreed(setup, stop: bool) -> bool:
    """With several processes a stop asked of any one of them stops all of them at the same step."""
    if setup.accelerator.num_processes == 1:
        return stop
    flag = torch.tensor([1.0 if stop else 0.0], device=setup.accelerator.device)
    return bool(setup.accelerator.reduce(flag, reduction="sum").item() > 0)


def _no_sync_unless(setup, last: bool):
    """Skip the gradient all-reduce on all but the last micro-batch of an accumulation (several processes)."""
    if last or setup.accelerator.num_processes == 1:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    for model in setup.trained_models:
        stack.enter_context(setup.accelerator.no_sync(model))
    return stack


def train_loop(
    setup,
    start_step: int,
    emit: Emit,
    should_stop: ShouldStop,
    checkpoint: Callable[[int, int], None],
) -> str:
    """Train from ``start_step`` to ``setup.total_steps``; returns "finished" or "stopped".

    ``checkpoint(step, epoch)`` is called every ``save_steps`` and when a stop is requested, after the step.
    """
    config = setup.config
    started = time.time()
    done_here = 0
    for step in range(start_step, setup.total_steps):
        loss, epoch = optimizer_step(setup, step)
        if not math.isfinite(loss):
            raise NonFiniteLoss(step + 1, loss)
        done_here += 1
        finished = step + 1 == setup.total_steps
        validate = config.validation_steps and (finished or (step + 1) % config.validation_steps == 0)
        val_loss = setup.validation_loss() if validate else None
        elapsed = time.time() - started
        emit(
            TrainEvent(
                "step", step=step + 1, total_steps=setup.total_steps, epoch=epoch + 1, loss=loss, val_loss=val_loss,
                lr=setup.lr_scheduler.get_last_lr()[0], elapsed_s=elapsed,
                eta_s=elapsed / done_here * (setup.total_steps - step - 1),
            )
        )
        stop = _agreed(setup, should_stop())
        if not finished and (stop or (config.save_steps and (step + 1) % config.save_steps == 0)):
            checkpoint(step + 1, epoch)
        if stop and not finished:
            return "stopped"
    return "finished"
