"""Will encoding the pictures into latents fit in memory? Checked before the first picture is encoded.

The estimate comes from the VAE's config. Under ``torch.no_grad`` the encoder's memory peaks in its widest stage:
stage ``s`` of ``block_out_channels`` works on ``channels[s]`` feature maps at 1 / 2**s of the picture's width
and height, so a picture of P pixels holds ``channels[s] * P / 4**s`` values per live tensor of that stage; for
SD 1.x (128, 256, 512, 512) and the toy-world VAE (32, 64) that is the first stage, at full size.

``ENCODE_TENSORS``, how many such tensors are alive at the peak, is measured, not derived: the peak of one
``vae.encode`` in fp32 on the CPU (``ru_maxrss`` after it minus the resident size before it, a fresh process per
case; ``bench/vae_encode_memory.py`` repeats it) was 544 bytes per input pixel for the toy-world VAE (32 channels:
4.25 tensors; the same within 1 % from 512 to 2048 px) and 2,560 bytes for the SD 1.5 VAE (128 channels: 5.0
tensors; the same from 256 to 768 px), for 1 and for 4 pictures per call. The larger is used. The mid block's
attention added nothing measurable: the SD 1.5 VAE at 768 px used exactly (768/512)**2 times its 512 px peak
(torch's scaled-dot-product attention does not hold the token x token matrix). No GPU was at hand to measure CUDA:
the same factor is assumed there.

Also counted: the pictures of one call (float32, and a copy on the GPU), and the latent cache, which lives in
the computer's memory: per picture (and per mirrored copy with ``random_flip``) the posterior's mean and std,
``2 x latent_channels x (w / f) x (h / f)`` float32 values, with ``f`` the VAE's downscaling factor.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import torch

    from studio.config import TrainConfig

ENCODE_TENSORS = 5.0
AVAILABLE_ENV = "LORA_STUDIO_AVAILABLE_MEMORY_MB"  # test/debug knob: pretend this much memory is free (MiB)
SD_CHANNELS = (128, 256, 512, 512)


class NotEnoughMemory(RuntimeError):
    """The latent encode of this config would not fit; the message says what was asked and what to change."""


@dataclass
class EncodeEstimate:
    call_bytes: int  # one VAE call at its peak, with its input pictures
    call_pictures: int
    call_size: tuple[int, int]  # (width, height) of the largest call
    cache_bytes: int  # the whole latent cache (0 without cache_latents)

    @property
    def total(self) -> int:
        return self.call_bytes + self.cache_bytes


def _channels(vae_config: dict) -> list[int]:
    return list(vae_config.get("block_out_channels") or SD_CHANNELS)


def encode_peak_bytes(vae_config: dict, width: int, height: int, pictures: int, dtype_bytes: int = 4) -> int:
    """Peak bytes of the encoder's activations for one ``vae.encode`` of ``pictures`` of ``width`` x ``height``."""
    widest = max(channels / 4**stage for stage, channels in enumerate(_channels(vae_config)))
    return int(ENCODE_TENSORS * widest * dtype_bytes * width * height * pictures)


def latent_bytes(vae_config: dict, width: int, height: int) -> int:
    """Bytes one cached picture takes: the float32 mean and std of its latent."""
    factor = 2 ** (len(_channels(vae_config)) - 1)
    latent = int(vae_config.get("latent_channels") or 4)
    return 2 * latent * math.ceil(width / factor) * math.ceil(height / factor) * 4


def estimate_encode(vae_config: dict, buckets: list[tuple[int, int]], per_call: Callable[[tuple[int, int]], int],
                    cache_copies: int, dtype_bytes: int = 4, on_gpu: bool = False) -> EncodeEstimate:
    """The memory for encoding pictures of these (width, height) ``buckets``, ``per_call(bucket)`` pictures per
    VAE call, keeping ``cache_copies`` latents per picture (0: no cache, 2: with mirrored copies)."""
    largest = (0, 1, (0, 0))
    for width, height in set(buckets):
        count = per_call((width, height))
        pixels = width * height * count
        need = encode_peak_bytes(vae_config, width, height, count, dtype_bytes) + 3 * pixels * 4
        if on_gpu:
            need += 3 * pixels * dtype_bytes  # the call's pictures copied to the GPU
        largest = max(largest, (need, count, (width, height)))
    cache = cache_copies * sum(latent_bytes(vae_config, w, h) for w, h in buckets)
    return EncodeEstimate(largest[0], largest[1], largest[2], cache)


def _gb(size: float) -> str:
    return f"{size / 1e9:.1f} GB" if size >= 1e8 else f"{size / 1e6:.0f} MB"


def available_memory(device: torch.device | str) -> tuple[int, int | None]:
    """(bytes free in the computer's memory, bytes free on the CUDA device or None on a CPU)."""
    override = os.environ.get(AVAILABLE_ENV, "").strip()
    if override:
        size = int(float(override) * 2**20)
        return size, (size if getattr(device, "type", "cpu") == "cuda" else None)
    import psutil

    host = psutil.virtual_memory().available
    if getattr(device, "type", "cpu") != "cuda":
        return host, None
    import torch

    return host, torch.cuda.mem_get_info(device)[0]


def refusal(config: TrainConfig, pictures: int, estimate: EncodeEstimate, processes: int, host: int,
            gpu: int | None) -> str | None:
    """The sentence that refuses the run, or None when the encode fits (``host``/``gpu``: bytes available)."""
    width, height = estimate.call_size
    call = (f"{_gb(estimate.call_bytes)} for one VAE call on {estimate.call_pictures} picture(s) of "
            f"{width}x{height}")
    cache = f"{_gb(estimate.cache_bytes)} for the latent cache" if estimate.cache_bytes else ""
    each = " in each of the processes" if processes > 1 else ""
    if gpu is not None and estimate.call_bytes > gpu:
        need, parts, where, free = estimate.call_bytes, call, "GPU", gpu
    elif (processes * (estimate.cache_bytes if gpu is not None else estimate.total)) > host:
        need = processes * (estimate.cache_bytes if gpu is not None else estimate.total)
        parts = cache if gpu is not None else ", ".join(filter(None, [call, cache]))
        where, free = "computer's memory", host
    else:
        return None
    advice = ["lower resolution"]
    if not config.cache_latents and config.batch_size > 1:
        advice.append("lower batch_size (each step encodes its batch_size pictures in one call)")
    if estimate.cache_bytes:
        advice.append("set cache_latents: false (the latents are then encoded at each step instead of kept)")
    return (f"resolution {config.resolution} with batch_size {config.batch_size} and {pictures} picture(s) needs "
            f"about {_gb(need)} to encode the latents ({parts}{each}), but only {_gb(free)} of the {where} is "
            f"free; {', or '.join(advice)}, or free some memory")


def check_latent_memory(vae: torch.nn.Module, config: TrainConfig, buckets: list[tuple[int, int]],
                        per_call: Callable[[tuple[int, int]], int], device: torch.device | str,
                        processes: int = 1) -> None:
    """Raise ``NotEnoughMemory`` (before any encoding) when encoding these pictures would not fit."""
    import torch

    dtype_bytes = torch.finfo(vae.dtype).bits // 8
    on_gpu = getattr(device, "type", "cpu") == "cuda"
    copies = (2 if config.random_flip else 1) if config.cache_latents else 0
    estimate = estimate_encode(dict(vae.config), buckets, per_call, copies, dtype_bytes, on_gpu)
    host, gpu = available_memory(device)
    message = refusal(config, len(buckets), estimate, processes, host, gpu)
    if message:
        raise NotEnoughMemory(message)
