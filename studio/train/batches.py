"""Where each training step's latents and text conditioning come from.

Batch order is a pure function of (seed, epoch), and every random choice of a step (flip, caption dropout,
latent sample, noise, timesteps) comes from a generator seeded with (seed, step). So a run stopped at step k and
resumed computes exactly what an uninterrupted run computes, with no RNG state to save.

VAE latents (posterior mean and std) and text embeddings are cached once when the text encoder is frozen:
the VAE and the text encoder then run once per image instead of once per step.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import torch

from studio.models.families.base import scale_latents

if TYPE_CHECKING:
    from studio.config import TrainConfig
    from studio.data import BucketBatchSampler, TrainingImages
    from studio.models import Components
    from studio.models.families import Conditioning, Family


def step_generator(seed: int, step: int) -> torch.Generator:
    """The CPU generator for everything random in optimizer step ``step``."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step * 7_919) % (2**63 - 1))


# The VAE encoder's activations grow with the pixels encoded in one call (about 0.47 GB per 512 px picture in fp32),
# so the latent cache encodes at most 4 pictures' worth of 512 px at once: the cache then never sets the run's
# memory high-water mark (a batch-1 SD 1.5 training step needs more), where 16 pictures per call took 10.9 GB.
CACHE_CHUNK_PIXELS = 4 * 512 * 512
CACHE_CHUNK_MAX = 16


