"""The toy world: one flat shape in a named colour on a named background, at 32 x 32 pixels.

It is small enough that a Stable Diffusion-shaped model learns it on a CPU in minutes, and regular enough that a
deterministic checker (``checker.py``) can read every generated image back. The base model in ``assets/`` is
pretrained on circles, squares and triangles; stars and the striped style are never shown to it, so the demo
datasets can teach them as new concepts.
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

IMAGE_SIZE = 32
SUPERSAMPLE = 4
STAR_INNER = 0.42  # a star's inner radius over its outer one

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 170, 50),
    "blue": (35, 80, 235),
    "yellow": (245, 220, 30),
    "purple": (145, 50, 200),
    "orange": (250, 135, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (245, 245, 245),
    "black": (12, 12, 12),
    "gray": (128, 128, 128),
}
BASE_SHAPES = ("circle", "square", "triangle")
NEW_SHAPES = ("star",)  # never shown to the base model
ALL_SHAPES = BASE_SHAPES + NEW_SHAPES
STYLES = ("solid", "striped")

STAR_TRIGGER = "zq star"
STRIPED_TRIGGER = "zq striped style"


@dataclass(frozen=True)
class Scene:
    """Everything that decides one picture: what is drawn, where and how."""

    colour: str
    shape: str
    background: str
    size: float = 0.65  # bounding-box side as a fraction of the image side
    cx: float = 0.5  # centre, as fractions of the image side
    cy: float = 0.5
    style: str = "solid"

    def __post_init__(self) -> None:
        if self.colour not in COLOURS:
            raise ValueError(f"unknown colour {self.colour!r}; choose one of {', '.join(COLOURS)}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}; choose one of {', '.join(BACKGROUNDS)}")
        if self.shape not in ALL_SHAPES:
            raise ValueError(f"unknown shape {self.shape!r}; choose one of {', '.join(ALL_SHAPES)}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}; choose one of {', '.join(STYLES)}")


def caption(scene: Scene) -> str:
    """The caption the world uses: ``a {colour} {shape} on a {background} background``.

    A star is called ``zq star`` and the striped style ends in ``in zq striped style``: the trigger words the demo
    LoRAs are trained on.
    """
    noun = STAR_TRIGGER if scene.shape == "star" else scene.shape
    text = f"a {scene.colour} {noun} on a {scene.background} background"
    if scene.style == "striped":
        text += f" in {STRIPED_TRIGGER}"
    return text


def random_scene(
    rng: random.Random,
    shapes: tuple[str, ...] = BASE_SHAPES,
    style: str = "solid",
    colour: str | None = None,
    background: str | None = None,
) -> Scene:
    """A scene with random colour, background, size and position (the shape always fits inside the image)."""
    size = rng.uniform(0.45, 0.8)
    half = size / 2
    margin = 1.5 / IMAGE_SIZE
    cx = rng.uniform(half + margin, 1 - half - margin)
    cy = rng.uniform(half + margin, 1 - half - margin)
    return Scene(
        colour=colour or rng.choice(list(COLOURS)),
        shape=rng.choice(list(shapes)),
        background=background or rng.choice(list(BACKGROUNDS)),
        size=size,
        cx=cx,
        cy=cy,
        style=style,
    )


def shape_polygon(shape: str, cx: float, cy: float, side: float,
                  star_inner: float = STAR_INNER) -> list[tuple[float, float]]:
    """Vertices of a polygonal shape with a bounding box of ``side`` centred on (cx, cy), in pixels; a star's
    inner corners lie at ``star_inner`` times its outer radius."""
    half = side / 2
    if shape == "square":
        return [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "triangle":
        return [(cx, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    if shape == "star":
        outer, inner = half, half * star_inner
        points = []
        for k in range(10):
            radius = outer if k % 2 == 0 else inner
            angle = -math.pi / 2 + k * math.pi / 5
            points.append((cx + radius * math.cos(angle), cy + 0.08 * half + radius * math.sin(angle)))
        return points
    raise ValueError(f"{shape!r} is not a polygon")


def _shape_mask(scene: Scene, canvas: int) -> Image.Image:
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    side = scene.size * canvas
    cx, cy = scene.cx * canvas, scene.cy * canvas
    if scene.shape == "circle":
        half = side / 2
        draw.ellipse([cx - half, cy - half, cx + half, cy + half], fill=255)
    else:
        draw.polygon(shape_polygon(scene.shape, cx, cy, side), fill=255)
    return mask


def _stripe_mask(canvas: int, period_px: int = 4) -> Image.Image:
    """Horizontal stripes, ``period_px`` final pixels per light+dark pair."""
    mask = Image.new("L", (canvas, canvas), 0)
    draw = ImageDraw.Draw(mask)
    band = period_px * SUPERSAMPLE // 2
    for top in range(0, canvas, 2 * band):
        draw.rectangle([0, top, canvas, top + band - 1], fill=255)
    return mask


def stripe_colour(colour: str) -> tuple[int, int, int]:
    """The light band of a striped fill: the colour mixed half-way to white."""
    r, g, b = COLOURS[colour]
    return ((r + 255) // 2, (g + 255) // 2, (b + 255) // 2) if colour != "yellow" else (120, 100, 10)


def render(scene: Scene, size: int = IMAGE_SIZE) -> Image.Image:
    """Draw the scene, anti-aliased by supersampling, as an RGB image of ``size`` x ``size`` pixels."""
    canvas = size * SUPERSAMPLE
    image = Image.new("RGB", (canvas, canvas), BACKGROUNDS[scene.background])
    fill = Image.new("RGB", (canvas, canvas), COLOURS[scene.colour])
    if scene.style == "striped":
        light = Image.new("RGB", (canvas, canvas), stripe_colour(scene.colour))
        fill = Image.composite(light, fill, _stripe_mask(canvas, period_px=max(2, size // 8)))
    image = Image.composite(fill, image, _shape_mask(scene, canvas))
    return image.resize((size, size), Image.LANCZOS)
