"""Read a toy-world picture back: background, colour, shape, star or not, striped or not.

Deterministic and numpy/scipy only, so it can score thousands of generated images on a CPU. The method:

1. background: the nearest named background to the median of the border ring (the world keeps every shape
   1.5 px away from the edge), rejected when the border is not one consistent colour (noise, muddy images);
2. foreground: pixels far from that colour, largest connected component, holes filled;
3. stripes: the row profile of the component's eroded core alternates light/dark with the world's period;
4. colour: the nearest named colour to the median of the eroded core, or for striped shapes the named
   (colour, stripe_colour) pair nearest to the two bands' medians;
5. coverage: each pixel is unmixed into background + the shape's colour(s) to a soft alpha, which gives an area
   and a bounding box free of the anti-aliasing bias of a hard threshold;
6. shape: bounding-box fill ratio and convex-hull solidity (square ~1/1, circle ~0.79/0.95, triangle ~0.5/0.9,
   star ~0.4/0.6), and the number of points of the radial profile (a star has 5);
7. a concave shape not read as a star gets a second look (``shape_fit``): the world's shapes, stars fat and thin
   among them, are laid over its coverage, and a star fits best in a LoRA's blurred star whose points were too
   short to count.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterable

import numpy as np
from PIL import Image
from scipy import ndimage

from .outline import count_points, radial_profile, solidity
from .shape_fit import second_look
from .world import BACKGROUNDS, COLOURS, IMAGE_SIZE, stripe_colour

if TYPE_CHECKING:
    from .world import Scene

_BG_NAMES = list(BACKGROUNDS)
_BG_RGB = np.array([BACKGROUNDS[n] for n in _BG_NAMES], dtype=np.float64)
_COLOUR_NAMES = list(COLOURS)
_COLOUR_RGB = np.array([COLOURS[n] for n in _COLOUR_NAMES], dtype=np.float64)
_STRIPE_RGB = np.array([stripe_colour(n) for n in _COLOUR_NAMES], dtype=np.float64)

BORDER_TOLERANCE = 40.0  # RGB distance within which a border pixel agrees with the border median
MIN_BORDER_AGREEMENT = 0.75  # fraction of border pixels that must agree for a background to be read
MAX_BACKGROUND_DISTANCE = 70.0  # beyond this the border matches no named background
FOREGROUND_DISTANCE = 45.0  # a pixel this far from the background belongs to the shape
MIN_AREA = 12  # pixels; smaller components are specks, not shapes
MAX_AREA_FRACTION = 0.85  # a "component" covering more than this of the image is mud, not a shape
MAX_COLOUR_DISTANCE = 110.0  # beyond this the shape's colour matches no named colour
MAX_COLOUR_SPREAD = 58.0  # median RGB distance of the fill's pixels to its colour above which the fill is mud
STRIPE_PERIOD = IMAGE_SIZE // 8  # rows per light+dark pair at 32 px
MIN_STRIPE_CONTRAST = 10.0  # RGB std of the row profile below which a fill is solid
MIN_STRIPE_SCORE = 0.55  # periodicity of the row profile at STRIPE_PERIOD, from -1 to 1
STAR_SOLIDITY = 0.78  # below this the shape is concave enough to be a star


@dataclass(frozen=True)
class Reading:
    """What the checker saw in one image, with the numbers behind each decision."""

    background: str | None
    colour: str | None
    shape: str | None
    is_star: bool
    is_striped: bool
    fill_ratio: float = 0.0  # soft area / soft bounding-box area
    solidity: float = 0.0  # area / convex-hull area
    points: int = 0  # peaks of the radial profile (5 for a star)
    colour_distance: float = math.inf  # RGB distance of the measured colour(s) to the named one
    colour_spread: float = math.inf  # median RGB distance of the fill's pixels to the measured colour(s)
    background_distance: float = math.inf
    area: float = 0.0  # soft area of the shape, in pixels of the 32 x 32 image
    stripe_score: float = 0.0
    stripe_contrast: float = 0.0
    star_fit: float = 0.0  # best overlap with a star template (0..1), when the second look was taken
    confidence: float = 0.0  # 0..1: how clearly every decision was made

    def as_dict(self) -> dict:
        return asdict(self)


def _empty(background: str | None = None, background_distance: float = math.inf) -> Reading:
    return Reading(background, None, None, False, False, background_distance=background_distance)


def _to_array(image: Image.Image) -> np.ndarray:
    """RGB float array at the world's 32 x 32 (larger images are area-averaged down)."""
    image = image.convert("RGB")
    if image.size != (IMAGE_SIZE, IMAGE_SIZE):
        image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.BOX)
    return np.asarray(image, dtype=np.float64)


