"""Prior (regularisation) images: pictures of what the base model already draws, mixed into training.

A concept trained on its own pictures alone bleeds into every prompt. Mixing in "prior" pictures with their
ordinary captions (kohya's ``reg_data_dir``, DreamBooth's prior preservation) teaches the LoRA to leave those
prompts alone, so the concept stays on its trigger word. The priors come from ``prior_data_dir`` (a folder with
``metadata.csv``) or are generated once from the base model with the class prompt (``prior_prompt``, or the
dataset's captions without the trigger word) and cached under ``<output_dir>/priors/<key>``: the key covers the
model, the prompts, the size and the seed, so a changed setting draws a new set and an unchanged one is reused.

Each epoch sees every training picture ``repeats`` times and ``prior_ratio`` times as many prior pictures, cycled
through the prior set across epochs; a prior picture's loss counts ``prior_loss_weight`` times.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

import torch

from studio.data import BucketBatchSampler

from .run_folder import priors_cache

if TYPE_CHECKING:
    from accelerate import Accelerator

    from studio.config import TrainConfig
    from studio.data import TrainingImages
    from studio.data.buckets import Bucket
    from studio.models import Components

    from .setup import TrainingData

PRIOR_STEPS = 25  # denoising steps per generated prior picture
PRIOR_GUIDANCE = 5.0
PRIOR_BATCH = 8
MANIFEST = "priors.json"


def prior_prompts(config: TrainConfig, captions: list[str]) -> list[str]:
    """The ``prior_count`` prompts to draw: the class prompt, or the captions without the trigger, cycled."""
    from .samples import without_trigger

    if config.prior_prompt:
        pool = [config.prior_prompt]
    else:
        pool = list(dict.fromkeys(without_trigger(c, config.trigger_word) for c in captions)) or [""]
    return [pool[i % len(pool)] for i in range(config.prior_count)]


def _model_fingerprint(source: str) -> str:
    """The model's path (or hub id) with the size and time of its files, so a changed model is noticed."""
    path = Path(source)
    if not path.exists():
        return source
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return source + "|" + ";".join(f"{p.name}:{p.stat().st_size}:{int(p.stat().st_mtime)}" for p in files[:200])


