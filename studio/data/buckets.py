"""Aspect-ratio buckets: train each image at a size close to its own shape instead of a square crop.

How much of an image is cropped: :func:`fit_to_bucket` scales the image until it covers the bucket, then cuts
the excess of the longer side, half from each end. The fraction lost is ``1 - min(r, b) / max(r, b)`` for image
aspect ratio ``r`` and bucket ratio ``b`` (see :func:`crop_fraction`). With the default buckets
(``make_buckets(512)``: 384x640 ... 640x384) an image between 1:2 and 2:1 loses at most 1/6 (about 17 %) of
its long side, 8 % from each end, and an image near a bucket's shape loses far less; at resolution 32 (step 8,
24x40 ... 40x24) the bound is the same. A naive square centre crop of a 2:1 image throws away half of it. Only
images more extreme than ``max_ratio`` (panoramas) lose more, as much as is needed to reach the widest bucket.
"""
from __future__ import annotations

import math

from PIL import Image

Bucket = tuple[int, int]


def default_step(resolution: int) -> int:
    """Bucket side granularity: 64 px for real resolutions, 8 px (one latent pixel) for tiny toy models."""
    return 64 if resolution >= 256 else 8


def make_buckets(resolution: int, step: int | None = None, max_ratio: float = 2.0) -> list[Bucket]:
    """``(width, height)`` buckets with area <= resolution², sides multiples of ``step``, ratio within max_ratio.

    For each short side the longest side that fits the area is used, so buckets are as large as allowed; every
    portrait bucket has its landscape mirror. The square bucket (``resolution`` rounded down to ``step``) is always
    present. Sorted from tallest to widest.
    """
    step = default_step(resolution) if step is None else step
    if step < 1 or resolution < step:
        raise ValueError(f"resolution {resolution} must be at least the bucket step {step}.")
    if max_ratio < 1:
        raise ValueError(f"max_ratio {max_ratio} must be at least 1 (1 means square buckets only).")
    area = resolution * resolution
    side = resolution // step * step
    buckets = {(side, side)}
    for width in range(step, side + 1, step):
        height = area // width // step * step
        if height >= width and height <= width * max_ratio:
            buckets.update({(width, height), (height, width)})
    return sorted(buckets, key=lambda b: b[0] / b[1])


def assign_bucket(width: int, height: int, buckets: list[Bucket]) -> Bucket:
    """The bucket whose aspect ratio is closest to ``width:height`` in log-ratio distance (larger area on ties)."""
    if not buckets:
        raise ValueError("no buckets to choose from.")
    if width < 1 or height < 1:
        raise ValueError(f"image size {width}x{height} is empty.")
    target = math.log(width / height)
    return min(buckets, key=lambda b: (round(abs(math.log(b[0] / b[1]) - target), 12), -b[0] * b[1], b))


def crop_fraction(size: tuple[int, int], bucket: Bucket) -> float:
    """The fraction of the image's long side that :func:`fit_to_bucket` cuts away (0 when shapes match)."""
    image_ratio, bucket_ratio = size[0] / size[1], bucket[0] / bucket[1]
    return 1 - min(image_ratio, bucket_ratio) / max(image_ratio, bucket_ratio)


def fit_to_bucket(image: Image.Image, bucket: Bucket) -> Image.Image:
    """Resize ``image`` to cover ``bucket`` keeping its aspect ratio, then centre-crop the small excess.

    Downscaling uses Lanczos after a box pre-reduction (fast and alias-free for large photos); upscaling uses
    Lanczos. The whole image survives except :func:`crop_fraction` of its long side.
    """
    width, height = image.size
    bucket_w, bucket_h = bucket
    new_w, new_h = _covering_size(image.size, bucket)
    if (new_w, new_h) != (width, height):
        gap = 3.0 if max(bucket_w / width, bucket_h / height) < 1 else None
        image = image.resize((new_w, new_h), Image.Resampling.LANCZOS, reducing_gap=gap)
    top, left = crop_top_left(image.size, bucket)
    if (new_w, new_h) == (bucket_w, bucket_h):
        return image
    return image.crop((left, top, left + bucket_w, top + bucket_h))


def _covering_size(size: tuple[int, int], bucket: Bucket) -> tuple[int, int]:
    """(width, height) that ``fit_to_bucket`` resizes an image of ``size`` to before cropping."""
    (width, height), (bucket_w, bucket_h) = size, bucket
    scale = max(bucket_w / width, bucket_h / height)
    return max(bucket_w, round(width * scale)), max(bucket_h, round(height * scale))


def crop_top_left(size: tuple[int, int], bucket: Bucket, flipped: bool = False) -> tuple[int, int]:
    """(top, left) of the part of an image of ``size`` (width, height) that ``fit_to_bucket`` keeps, in the
    resized image's pixels; ``flipped`` gives the corner after mirroring. SDXL is told these numbers."""
    new_w, new_h = _covering_size(size, bucket)
    left, top = (new_w - bucket[0]) // 2, (new_h - bucket[1]) // 2
    return top, (new_w - bucket[0] - left) if flipped else left
