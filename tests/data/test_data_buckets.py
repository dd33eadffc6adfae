"""Aspect-ratio buckets and cover-then-crop fitting."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from studio.data import assign_bucket, crop_fraction, fit_to_bucket, make_buckets


@pytest.mark.parametrize("resolution,step", [(32, 8), (64, 8), (512, 64), (768, 64), (1024, 64)])
def test_buckets_respect_area_step_and_ratio(resolution, step):
    buckets = make_buckets(resolution)
    assert (resolution, resolution) in buckets
    for width, height in buckets:
        assert width * height <= resolution * resolution
        assert width % step == 0 and height % step == 0
        assert 0.5 <= width / height <= 2.0
        assert (height, width) in buckets
    assert len(set(buckets)) == len(buckets)
    assert make_buckets(512, max_ratio=1.0) == [(512, 512)]


def test_bad_bucket_arguments_are_refused():
    with pytest.raises(ValueError):
        make_buckets(4)
    with pytest.raises(ValueError):
        make_buckets(512, max_ratio=0.5)


def test_assign_picks_closest_log_ratio():
    buckets = make_buckets(512)
    assert assign_bucket(1000, 1000, buckets) == (512, 512)
    assert assign_bucket(2000, 1000, buckets) == (640, 384)
    assert assign_bucket(1000, 2000, buckets) == (384, 640)
    assert assign_bucket(1300, 1000, buckets) == (576, 448)
    for width, height in [(1234, 567), (300, 900), (640, 480)]:
        chosen = assign_bucket(width, height, buckets)
        distance = abs(math.log(chosen[0] / chosen[1]) - math.log(width / height))
        assert all(distance <= abs(math.log(b[0] / b[1]) - math.log(width / height)) + 1e-12 for b in buckets)


def _has_red(image):
    pixels = np.asarray(image.convert("RGB")).astype(int)
    return bool(((pixels[..., 0] > 150) & (pixels[..., 1] < 100) & (pixels[..., 2] < 100)).any())


def test_wide_image_keeps_subject_near_the_edge():
    image = Image.new("RGB", (200, 100), "white")
    ImageDraw.Draw(image).ellipse((22, 44, 34, 56), fill=(255, 0, 0))
    bucket = assign_bucket(*image.size, make_buckets(64))
    fitted = fit_to_bucket(image, bucket)
    assert fitted.size == bucket == (80, 48)
    assert _has_red(fitted)
    assert crop_fraction(image.size, bucket) == pytest.approx(1 / 6)
    assert not _has_red(ImageOps.fit(image, (64, 64)))  # what a square centre crop would do


def test_square_mode_and_upscale_and_exact_fit():
    image = Image.new("RGB", (30, 10), "white")
    assert fit_to_bucket(image, (32, 32)).size == (32, 32)
    exact = Image.new("RGB", (80, 48), "blue")
    assert fit_to_bucket(exact, (80, 48)) is exact
    assert fit_to_bucket(Image.new("RGB", (3000, 1800)), (640, 384)).size == (640, 384)


def test_sdxl_resolution_gives_sdxls_own_buckets():
    """At 1024 px the buckets are the ones SDXL was trained on (64 px steps, about 1024² pixels) within ratio 2."""
    buckets = make_buckets(1024)
    published = [(1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344)]
    assert set(published) <= set(buckets)
    assert all(w % 64 == 0 and h % 64 == 0 and 0.88 * 1024**2 <= w * h <= 1024**2 for w, h in buckets)