def cache_folder(config: TrainConfig, source: str, prompts: list[str]) -> Path:
    """The cache of these prior pictures: the same model, prompts, size and seed find the same folder."""
    key = json.dumps({"model": _model_fingerprint(source), "prompts": prompts, "size": config.resolution,
                      "seed": config.seed, "steps": PRIOR_STEPS, "guidance": PRIOR_GUIDANCE}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return priors_cache(config.output_dir, digest)


def _pipeline(components, device):
    from .samples import assemble_pipeline

    pipe = assemble_pipeline(components)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


@torch.no_grad()
def generate_priors(components: Components, prompts: list[str], folder: Path, size: int, seed: int,
                    device: torch.device | str = "cpu", progress: Callable[[int, int], None] | None = None) -> Path:
    """Draw one picture per prompt with the base model (image ``i`` seeded ``seed + i``) into ``folder``.

    Written to a temporary folder and renamed when complete, so an interrupted run never leaves half a set.
    """
    from studio.data import CaptionRecord, write_metadata

    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    pipe = _pipeline(components, device)
    records = []
    for start in range(0, len(prompts), PRIOR_BATCH):
        chunk = prompts[start:start + PRIOR_BATCH]
        generators = [torch.Generator().manual_seed(seed + start + i) for i in range(len(chunk))]
        guidance = components.family.call_kwargs(pipe, [""] * len(chunk), PRIOR_GUIDANCE)
        images = pipe(chunk, num_inference_steps=PRIOR_STEPS, generator=generators, height=size, width=size,
                      **guidance).images
        for offset, (prompt, image) in enumerate(zip(chunk, images)):
            name = f"prior_{start + offset:05d}.png"
            image.save(partial / name)
            records.append(CaptionRecord(name, prompt))
        if progress:
            progress(min(start + PRIOR_BATCH, len(prompts)), len(prompts))
    write_metadata(partial / "metadata.csv", records)
    (partial / MANIFEST).write_text(json.dumps({"count": len(records), "steps": PRIOR_STEPS,
                                                "guidance": PRIOR_GUIDANCE, "seed": seed}, indent=2))
    os.replace(partial, folder)
    return folder


def prepare_priors(config: TrainConfig, components: Components, captions: list[str], accelerator: Accelerator,
                   log: Callable[[str], None] = print) -> list[Path]:
    """The folders of prior pictures for this run: ``prior_data_dir`` when set, and the ``prior_count`` pictures
    drawn by the base model (generated and cached when needed); both when both are asked for."""
    folders = [Path(config.prior_data_dir)] if config.prior_data_dir else []
    if not config.prior_count:
        return folders
    if not (config.prior_prompt or config.trigger_word):
        raise ValueError("prior_count: generated prior images need a prior_prompt (e.g. 'a photo of a dog') or a "
                         "trigger_word to leave out of the captions; set one of them, or prior_count: 0")
    prompts = prior_prompts(config, captions)
    folder = cache_folder(config, components.source, prompts)
    if accelerator.is_main_process and not (folder / MANIFEST).is_file():
        log(f"drawing {len(prompts)} prior images with the base model into {folder} (once; later runs reuse them)")
        generate_priors(components, prompts, folder, config.resolution, config.seed, accelerator.device)
    accelerator.wait_for_everyone()
    return folders + [folder]


class JoinedImages:
    """The training pictures followed by the prior pictures, indexed as one set (priors after the concept); also
    two sets of prior pictures joined into one."""

    def __init__(self, concept: TrainingImages | JoinedImages, priors: TrainingImages | JoinedImages) -> None:
        self.parts = (concept, priors)
        self.concept_count = len(concept)
        self.bucket_of_index = list(concept.bucket_of_index) + list(priors.bucket_of_index)

    def __len__(self) -> int:
        return self.concept_count + len(self.parts[1])

    def __getitem__(self, index: int) -> dict:
        if index < self.concept_count:
            return self.parts[0][index]
        return self.parts[1][index - self.concept_count]

    def geometry(self, index: int, flipped: bool = False
                 ) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        if index < self.concept_count:
            return self.parts[0].geometry(index, flipped)
        return self.parts[1].geometry(index - self.concept_count, flipped)


class PriorMixSampler(BucketBatchSampler):
    """Batches of one bucket each, mixing every concept picture (``repeats`` times) with a quota of priors.

    Per epoch the priors of each bucket contribute a fixed quota (``ratio`` × concept pictures, spread over the
    buckets by their share of the priors), cycled through that bucket's priors in a seeded order; so every epoch
    has the same number of batches and the order is a pure function of ``(seed, epoch)``.
    """

    def __init__(self, buckets: Sequence[Bucket], concept_count: int, batch_size: int, seed: int, repeats: int,
                 ratio: float) -> None:
        super().__init__(buckets[:concept_count], batch_size, seed, repeats=repeats)
        self.prior_groups: dict = {}
        for index in range(concept_count, len(buckets)):
            self.prior_groups.setdefault(buckets[index], []).append(index)
        prior_total = len(buckets) - concept_count
        per_epoch = round(ratio * concept_count * repeats)
        self.quota = {bucket: max(1, round(per_epoch * len(members) / prior_total))
                      for bucket, members in self.prior_groups.items()} if prior_total else {}
        for members in self.prior_groups.values():
            random.Random(seed).shuffle(members)

    def _epoch_members(self, epoch: int, rng: random.Random) -> dict:
        members: dict = {}
        for bucket, indices in self.groups.items():
            for _ in range(self.repeats):
                shuffled = list(indices)
                rng.shuffle(shuffled)
                members.setdefault(bucket, []).extend(shuffled)
        for bucket, indices in self.prior_groups.items():
            quota = self.quota[bucket]
            start = epoch * quota
            members.setdefault(bucket, []).extend(indices[(start + k) % len(indices)] for k in range(quota))
        return members

    def batches_for_epoch(self, epoch: int) -> list[list[int]]:
        rng = random.Random(self.seed * 1000003 + epoch)
        batches: list[list[int]] = []
        for order in self._epoch_members(epoch, rng).values():
            rng.shuffle(order)
            batches.extend(order[start:start + self.batch_size] for start in range(0, len(order), self.batch_size))
        rng.shuffle(batches)
        return batches

    def __len__(self) -> int:
        sizes: dict = {bucket: len(indices) * self.repeats for bucket, indices in self.groups.items()}
        for bucket, quota in self.quota.items():
            sizes[bucket] = sizes.get(bucket, 0) + quota
        return sum(-(-size // self.batch_size) for size in sizes.values())


def add_priors(data: TrainingData, folders: list[Path], config: TrainConfig, num_processes: int = 1) -> TrainingData:
    """``data`` (a ``TrainingData``) with the prior pictures of ``folders`` mixed in (see ``PriorMixSampler``)."""
    import dataclasses

    from studio.caption import strip_markup
    from studio.data import TrainingImages, load_training_set

    priors, prompts = None, []
    for folder in folders:
        records = load_training_set(folder).records
        if not records:
            raise ValueError(f"{folder / 'metadata.csv'} lists no prior images; add some or leave prior_data_dir "
                             "empty")
        images = TrainingImages(folder, records, config.resolution, config.bucketing, random_flip=False)
        priors = images if priors is None else JoinedImages(priors, images)
        prompts += [strip_markup(r.prompt) for r in records]
    images = JoinedImages(data.images, priors)
    concept = len(data.images)
    sampler = PriorMixSampler(images.bucket_of_index, concept, config.batch_size * num_processes, config.seed,
                              config.repeats, config.prior_ratio)
    weights = [1.0] * concept + [float(config.prior_loss_weight)] * len(priors)
    return dataclasses.replace(
        data, images=images, captions=data.captions + prompts, buckets=list(images.bucket_of_index),
        sampler=sampler, loss_weights=weights, prior_folder=" and ".join(str(folder) for folder in folders),
        prior_count=len(priors))
