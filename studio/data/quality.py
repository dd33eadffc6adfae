"""Image quality measures for the dataset scan: sharpness, perceptual hash, colourfulness, duplicate grouping.

Sharpness is the variance of the 4-neighbour Laplacian, measured on a greyscale copy scaled so its shorter side is
:data:`WORKING_SIDE` (512 px; smaller pictures are measured as they are, never upscaled), so the number does not
depend on the file's resolution. JPEGs are decoded in draft mode at the smallest DCT scale (1/2, 1/4, 1/8) that
keeps both sides at 512 px or more, and the rest of the way is scaled with Pillow's box filter. Of the filters that
average (all but nearest-neighbour) it smooths least, so fine detail survives into the measure: against the Hamming
filter used before it separates sharp and blurred pictures by a wider margin (ratio of the lowest sharp to the
highest blurred score 1.56 against 1.27 at JPEG quality 85, and 1.21 against 0.93, i.e. overlapping, at quality 70)
at about two thirds of the cost. The Laplacian is cut into 32x32 tiles and the score is the mean variance of the
sharpest 10 % of tiles: a portrait with a sharp face and a soft, out-of-focus background is sharp, while a picture
that is soft everywhere is not. (The plain whole-image variance mis-scores such pictures and pictures with large
flat areas.) The working copy is not made smaller than 512 px to save time: on the calibration set below, measured
the same way at 384 px (a 768 px JPEG then needs only a DCT half-scale decode and no resize) sharp and blurred
scores overlap (lowest sharp 34.3, highest blurred 39.0 over both qualities), and at 256 px far more (46.1 against
131.6): at that scale JPEG block edges and the remaining detail of a blurred picture look alike.

Calibration (:func:`calibrate_blur`, about 15 s per quality; rerun it to check these numbers): 40
:func:`~studio.data.synthetic.synthetic_image` seeds at 512x384, 768x576 and 1536x1152 px, each saved as JPEG,
against copies blurred with a Gaussian of radius 2 and 3 px of the working copy (so 4.5 and 6.75 px on the
1536x1152 original) and saved the same way: 240 pairs per quality, measured through the scan's own decode. At
quality 85 sharp pictures scored 31.3 at the least (median 621) and blurred copies 20.1 at the most (median 6.1);
at quality 70, 29.7 (median 587) against 24.5 (median 7.9). The geometric mean of the extremes over both
qualities is 26.9: :data:`BLUR_THRESHOLD` = 27 separates all 480 pairs. A lighter blur of radius 1.5 px scores up
to 41 (quality 85; median 16.6) and 49 (quality 70; median 18.4) and is caught in 89 and 80 of 120 pairs: such
pictures are soft rather than blurred.

Pictures smaller than the working side (the toy worlds' 32 px pictures, or 256 px ones scanned for a 256 px
training) are cut into tiles that cover the same share of the picture as a 32 px tile of a 512 px copy, and never
smaller than :data:`MIN_TILE` (4 px). Without that, a 32 px picture is one tile and the few edge pixels of a flat
shape average out against its flat area: the shipped demo's sharp green square on grey scored 23.9, below the
threshold; with 4 px tiles the 60 shipped demo pictures score 73.9 at the least (median 5,580). At that size the
measure tells a sharp picture from a blurred one only roughly (a radius-1 px blur of a high-contrast star still
scores 1,247), so there it catches only pictures that are soft everywhere.

Perceptual hash: the 64-bit pHash (DCT of a 32x32 greyscale copy, low 8x8 frequencies against their median). On
200 synthetic pictures (384x288): a copy downsized to 2/3 and re-saved as JPEG quality 60 differed in at most 4 bits,
a Gaussian blur of radius 3 in at most 2, a 3 % crop scaled back up in at most 10; the 19,900 pairs of different
pictures differed in 14 bits at the least (1st percentile 22, median 32). :data:`NEAR_DUPLICATE_DISTANCE` = 10 bits
or fewer counts as a near-duplicate.

The pHash sees brightness structure only: a blue and a yellow star at the same place on white hash alike (the
shipped star demo had six such "near-duplicates", one pair 4 bits apart). So two pictures are near-duplicates only
when their colour layouts match as well: :func:`colour_grid` is the mean colour of each cell of a 4x4 grid, and
:func:`colour_distance` the largest difference of a cell (mean over the three channels, 0-255). On 100 synthetic
pictures (384x288) a copy downsized to 2/3 and re-saved as JPEG quality 60 moved a cell by at most 6.7 levels, a
Gaussian blur of radius 3 by 1.7 and a 3 % crop scaled back up by 18; the pairs of shipped demo pictures whose hashes
are 12 bits apart or fewer differ by 45.3 at the least. :data:`COLOUR_DISTANCE` = 28 (about the geometric mean of
18 and 45.3) splits them.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from PIL import Image, ImageFilter

WORKING_SIDE = 512
TILE = 32
MIN_TILE = 4
TOP_TILE_FRACTION = 0.1
BLUR_THRESHOLD = 27.0
NEAR_DUPLICATE_DISTANCE = 10
GREYSCALE_CHROMA = 10.0
COLOUR_DISTANCE = 28.0
COLOUR_GRID = 4
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
    return grey.resize(size, Image.Resampling.BOX, reducing_gap=3.0)


def tile_side(shorter_side: int) -> int:
    """The tile for a working copy whose shorter side is ``shorter_side``: 32 px at 512 px and above, the same
    share of the picture below that, at least :data:`MIN_TILE`."""
    return max(MIN_TILE, min(TILE, round(TILE * shorter_side / WORKING_SIDE)))


def sharpness(grey: Image.Image) -> float:
    """Mean Laplacian variance of the sharpest 10 % of tiles (:func:`tile_side`; whole picture when smaller)."""
    pixels = np.asarray(grey, dtype=np.int16)  # the Laplacian of 8-bit pixels fits in int16 (-1020..1020)
    if pixels.shape[0] < 3 or pixels.shape[1] < 3:
        return 0.0
    laplacian = (pixels[1:-1, :-2] + pixels[1:-1, 2:] + pixels[:-2, 1:-1] + pixels[2:, 1:-1]
                 - (pixels[1:-1, 1:-1] << 2))
    tile = tile_side(min(pixels.shape))
    rows, cols = laplacian.shape[0] // tile, laplacian.shape[1] // tile
    if rows == 0 or cols == 0:
        return float(laplacian.var(dtype=np.float64))
    tiles = laplacian[:rows * tile, :cols * tile].astype(np.float32).reshape(rows, tile, cols, tile)
    count = tile * tile  # variance = E[x^2] - E[x]^2 per tile; float32 sums err by < 0.1 on scores near 20
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


def colour_grid(rgb: Image.Image) -> str:
    """The mean colour of each cell of a 4x4 grid over the picture, as 96 hex digits (row by row, R G B)."""
    small = rgb.reduce(max(1, min(rgb.size) // 64)) if min(rgb.size) >= 128 else rgb
    return small.resize((COLOUR_GRID, COLOUR_GRID), Image.Resampling.BOX).tobytes().hex()


def colour_distance(first: str, second: str) -> float:
    """The largest difference of one grid cell between two :func:`colour_grid` values (0-255); 0 if one is empty
    (a report written before colour grids were measured)."""
    if not first or not second:
        return 0.0
    cells = [np.frombuffer(bytes.fromhex(grid), dtype=np.uint8).reshape(-1, 3).astype(np.float32)
             for grid in (first, second)]
    return float(np.abs(cells[0] - cells[1]).mean(axis=1).max())


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
                   (1536, 1152)), radii: Iterable[float] = (2.0, 3.0), jpeg_quality: int = 85,
                   threshold: float = BLUR_THRESHOLD) -> BlurCalibration:
    """Score synthetic sharp pictures and Gaussian-blurred copies (radius in px at 512 px scale) as JPEGs.

    ``suggested_threshold`` is the geometric mean of the lowest sharp and the highest blurred score;
    ``separated`` counts the (sharp, blurred) pairs that ``threshold`` (:data:`BLUR_THRESHOLD`) puts on the right
    sides. The pictures go through the scan's own decode (JPEG draft mode) and scaling.
    """
    from studio.data.synthetic import synthetic_image

    sharp_scores: list[float] = []
    blurred_scores: list[float] = []
    separated = 0
    for size in sizes:
        scale = max(min(size), WORKING_SIDE) / WORKING_SIDE  # radius in pixels of the working copy
        for seed in seeds:
            picture = synthetic_image(seed, size)
            sharp = sharpness(_scanned_grey(picture, jpeg_quality))
            sharp_scores.append(sharp)
            for radius in radii:
                blurred_picture = picture.filter(ImageFilter.GaussianBlur(radius * scale))
                blurred = sharpness(_scanned_grey(blurred_picture, jpeg_quality))
                blurred_scores.append(blurred)
                separated += sharp >= threshold > blurred
    low, high = min(sharp_scores), max(blurred_scores)
    return BlurCalibration(len(blurred_scores), low, float(np.median(sharp_scores)), high,
                           float(np.median(blurred_scores)), float(np.sqrt(max(low, 1e-9) * max(high, 1e-9))),
                           separated)


def _scanned_grey(picture: Image.Image, quality: int) -> Image.Image:
    """The working copy the scan measures of ``picture`` saved as a JPEG: same decode (draft mode), same scaling."""
    from studio.data.decode import decode_rgb

    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=quality)
    return working_grey(decode_rgb(buffer.getvalue(), draft_side=WORKING_SIDE).image)
