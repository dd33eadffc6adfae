"""The toy world's concept checker for grids: stars, stripes and the base shapes, read by ``checker.py``.

Registered with the evaluation engine as "toy-world" (``studio.eval.concepts.BUILT_IN``). It applies to the
shipped toy-world models, and to any model whose weight-0 pictures are 32 px toy-world pictures it can read.
"""
from __future__ import annotations

import re
from pathlib import Path

from PIL import Image

from studio.eval.concepts import ConceptChecker

from .checker import Reading, check_image
from .world import BASE_SHAPES, IMAGE_SIZE

CONCEPT_HELP = ("Concept rate (toy world): share of pictures the checker reads as what the prompt names "
                "(zq star = a five-pointed star, zq striped = stripes, else the named shape).")
MIN_READABLE_SHARE = 0.5  # weight-0 pictures with a background and a shape read, for "auto" to apply


def is_toy_world_model(base_model: str) -> bool:
    """True for the shipped toy-world models (SD 1.x, SDXL or FLUX.1; "" is the embedded one)."""
    from studio.models import toy_world_models

    if not base_model.strip():
        return True
    path = Path(base_model).expanduser()
    return path.is_dir() and path.resolve() in {model.resolve() for model in toy_world_models()}


def concept_shown(prompt: str, reading: Reading) -> bool | None:
    """Whether ``reading`` shows what ``prompt`` names: a star, stripes, else the base shape it names; None when
    the prompt names none of them."""
    text = prompt.lower()
    if re.search(r"\bstar\b", text):
        return bool(reading.is_star)
    if re.search(r"\bstriped\b|\bstripes\b", text):
        return bool(reading.is_striped)
    for shape in BASE_SHAPES:
        if re.search(rf"\b{shape}\b", text):
            return reading.shape == shape
    return None


class ToyWorldChecker(ConceptChecker):
    """Reads toy-world pictures with ``check_image``."""

    name = "toy-world"
    help = CONCEPT_HELP

    def applies(self, base_model: str, base_pictures: list[Image.Image]) -> bool:
        """A shipped toy-world model, or weight-0 pictures of the world's size most of which read as a shape on a
        named background."""
        if is_toy_world_model(base_model):
            return True
        if not base_pictures or base_pictures[0].size != (IMAGE_SIZE, IMAGE_SIZE):
            return False
        readings = [check_image(picture) for picture in base_pictures]
        readable = sum(r.background is not None and r.shape is not None for r in readings)
        return readable >= MIN_READABLE_SHARE * len(readings)

    def read(self, image: Image.Image) -> Reading:
        return check_image(image)

    def shows(self, prompt: str, reading: Reading) -> bool | None:
        return concept_shown(prompt, reading)

    def fields(self, reading: Reading) -> dict:
        return {"background": reading.background, "colour": reading.colour, "shape": reading.shape,
                "is_star": bool(reading.is_star), "is_striped": bool(reading.is_striped),
                "confidence": round(float(reading.confidence), 3)}


TOY_WORLD_CHECKER = ToyWorldChecker()
