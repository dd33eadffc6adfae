"""Training images as tensors, and a deterministic sampler whose batches each hold one bucket's images."""
from __future__ import annotations

import copy
import hashlib
import os
import random
from pathlib import Path
from typing import Hashable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image

from studio.data.buckets import Bucket, assign_bucket, crop_top_left, fit_to_bucket, make_buckets
from studio.data.images import load_rgb, probe_size
from studio.data.metadata import CaptionRecord, DatasetError, DatasetProblem, resolve_inside


class TrainingImages(torch.utils.data.Dataset):
    """The captioned images of one dataset, each fitted to its aspect-ratio bucket.

    Item ``i`` is ``{"pixel_values": float32 [3, h, w] in [-1, 1], "caption": str, "index": i, "bucket": (w, h)}``.
    Every image is checked when the dataset is built (all unreadable files reported in one :class:`DatasetError`);
    sizes come from the file headers, with EXIF rotation taken into account. With ``random_flip`` an image is
    mirrored when a hash of ``(seed, epoch, index)`` says so; call :meth:`set_epoch` before each epoch (DataLoader
    workers copy the dataset when iteration starts, so do not use ``persistent_workers=True`` with flips).
    """

    def __init__(self, images_dir: str | os.PathLike, records: Sequence[CaptionRecord], resolution: int,
                 bucketing: bool = True, random_flip: bool = False, seed: int = 0, step: int | None = None,
                 max_ratio: float = 2.0) -> None:
        self.images_dir = Path(images_dir)
        self.records = list(records)
        self.resolution = resolution
        self.random_flip = random_flip
        self.seed = seed
        self.epoch = 0
        self.buckets = make_buckets(resolution, step, max_ratio) if bucketing else [(resolution, resolution)]
        self.paths, self.sizes = self._probe_all()
        self.bucket_of_index: list[Bucket] = [assign_bucket(w, h, self.buckets) for w, h in self.sizes]

    def __len__(self) -> int:
        return len(self.records)

    def subset(self, indices: Sequence[int]) -> TrainingImages:
        """The images at ``indices`` (a training or validation split), without checking the files again."""
        part = copy.copy(self)
        part.records = [self.records[i] for i in indices]
        part.paths = [self.paths[i] for i in indices]
        part.sizes = [self.sizes[i] for i in indices]
        part.bucket_of_index = [self.bucket_of_index[i] for i in indices]
        return part

    def __getitem__(self, index: int) -> dict:
        record, path, bucket = self.records[index], self.paths[index], self.bucket_of_index[index]
        image = fit_to_bucket(load_rgb(path), bucket)
        if self.is_flipped(index):
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        pixels = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        return {"pixel_values": pixels, "caption": record.prompt, "index": index, "bucket": bucket}

    def geometry(self, index: int, flipped: bool = False) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(original (height, width), crop (top, left), bucket (height, width)) of image ``index``."""
        width, height = self.sizes[index]
        bucket = self.bucket_of_index[index]
        return (height, width), crop_top_left((width, height), bucket, flipped), (bucket[1], bucket[0])

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose flips :meth:`__getitem__` applies."""
        self.epoch = epoch

    def is_flipped(self, index: int, epoch: int | None = None) -> bool:
        """Whether image ``index`` is mirrored in ``epoch`` (default: the current one); same answer on every run."""
        if not self.random_flip:
            return False
        key = f"{self.seed}/{self.epoch if epoch is None else epoch}/{index}".encode()
        return hashlib.blake2b(key, digest_size=8).digest()[0] & 1 == 1

    def _probe_all(self) -> tuple[list[Path], list[tuple[int, int]]]:
        paths: list[Path] = []
        sizes: list[tuple[int, int]] = []
        problems: list[DatasetProblem] = []
        for record in self.records:
            path = resolve_inside(self.images_dir, record.filename)
            if path is None:
                problems.append(DatasetProblem(str(self.images_dir / record.filename), None, "this path leads outside "
                                               "the image folder; copy the image into the folder."))
                continue
            try:
                sizes.append(probe_size(path))
                paths.append(path)
            except DatasetError as error:
                problems.extend(error.problems)
        if problems:
            raise DatasetError(problems)
        return paths, sizes


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of indices that share a bucket, reproducible from ``(seed, epoch)``.

    Each epoch: every index appears ``repeats`` times (each repeat shuffled separately within its bucket), the
    bucket's list is cut into batches, and the batch order is shuffled, all with
    ``random.Random(seed * 1000003 + epoch)``. To resume at step ``k`` of epoch ``e`` use
    ``batches_for_epoch(e)[k:]`` (a DataLoader accepts it as ``batch_sampler``).
    """

    def __init__(self, bucket_of_index: Sequence[Hashable], batch_size: int, seed: int, repeats: int = 1,
                 drop_last: bool = False) -> None:
        if batch_size < 1 or repeats < 1:
            raise ValueError(f"batch_size ({batch_size}) and repeats ({repeats}) must be at least 1.")
        self.batch_size, self.seed, self.repeats, self.drop_last = batch_size, seed, repeats, drop_last
        self.epoch = 0
        self.groups: dict[Hashable, list[int]] = {}
        for index, bucket in enumerate(bucket_of_index):
            self.groups.setdefault(bucket, []).append(index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches_for_epoch(self, epoch: int) -> list[list[int]]:
        """The exact batches, in order, that iterating epoch ``epoch`` yields."""
        rng = random.Random(self.seed * 1000003 + epoch)
        batches: list[list[int]] = []
        for members in self.groups.values():
            order: list[int] = []
            for _ in range(self.repeats):
                shuffled = list(members)
                rng.shuffle(shuffled)
                order.extend(shuffled)
            for start in range(0, len(order), self.batch_size):
                batch = order[start:start + self.batch_size]
                if len(batch) == self.batch_size or not self.drop_last:
                    batches.append(batch)
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches_for_epoch(self.epoch))

    def __len__(self) -> int:
        total = 0
        for members in self.groups.values():
            count = len(members) * self.repeats
            total += count // self.batch_size if self.drop_last else -(-count // self.batch_size)
        return total


def collate(batch: list[dict]) -> dict:
    """``{"pixel_values": [B, 3, h, w], "captions": [str], "indices": [int], "bucket": (w, h)}`` for one bucket."""
    buckets = {item["bucket"] for item in batch}
    if len(buckets) != 1:
        raise ValueError(f"a batch must hold images of one bucket, got {sorted(buckets)}; use BucketBatchSampler.")
    return {
        "pixel_values": torch.stack([item["pixel_values"] for item in batch]),
        "captions": [item["caption"] for item in batch],
        "indices": [item["index"] for item in batch],
        "bucket": buckets.pop(),
    }
