"""How closely a shape's coverage matches each of the world's shapes drawn over it: the checker's second look.

A LoRA draws its stars fatter and blurrier than the world renders them: at 32 px a point or two melts into the
body, so the checker's count of points along the outline finds four, and a star that anyone sees is read as no
shape. Here each of the world's shapes is drawn at the coverage's area and centroid (at a few sizes and offsets
around them), blurred like a generated picture, and the best soft overlap (intersection over union of the
coverages, 0..1) is kept per shape. Stars are drawn with the world's inner radius and two fatter ones.
"""
from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from .world import STAR_INNER, SUPERSAMPLE, shape_polygon

TEMPLATES = (("circle", 0.0), ("square", 0.0), ("triangle", 0.0),
             ("star", STAR_INNER), ("star", 0.5), ("star", 0.58))  # (shape, a star's inner radius ratio)
BLUR = 0.6  # px: the Gaussian blur of a generated 32 px picture's edges
SCALES = (0.9, 1.0, 1.1)  # sizes tried, relative to the one with the coverage's area
OFFSETS = (-0.5, 0.0, 0.5)  # px tried around the coverage's centroid, in x and in y
_UNIT = 20.0  # side, in pixels, of the drawing that measures a template's area and centroid
SECOND_LOOK_SOLIDITY = 0.88  # below this a shape not read as a star is laid over the templates (stars: 0.65-0.83)
MIN_STAR_FIT = 0.65  # overlap with the best star template below which no star is read


def _draw(shape: str, inner: float, cx: float, cy: float, side: float, size: int) -> np.ndarray:
    """Soft coverage (0..1) of one shape with a bounding box of ``side`` centred on (cx, cy), ``size`` px square."""
    canvas = size * SUPERSAMPLE
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    x, y, half = cx * SUPERSAMPLE, cy * SUPERSAMPLE, side * SUPERSAMPLE / 2
    if shape == "circle":
        draw.ellipse([x - half, y - half, x + half, y + half], fill=255)
    else:
        draw.polygon(shape_polygon(shape, x, y, side * SUPERSAMPLE, star_inner=inner or STAR_INNER), fill=255)
    return np.asarray(mask.resize((size, size), Image.BOX), dtype=np.float64) / 255.0


@lru_cache(maxsize=None)
def _unit(shape: str, inner: float) -> tuple[float, float, float]:
    """(area per side², centroid's y and x offset from the box centre per side) of a template."""
    centre = 16.0
    coverage = _draw(shape, inner, centre, centre, _UNIT, 32)
    ys, xs = np.indices(coverage.shape)
    area = coverage.sum()
    return (area / _UNIT ** 2, ((coverage * ys).sum() / area - centre) / _UNIT,
            ((coverage * xs).sum() / area - centre) / _UNIT)


def _overlap(alpha: np.ndarray, template: np.ndarray) -> float:
    union = np.maximum(alpha, template).sum()
    return float(np.minimum(alpha, template).sum() / union) if union > 0 else 0.0


def best_fits(alpha: np.ndarray) -> dict[str, float]:
    """{shape: best overlap of its templates with ``alpha``}, for circle, square, triangle and star."""
    alpha = np.clip(alpha, 0.0, 1.0)
    area = alpha.sum()
    fits = dict.fromkeys(("circle", "square", "triangle", "star"), 0.0)
    if area < 1.0:
        return fits
    ys, xs = np.indices(alpha.shape)
    cy, cx = (alpha * ys).sum() / area, (alpha * xs).sum() / area
    for shape, inner in TEMPLATES:
        per_side, dy, dx = _unit(shape, inner)
        side_for_area = float(np.sqrt(area / per_side))
        for scale, oy, ox in itertools.product(SCALES, OFFSETS, OFFSETS):
            side = side_for_area * scale
            template = _draw(shape, inner, cx - dx * side + ox, cy - dy * side + oy, side, alpha.shape[0])
            fits[shape] = max(fits[shape], _overlap(alpha, ndimage.gaussian_filter(template, BLUR)))
    return fits


def second_look(alpha: np.ndarray, shape: str | None, margin: float, solidity: float) -> tuple:
    """(shape, margin, star fit) after a second look at a concave shape the outline did not read as a star: a star
    when a star template fits it at least as well as every other shape's (the margin is then the star's lead)."""
    if shape == "star" or solidity <= 0.0 or solidity >= SECOND_LOOK_SOLIDITY:
        return shape, margin, 0.0
    fits = best_fits(alpha)
    star = fits.pop("star")
    if star >= MIN_STAR_FIT and star >= max(fits.values()):
        return "star", star - max(fits.values()), star
    return shape, margin, star