def cache_chunk_size(bucket: tuple[int, int]) -> int:
    """How many pictures of this (width, height) bucket the latent cache encodes per VAE call."""
    width, height = bucket
    return max(1, min(CACHE_CHUNK_MAX, CACHE_CHUNK_PIXELS // (width * height)))


@dataclass
class Batch:
    latents: torch.Tensor  # scaled, on the training device
    captions: list[str]


class BatchSource:
    """Batches of (latents, captions) for the trainer, cached or computed on the fly."""

    def __init__(self, images: TrainingImages, captions: list[str], buckets: list, sampler: BucketBatchSampler,
                 vae: torch.nn.Module, config: TrainConfig, device: torch.device, weight_dtype: torch.dtype,
                 process_index: int = 0, num_processes: int = 1, loss_weights: list[float] | None = None) -> None:
        self.process_index = process_index
        self.loss_weights = loss_weights  # per picture (prior pictures count prior_loss_weight); None = all 1
        self.num_processes = num_processes
        self.images = images
        self.captions = list(captions)
        self.buckets = list(buckets)
        self.sampler = sampler
        self.vae = vae
        self.config = config
        self.device = device
        self.weight_dtype = weight_dtype
        self._latent_cache: dict[tuple[int, bool], tuple[torch.Tensor, torch.Tensor]] = {}
        self.check_memory()

    def check_memory(self) -> None:
        """Refuse (``memory.NotEnoughMemory``) before any encoding when the encode or the cache would not fit:
        the cache encodes ``cache_chunk_size`` pictures per call, a run without it its batch at each step."""
        from .memory import check_latent_memory

        per_call = cache_chunk_size if self.config.cache_latents else (lambda bucket: self.config.batch_size)
        check_latent_memory(self.vae, self.config, self.buckets, per_call, self.device, self.num_processes)

    # -- order -------------------------------------------------------------------------------------------
    @property
    def batches_per_epoch(self) -> int:
        return len(self.sampler)

    def steps_per_epoch(self, accumulation: int) -> int:
        return max(1, math.ceil(self.batches_per_epoch / accumulation))

    def micro_batches(self, step: int, accumulation: int) -> tuple[int, list[list[int]]]:
        """(epoch, the micro-batches of indices) that optimizer step ``step`` consumes."""
        per_epoch = self.steps_per_epoch(accumulation)
        epoch, within = divmod(step, per_epoch)
        batches = self.sampler.batches_for_epoch(epoch)
        return epoch, batches[within * accumulation : (within + 1) * accumulation]

    def shard(self, size: int) -> slice:
        """This process's contiguous part of a global batch of ``size`` (the sampler's batches are global:
        ``batch_size`` per process). Every process draws the whole batch's random numbers and keeps its slice, so
        N processes see exactly the noise one process would for the same effective batch. A process left without
        items at the tail of a bucket repeats the batch's last item, so all processes step together."""
        per = math.ceil(size / self.num_processes)
        start = min(self.process_index * per, size - 1)
        return slice(start, max(start + 1, min(size, start + per)))

    def flipped(self, epoch: int, index: int) -> bool:
        if not self.config.random_flip:
            return False
        return random.Random(self.config.seed * 7_777_777 + epoch * 100_003 + index).random() < 0.5

    # -- latents -----------------------------------------------------------------------------------------
    def _pixels(self, index: int, flip: bool) -> torch.Tensor:
        pixels = self.images[index]["pixel_values"]
        return torch.flip(pixels, dims=[-1]) if flip else pixels

    @torch.no_grad()
    def _encode(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = self.vae.encode(pixels.to(self.device, dtype=self.vae.dtype)).latent_dist
        return dist.mean.float().cpu(), dist.std.float().cpu()

    def fill_latent_cache(self, progress: Callable[[int, int], None] | None = None) -> None:
        """Encode every image once (both orientations when random_flip is on), grouped by bucket."""
        flips = (False, True) if self.config.random_flip else (False,)
        by_bucket: dict = {}
        for index in range(len(self.images)):
            by_bucket.setdefault(self.buckets[index], []).append(index)
        done = 0
        for bucket, indices in by_bucket.items():
            per_call = cache_chunk_size(bucket)
            for flip in flips:
                for start in range(0, len(indices), per_call):
                    chunk = indices[start : start + per_call]
                    mean, std = self._encode(torch.stack([self._pixels(i, flip) for i in chunk]))
                    for k, i in enumerate(chunk):
                        self._latent_cache[(i, flip)] = (mean[k], std[k])
                    done += len(chunk)
                    if progress:
                        progress(done, len(self.images) * len(flips))

    def latents(self, indices: list[int], epoch: int, generator: torch.Generator, part: slice) -> torch.Tensor:
        """Scaled latent samples of ``indices[part]`` (the random draw covers the whole batch)."""
        mine = indices[part]
        flips = [self.flipped(epoch, i) for i in mine]
        if self._latent_cache:
            mean = torch.stack([self._latent_cache[(i, f)][0] for i, f in zip(mine, flips)])
            std = torch.stack([self._latent_cache[(i, f)][1] for i, f in zip(mine, flips)])
        else:
            mean, std = self._encode(torch.stack([self._pixels(i, f) for i, f in zip(mine, flips)]))
        draw = torch.randn((len(indices), *mean.shape[1:]), generator=generator)[part]
        return scale_latents(self.vae, mean + std * draw).to(self.device)

    def captions_for(self, indices: list[int], generator: torch.Generator) -> list[str]:
        """Captions with ``caption_dropout`` applied (a dropped caption becomes the empty prompt)."""
        drops = torch.rand(len(indices), generator=generator).tolist()
        return ["" if d < self.config.caption_dropout else self.captions[i] for i, d in zip(indices, drops)]

    def micro_for(self, indices: list[int], epoch: int, part: slice, family: Family) -> torch.Tensor | None:
        """The family's per-picture numbers (SDXL: original size, crop corner, target size) of ``indices[part]``,
        or None for families without them."""
        rows = [family.micro_conditioning(*self.images.geometry(i, self.flipped(epoch, i))) for i in indices[part]]
        if rows[0] is None:
            return None
        return torch.tensor(rows, dtype=torch.float32, device=self.device)

    def weights_for(self, indices: list[int]) -> torch.Tensor | None:
        """Each picture's loss weight, or None when every picture counts the same."""
        if self.loss_weights is None:
            return None
        return torch.tensor([self.loss_weights[i] for i in indices], dtype=torch.float32)


class TextConditioner:
    """Caption -> the UNet's text conditioning (``families.Conditioning``), cached per caption when the text
    encoders are frozen. The model's family encodes (one encoder for SD 1.x, two for SDXL)."""

    def __init__(self, components: Components, device: torch.device, trainable: bool,
                 unwrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda module: module,
                 dtype: torch.dtype | None = None) -> None:
        self.components = components
        self.dtype = dtype  # the UNet's input dtype when its base weights are stored below fp32 (None: as encoded)
        self.family = components.family
        self.device = device
        self.trainable = trainable
        self.unwrap = unwrap  # accelerate's unwrap_model: scoring on one process must not run a DDP forward
        self._cache: dict = {}

    def fill_cache(self, captions: list[str]) -> None:
        unique = list(dict.fromkeys(list(captions) + [""]))
        with torch.no_grad():
            for start in range(0, len(unique), 64):
                chunk = unique[start : start + 64]
                self._cache.update(zip(chunk, self.family.encode(self.components, chunk, self.device).rows()))

    def __call__(self, captions: list[str]):
        from studio.models.families import Conditioning

        if not self.trainable and all(c in self._cache for c in captions):
            return self._typed(Conditioning.stack([self._cache[c] for c in captions], self.device))
        return self._typed(self.family.encode(self.components, captions, self.device))

    def _typed(self, conditioning):
        if self.dtype is None:
            return conditioning
        pooled = None if conditioning.pooled is None else conditioning.pooled.to(self.dtype)
        return type(conditioning)(conditioning.hidden.to(self.dtype), pooled)

    def for_scoring(self, captions: list[str]) -> Conditioning:
        """The conditioning through the unwrapped text encoders (the validation loss runs on the main process
        only; a DistributedDataParallel forward there would wait for the other processes forever)."""
        import dataclasses

        if not self.trainable:
            return self(captions)
        plain = dataclasses.replace(self.components, **{
            name: self.unwrap(encoder) for name, encoder in self.components.text_encoders.items()})
        return self._typed(self.family.encode(plain, captions, self.device))