def _read_background(pixels: np.ndarray) -> tuple[np.ndarray | None, str | None, float, float]:
    """(measured colour, name or None, distance to the name, border agreement)."""
    ring = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    median = np.median(ring, axis=0)
    agreement = float(np.mean(np.linalg.norm(ring - median, axis=1) < BORDER_TOLERANCE))
    if agreement < MIN_BORDER_AGREEMENT:
        return None, None, math.inf, agreement
    distances = np.linalg.norm(_BG_RGB - median, axis=1)
    best = int(np.argmin(distances))
    name = _BG_NAMES[best] if distances[best] <= MAX_BACKGROUND_DISTANCE else None
    return median, name, float(distances[best]), agreement


def _largest_component(mask: np.ndarray) -> np.ndarray | None:
    """The largest connected region of ``mask`` with holes filled; None for specks and for mud."""
    labels, count = ndimage.label(mask)
    if count == 0:
        return None
    sizes = ndimage.sum(mask, labels, range(1, count + 1))
    best = int(np.argmax(sizes)) + 1
    if sizes[best - 1] < MIN_AREA or sizes[best - 1] > MAX_AREA_FRACTION * mask.size:
        return None
    return ndimage.binary_fill_holes(labels == best)


def _stripes(pixels: np.ndarray, core: np.ndarray, component: np.ndarray | None = None) -> tuple:
    """(periodicity score, contrast, per-row band sign or None, mask used) of the shape's row profile.

    Rows come from the eroded ``core``, or from the whole ``component`` when the core is too short. Each row's
    median colour is projected on the rows' first principal axis; the score is the normalised autocorrelation
    at the full period minus that at half the period, halved: 1 for a perfect square wave of period
    STRIPE_PERIOD, about 0 for noise, negative for slow gradients.
    """
    rows = [y for y in range(core.shape[0]) if core[y].sum() >= 2]
    if len(rows) < 2 * STRIPE_PERIOD and component is not None:
        core = component  # small shapes: the rim's anti-aliased pixels are a minority of each row's median
        rows = [y for y in range(core.shape[0]) if core[y].sum() >= 2]
    if len(rows) < 2 * STRIPE_PERIOD:
        return 0.0, 0.0, None, core
    if len(rows) >= 2 * STRIPE_PERIOD + 2:
        rows = rows[1:-1]  # the end rows still mix in the rim of a blurred shape
    profile = np.array([np.median(pixels[y][core[y]], axis=0) for y in rows])
    centred = profile - profile.mean(axis=0)
    _, _, axes = np.linalg.svd(centred, full_matrices=False)
    signal = centred @ axes[0]
    signal = signal - ndimage.uniform_filter1d(signal, STRIPE_PERIOD, mode="nearest")
    contrast = float(np.std(signal))
    power = float(np.dot(signal, signal))
    if power <= 1e-9:
        return 0.0, contrast, None, core

    def autocorrelation(lag: int) -> float:
        return float(np.dot(signal[:-lag], signal[lag:])) / power * len(signal) / (len(signal) - lag)

    score = (autocorrelation(STRIPE_PERIOD) - autocorrelation(STRIPE_PERIOD // 2)) / 2
    bands = np.zeros(core.shape[0])
    bands[rows] = np.sign(signal)
    return score, contrast, bands, core


def _spread(values: np.ndarray, centre: np.ndarray) -> float:
    return float(np.median(np.linalg.norm(values - centre, axis=1)))


def _read_colour(pixels: np.ndarray, core: np.ndarray, bands: np.ndarray | None) -> tuple[int, float, float, list]:
    """(index of the named colour, distance, spread, measured band colours) for a solid or striped fill."""
    if bands is None:
        measured = np.median(pixels[core], axis=0)
        distances = np.linalg.norm(_COLOUR_RGB - measured, axis=1)
        best = int(np.argmin(distances))
        return best, float(distances[best]), _spread(pixels[core], measured), [measured]
    band_rows = bands[:, None].repeat(core.shape[1], axis=1)
    light, dark = core & (band_rows > 0), core & (band_rows < 0)
    if not light.any() or not dark.any():
        return _read_colour(pixels, core, None)
    first, second = np.median(pixels[light], axis=0), np.median(pixels[dark], axis=0)
    spread = (_spread(pixels[light], first) + _spread(pixels[dark], second)) / 2
    straight = np.linalg.norm(_COLOUR_RGB - first, axis=1) + np.linalg.norm(_STRIPE_RGB - second, axis=1)
    swapped = np.linalg.norm(_COLOUR_RGB - second, axis=1) + np.linalg.norm(_STRIPE_RGB - first, axis=1)
    pair = np.minimum(straight, swapped) / 2
    best = int(np.argmin(pair))
    return best, float(pair[best]), spread, [first, second]


def _alpha(pixels: np.ndarray, background: np.ndarray, fills: list) -> np.ndarray:
    """Per-pixel coverage in [0, 1]: each pixel unmixed into background + non-negative amounts of the fills."""
    offset = (pixels - background).reshape(-1, 3)
    directions = [f - background for f in fills if np.linalg.norm(f - background) > 1.0]
    if not directions:
        return np.zeros(pixels.shape[:2])
    singles = [np.clip(offset @ d / np.dot(d, d), 0.0, None) for d in directions]
    alpha = np.maximum.reduce(singles)
    if len(directions) == 2:
        basis = np.stack(directions, axis=1)
        gram = basis.T @ basis
        if abs(np.linalg.det(gram)) > 1e-6 * np.trace(gram) ** 2:
            amounts = np.linalg.solve(gram, basis.T @ offset.T).T
            both = (amounts >= 0).all(axis=1)
            alpha = np.where(both, amounts.sum(axis=1), alpha)
    return np.clip(alpha, 0.0, 1.0).reshape(pixels.shape[:2])


def _classify(fill: float, solidity: float, points: int) -> tuple[str | None, float]:
    """(shape, margin to the nearest decision boundary); a concave shape without five points is no shape.

    The radial profile's lobes (3 triangle, 4 square, 0 circle) decide when the fill ratio agrees within a
    broad range; otherwise the fill ratio alone decides with thresholds half-way between the ideal values.
    """
    if solidity < STAR_SOLIDITY:
        return ("star" if points == 5 else None), STAR_SOLIDITY - solidity
    solidity_margin = solidity - STAR_SOLIDITY
    broad = {3: ("triangle", 0.0, 0.72), 4: ("square", 0.84, math.inf), 0: ("circle", 0.66, 0.92)}
    if points in broad:
        shape, low, high = broad[points]
        if low <= fill < high:
            return shape, min(solidity_margin, fill - low, high - fill)
    for shape, low, high in (("square", 0.89, math.inf), ("circle", 0.64, 0.89), ("triangle", 0.0, 0.64)):
        if low <= fill < high:
            return shape, min(solidity_margin, fill - low, high - fill) / 2
    return None, 0.0


def _geometry(pixels, background, component, fills) -> tuple[float, float, float, int, np.ndarray]:
    """(soft area, fill ratio, solidity, points, coverage) of the shape."""
    region = ndimage.binary_dilation(component, iterations=1)
    alpha = _alpha(pixels, background, fills) * region
    area = float(alpha.sum())
    if area < 1.0:  # the fill's colour is the background's (a filled ring, say): nothing to measure
        return area, 0.0, 0.0, 0, alpha
    width, height = alpha.max(axis=0).sum(), alpha.max(axis=1).sum()
    fill = area / (width * height) if width * height > 0 else 0.0
    solid = ndimage.binary_fill_holes(alpha >= 0.5)
    return area, float(fill), solidity(solid), count_points(radial_profile(alpha)), alpha



def check_image(image: Image.Image) -> Reading:
    """Read one toy-world picture. Never raises on odd content: what cannot be read is None / False."""
    pixels = _to_array(image)
    background, bg_name, bg_distance, agreement = _read_background(pixels)
    if background is None:
        return _empty()
    far = np.linalg.norm(pixels - background, axis=2) > FOREGROUND_DISTANCE
    component = _largest_component(far)
    if component is None:
        return _empty(bg_name, bg_distance)
    core = ndimage.binary_erosion(component)  # without the anti-aliased rim, unless too little is left
    core = core if core.sum() >= 4 else component
    stripe_score, contrast, bands, rows_mask = _stripes(pixels, core, component)
    striped = stripe_score >= MIN_STRIPE_SCORE and contrast >= MIN_STRIPE_CONTRAST
    fill_pixels, fill_bands = (rows_mask, bands) if striped else (core, None)
    colour_index, colour_distance, spread, fills = _read_colour(pixels, fill_pixels, fill_bands)
    area, fill, solidity, points, alpha = _geometry(pixels, background, component, fills)
    shape, margin, star_fit = second_look(alpha, *_classify(fill, solidity, points), solidity)
    colour_ok = colour_distance <= MAX_COLOUR_DISTANCE and spread <= MAX_COLOUR_SPREAD
    confidence = min(
        agreement * max(0.0, 1 - bg_distance / MAX_BACKGROUND_DISTANCE),
        max(0.0, 1 - colour_distance / MAX_COLOUR_DISTANCE) if colour_ok else 0.0,
        min(1.0, max(0.0, margin) / 0.1) if shape else 0.0,
    )
    return Reading(
        bg_name, _COLOUR_NAMES[colour_index] if colour_ok else None, shape, shape == "star", bool(striped),
        fill_ratio=round(fill, 4), solidity=round(solidity, 4), points=points,
        colour_distance=round(colour_distance, 2), colour_spread=round(spread, 2),
        background_distance=round(bg_distance, 2), area=round(area, 2),
        stripe_score=round(stripe_score, 4), stripe_contrast=round(contrast, 2), star_fit=round(star_fit, 4),
        confidence=round(float(confidence), 4),
    )


def score(readings: Iterable[Reading], scenes: Iterable[Scene]) -> dict:
    """Accuracies of ``readings`` against the ``scenes`` they were generated from (fractions in [0, 1]).

    ``colour``, ``shape``, ``background``: exact matches; ``star``: star read iff the scene is a star;
    ``striped``: striped read iff the scene is striped; ``star_rate`` / ``striped_rate``: fraction of images
    read as star / striped, whatever was asked for (the rate a LoRA's trigger achieves); ``n``: image count.
    """
    readings, scenes = list(readings), list(scenes)
    if len(readings) != len(scenes):
        raise ValueError(f"{len(readings)} readings for {len(scenes)} scenes")
    n = len(scenes)
    if n == 0:
        return {"n": 0}

    def rate(hits) -> float:
        return round(sum(bool(h) for h in hits) / n, 4)

    pairs = list(zip(readings, scenes))
    return {
        "n": n,
        "colour": rate(r.colour == s.colour for r, s in pairs),
        "shape": rate(r.shape == s.shape for r, s in pairs),
        "background": rate(r.background == s.background for r, s in pairs),
        "star": rate(r.is_star == (s.shape == "star") for r, s in pairs),
        "striped": rate(r.is_striped == (s.style == "striped") for r, s in pairs),
        "star_rate": rate(r.is_star for r, _ in pairs),
        "striped_rate": rate(r.is_striped for r, _ in pairs),
    }
