"""Deterministic synthetic pictures for calibrating and testing the dataset scan (no downloads needed).

:func:`synthetic_image` mixes the kinds of content a blur or duplicate detector must cope with: smooth colour
gradients, hard-edged shapes, noise textures, thin text-like strokes and sensor-like grain. The same seed and size
always give the same picture; different seeds give pictures that share no structure.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

_SUPERSAMPLE = 2


def synthetic_image(seed: int, size: tuple[int, int] = (512, 512)) -> Image.Image:
    """An RGB picture of ``size`` (width, height) whose content kind cycles with ``seed % 4``.

    Kinds: 0 shapes on a gradient, 1 shapes on a noise texture, 2 shapes and text-like strokes, 3 strokes plus
    grain. Element sizes and stroke widths scale with the picture, so a 1536 px and a 512 px rendering of one seed
    look alike apart from resolution. Edges are anti-aliased like a camera's or a
    renderer's (drawn at twice the size and reduced), so a sharp picture is not unrealistically crisp.
    """
    rng = np.random.default_rng(seed)
    width, height = size
    kind = seed % 4
    big_w, big_h = width * _SUPERSAMPLE, height * _SUPERSAMPLE  # drawn large, then reduced: anti-aliased edges
    image = Image.fromarray(_background(rng, big_w, big_h, textured=kind == 1))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        _shape(draw, rng, big_w, big_h)
    if kind in (2, 3):
        for _ in range(int(rng.integers(15, 40))):
            _stroke(draw, rng, big_w, big_h)
    image = image.reduce(_SUPERSAMPLE)
    if kind == 3:
        grain = rng.normal(0.0, 6.0, (height, width, 1))
        image = Image.fromarray(np.clip(np.asarray(image, np.float32) + grain, 0, 255).astype(np.uint8))
    return image


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    red, green, blue = (int(v) for v in rng.integers(0, 256, 3))
    return red, green, blue


def _background(rng: np.random.Generator, width: int, height: int, textured: bool) -> np.ndarray:
    """A two-colour linear gradient, optionally half-blended with a smooth random texture."""
    start, end = np.array(_colour(rng), np.float32), np.array(_colour(rng), np.float32)
    if rng.random() < 0.5:
        ramp = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    else:
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    pixels = (start * (1 - ramp) + end * ramp) * np.ones((height, width, 1), np.float32)
    if textured:
        coarse = (rng.random((max(height // 8, 2), max(width // 8, 2), 3)) * 255).astype(np.uint8)
        texture = Image.fromarray(coarse).resize((width, height), Image.Resampling.BICUBIC)
        pixels = 0.5 * pixels + 0.5 * np.asarray(texture, np.float32)
    return np.clip(pixels, 0, 255).astype(np.uint8)


def _shape(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> None:
    x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
    x1 = x0 + int(rng.integers(max(width // 16, 1), max(width // 2, 2)))
    y1 = y0 + int(rng.integers(max(height // 16, 1), max(height // 2, 2)))
    fill = _colour(rng)
    shape = int(rng.integers(0, 3))
    if shape == 0:
        draw.rectangle((x0, y0, x1, y1), fill=fill)
    elif shape == 1:
        draw.ellipse((x0, y0, x1, y1), fill=fill)
    else:
        draw.polygon([(x0, y0), (x1, y0 + (y1 - y0) // 3), (x0 + (x1 - x0) // 2, y1)], fill=fill)


def _stroke(draw: ImageDraw.ImageDraw, rng: np.random.Generator, width: int, height: int) -> None:
    """A short zig-zag line, like a handwritten letter."""
    x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
    points = [(x, y)]
    step_x, step_y = max(width // 40, 1), max(height // 40, 1)
    for _ in range(4):
        x += int(rng.integers(-step_x, step_x + 1))
        y += int(rng.integers(-step_y, step_y + 1))
        points.append((x, y))
    line_width = max(1, round(int(rng.integers(1, 4)) * min(width, height) / 512))
    draw.line(points, fill=_colour(rng), width=line_width)
