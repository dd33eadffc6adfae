"""The checker reads renders (clean, blurred, noisy) back correctly and never raises on junk."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageFilter

from studio.toyworld.checker import Reading, check_image, score
from studio.toyworld.world import ALL_SHAPES, STYLES, Scene, random_scene, render

N_SCENES = 320


def _noisy(image: Image.Image, sigma: float, seed: int) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels + np.random.default_rng(seed).normal(0.0, sigma, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))


DEGRADATIONS = {
    "clean": lambda image, seed: image,
    "blur": lambda image, seed: image.filter(ImageFilter.GaussianBlur(0.7)),
    "noise": lambda image, seed: _noisy(image, 8.0, seed),
}


@pytest.fixture(scope="module")
def scenes():
    rng = random.Random(2024)
    return [random_scene(rng, ALL_SHAPES, style=STYLES[i % 2]) for i in range(N_SCENES)]


@pytest.fixture(scope="module")
def reports(scenes):
    renders = [render(scene) for scene in scenes]
    return {
        name: score([check_image(degrade(image, seed)) for seed, image in enumerate(renders)], scenes)
        for name, degrade in DEGRADATIONS.items()
    }


def test_scenes_cover_every_shape_style_colour_and_background(scenes):
    assert {s.shape for s in scenes} == set(ALL_SHAPES)
    assert {s.style for s in scenes} == set(STYLES)
    assert len({s.colour for s in scenes}) == 6 and len({s.background for s in scenes}) == 3


@pytest.mark.parametrize("name", list(DEGRADATIONS))
def test_reads_renders(reports, name):
    report = reports[name]
    floor = 0.99 if name == "clean" else 0.95
    print(name, report)
    assert report["n"] == N_SCENES
    assert report["colour"] >= floor and report["shape"] >= floor and report["background"] >= floor
    assert report["star"] >= 0.99
    assert report["striped"] >= 0.97


def test_large_images_are_read_at_32_px():
    scene = Scene("purple", "star", "gray", size=0.7, style="striped")
    reading = check_image(render(scene, size=128))
    assert (reading.colour, reading.shape, reading.background) == ("purple", "star", "gray")
    assert reading.is_star and reading.is_striped


def test_is_deterministic():
    image = _noisy(render(Scene("orange", "triangle", "black")), 8.0, 0)
    assert check_image(image) == check_image(image.copy())


@pytest.mark.parametrize(
    "image",
    [
        Image.new("RGB", (32, 32), (245, 245, 245)),
        Image.new("RGB", (32, 32), (128, 128, 128)),
        Image.new("RGB", (1, 1)),
        Image.new("L", (64, 64), 7),
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)),
        Image.fromarray(np.clip(np.random.default_rng(1).normal(128, 60, (32, 32, 3)), 0, 255).astype(np.uint8)),
        Image.fromarray(np.tile(np.linspace(0, 255, 32)[None, :, None], (32, 1, 3)).astype(np.uint8)),
    ],
    ids=["white", "gray", "1px", "grey-L", "uniform-noise", "gauss-noise", "gradient"],
)
def test_blank_and_noise_read_as_nothing(image):
    reading = check_image(image)
    assert isinstance(reading, Reading)
    assert reading.colour is None and reading.shape is None
    assert not reading.is_star and not reading.is_striped


def test_score_counts_rates():
    scenes = [Scene("red", "star", "white"), Scene("blue", "circle", "black", style="striped")]
    readings = [check_image(render(s)) for s in scenes]
    wrong = Reading("gray", "green", "square", False, False)
    assert score(readings, scenes) == {
        "n": 2, "colour": 1.0, "shape": 1.0, "background": 1.0, "star": 1.0, "striped": 1.0,
        "star_rate": 0.5, "striped_rate": 0.5,
    }
    assert score([wrong, readings[1]], scenes)["colour"] == 0.5
    assert score([], []) == {"n": 0}
    with pytest.raises(ValueError):
        score(readings, scenes[:1])


LORA_PICTURES = Path(__file__).parent / "lora_pictures"


@pytest.mark.parametrize("name", sorted(p.name for p in LORA_PICTURES.glob("*.png")))
def test_reads_the_demo_loras_own_pictures(name):
    """Cells of the demo-star LoRA's weight grid (32 px, as drawn): fat, blurred stars whose short points the
    outline alone missed, and the squares, cups and circles the same LoRA draws at low weight or without the
    trigger. The file name says what the picture shows: ``<colour>-<shape>-on-<background>-w<weight>-…``."""
    colour, shape, *_ = name.split("-")
    background = name.split("-on-")[1].split("-")[0]
    reading = check_image(Image.open(LORA_PICTURES / name))
    assert reading.is_star is (shape == "star"), reading
    assert (reading.colour, reading.background) == (colour, background)
    if shape == "star":
        assert reading.shape == "star" and reading.star_fit >= 0.65
