"""Image quality measures for the dataset scan: sharpness, perceptual hash, colourfulness, duplicate grouping.

Sharpness is the variance of the 4-neighbour Laplacian, measured on a greyscale copy scaled so its shorter side is
:data:`WORKING_SIDE` (512 px; smaller pictures are measured as they are, never upscaled), so the number does not
depend on the file's resolution. The copy is scaled with Pillow's Hamming filter: it keeps edges almost as crisp as
Lanczos (calibration below: sharp minimum 23.8 against Lanczos' 27.2, blurred maximum 17.3 for both) at about a
third of the cost, which is the largest single cost of the scan. The Laplacian is cut into 32x32 tiles and the
score is the mean variance of the sharpest 10 % of tiles: a portrait with a sharp face and a soft, out-of-focus
background is sharp, while a picture that is soft everywhere is not. (The plain whole-image variance mis-scores
such pictures and pictures with large flat areas: on the calibration set below it overlaps, sharp minimum 2.3
against blurred maximum 12.7.)

Calibration (:func:`calibrate_blur`, about a minute; rerun it to check these numbers): 40
:func:`~studio.data.synthetic.synthetic_image` seeds at 512x384, 768x576 and 1536x1152 px, each saved as JPEG
quality 85, against copies blurred with a Gaussian of radius 2 and 3 px of the working copy (so 4.5 and 6.75 px on
the 1536x1152 original) and saved the same way: 240 pairs. Sharp pictures scored 23.8 at the least (median 501);
blurred copies scored 17.3 at the most (median 5.1); the geometric mean of the two extremes is 20.3.
:data:`BLUR_THRESHOLD` = 20 separates all 240 pairs. A lighter blur of radius 1.5 px scores up to 34 (median 14)
and is caught in 83 of 120 pairs: such pictures are soft rather than blurred.

Perceptual hash: the 64-bit pHash (DCT of a 32x32 greyscale copy, low 8x8 frequencies against their median). On
200 synthetic pictures (384x288): a copy downsized to 2/3 and re-saved as JPEG quality 60 differed in at most 4 bits,
a Gaussian blur of radius 3 in at most 2, a 3 % crop scaled back up in at most 10; the 19,900 pairs of different
pictures differed in 14 bits at the least (1st percentile 22, median 32). :data:`NEAR_DUPLICATE_DISTANCE` = 10 bits
or fewer counts as a near-duplicate.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from PIL import Image, ImageFilter

WORKING_SIDE = 512
TILE = 32
TOP_TILE_FRACTION = 0.1
BLUR_THRESHOLD = 20.0
NEAR_DUPLICATE_DISTANCE = 10
GREYSCALE_CHROMA = 10.0
_HASH_SIZE, _HASH_LOW = 32, 8
_POPCOUNT = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def _dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II basis: ``matrix @ x`` transforms the columns of ``x``."""
    k = np.arange(size)[:, None]
    n = np.arange(size)[None, :]
    matrix = np.cos(np.pi * (2 * n + 1) * k / (2 * size)) * np.sqrt(2.0 / size)
    matrix[0] /= np.sqrt(2.0)
    return matrix


_DCT = _dct_matrix(_HASH_SIZE)


def working_grey(rgb: Image.Image, side: int = WORKING_SIDE) -> Image.Image:
    """A greyscale copy whose shorter side is ``side`` (pictures already smaller stay as they are)."""
    grey = rgb.convert("L")
    width, height = grey.size
    shorter = min(width, height)
    if shorter <= side:
        return grey
    size = (max(1, round(width * side / shorter)), max(1, round(height * side / shorter)))
    return grey.resize(size, Image.Resampling.HAMMING, reducing_gap=3.0)


def sharpness(grey: Image.Image) -> float:
    """Mean Laplacian variance of the sharpest 10 % of 32x32 tiles (whole picture when smaller than a tile)."""
    pixels = np.asarray(grey, dtype=np.float32)
    if pixels.shape[0] < 3 or pixels.shape[1] < 3:
        return 0.0
    laplacian = (pixels[1:-1, :-2] + pixels[1:-1, 2:] + pixels[:-2, 1:-1] + pixels[2:, 1:-1]
                 - 4.0 * pixels[1:-1, 1:-1])
    rows, cols = laplacian.shape[0] // TILE, laplacian.shape[1] // TILE
    if rows == 0 or cols == 0:
        return float(laplacian.var())
    tiles = laplacian[:rows * TILE, :cols * TILE].reshape(rows, TILE, cols, TILE)
    count = TILE * TILE  # variance = E[x^2] - E[x]^2 per tile; float32 sums err by < 0.1 on scores near 20
    means = tiles.sum(axis=(1, 3)) / count
    variances = np.sort((np.einsum("ijkl,ijkl->ik", tiles, tiles) / count - means * means).ravel())
    top = max(1, int(len(variances) * TOP_TILE_FRACTION))
    return float(variances[-top:].mean())


def phash(grey: Image.Image) -> int:
    """64-bit perceptual hash of a greyscale picture (bit set where a low DCT frequency is above the median)."""
    small = np.asarray(grey.resize((_HASH_SIZE, _HASH_SIZE), Image.Resampling.BOX), dtype=np.float64)
    low = (_DCT @ small @ _DCT.T)[:_HASH_LOW, :_HASH_LOW].ravel()
    bits = low > np.median(low)
    return int(np.packbits(bits).view(">u8")[0])


def chroma(rgb: Image.Image) -> float:
    """99th percentile of (max - min channel) on a copy reduced to 64-127 px: about 0-5 for grey, tens for colour."""
    small = np.asarray(rgb.reduce(max(1, min(rgb.size) // 64)), dtype=np.int16)
    spread = small.max(axis=2) - small.min(axis=2)
    return float(np.percentile(spread, 99))


def hamming(first: int, second: int) -> int:
    return bin(first ^ second).count("1")


def near_duplicate_pairs(hashes: list[int], max_distance: int = NEAR_DUPLICATE_DISTANCE,
                         chunk: int = 512) -> list[tuple[int, int, int]]:
    """``(i, j, distance)`` for every ``i < j`` whose hashes differ in at most ``max_distance`` bits."""
    values = np.array(hashes, dtype=np.uint64)
    pairs: list[tuple[int, int, int]] = []
    for start in range(0, len(values), chunk):
        block = values[start:start + chunk, None] ^ values[None, :]
        distances = _POPCOUNT[block.view(np.uint8).reshape(block.shape + (8,))].sum(axis=2, dtype=np.int32)
        rows, cols = np.nonzero(distances <= max_distance)
        for row, col in zip(rows.tolist(), cols.tolist()):
            if start + row < col:
                pairs.append((start + row, col, int(distances[row, col])))
    return pairs


def group_pairs(count: int, pairs: Iterable[tuple[int, int, int]]) -> list[list[int]]:
    """Connected groups (two or more members, each sorted) of the graph whose edges are ``pairs``."""
    parent = list(range(count))

    def root(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for first, second, _ in pairs:
        parent[root(first)] = root(second)
    groups: dict[int, list[int]] = {}
    for index in range(count):
        groups.setdefault(root(index), []).append(index)
    return sorted((members for members in groups.values() if len(members) > 1), key=lambda m: m[0])


@dataclass(frozen=True)
class BlurCalibration:
    """Sharpness of sharp pictures against their blurred copies, and whether :data:`BLUR_THRESHOLD` splits them."""

    pairs: int
    sharp_min: float
    sharp_median: float
    blurred_max: float
    blurred_median: float
    suggested_threshold: float
    separated: int


def calibrate_blur(seeds: Iterable[int] = range(40), sizes: Iterable[tuple[int, int]] = ((512, 384), (768, 576),
                   (1536, 1152)), radii: Iterable[float] = (2.0, 3.0), jpeg_quality: int = 85) -> BlurCalibration:
    """Score synthetic sharp pictures and Gaussian-blurred copies (radius in px at 512 px scale) as JPEGs.

    ``suggested_threshold`` is the geometric mean of the lowest sharp and the highest blurred score;
    ``separated`` counts the (sharp, blurred) pairs that :data:`BLUR_THRESHOLD` puts on the right sides.
    """
    from studio.data.synthetic import synthetic_image

    sharp_scores: list[float] = []
    blurred_scores: list[float] = []
    separated = 0
    for size in sizes:
        scale = max(min(size), WORKING_SIDE) / WORKING_SIDE  # radius in pixels of the working copy
        for seed in seeds:
            picture = synthetic_image(seed, size)
            sharp = sharpness(working_grey(_jpeg_round_trip(picture, jpeg_quality)))
            sharp_scores.append(sharp)
            for radius in radii:
                blurred_picture = picture.filter(ImageFilter.GaussianBlur(radius * scale))
                blurred = sharpness(working_grey(_jpeg_round_trip(blurred_picture, jpeg_quality)))
                blurred_scores.append(blurred)
                separated += sharp >= BLUR_THRESHOLD > blurred
    low, high = min(sharp_scores), max(blurred_scores)
    return BlurCalibration(len(blurred_scores), low, float(np.median(sharp_scores)), high,
                           float(np.median(blurred_scores)), float(np.sqrt(max(low, 1e-9) * max(high, 1e-9))),
                           separated)


def _jpeg_round_trip(picture: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")
