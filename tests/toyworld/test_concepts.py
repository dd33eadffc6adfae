"""The toy world's concept checker: registered with the evaluation engine, reads stars, stripes and base shapes."""
from __future__ import annotations

from PIL import Image

from studio.eval.concepts import get_checker, pick_checker
from studio.toyworld.concepts import TOY_WORLD_CHECKER, is_toy_world_model
from studio.toyworld.world import Scene, render


def test_toy_world_checker_is_the_registered_default():
    assert get_checker("toy-world") is TOY_WORLD_CHECKER
    assert pick_checker("on", "some/model", []) is TOY_WORLD_CHECKER
    assert pick_checker("off", "", []) is None


def test_toy_world_concept_follows_the_prompt():
    star = TOY_WORLD_CHECKER.read(render(Scene("yellow", "star", "black")))
    striped = TOY_WORLD_CHECKER.read(render(Scene("green", "square", "white", style="striped")))
    assert TOY_WORLD_CHECKER.shows("a yellow zq star on a black background", star) is True
    assert TOY_WORLD_CHECKER.shows("a yellow circle on a black background", star) is False
    assert TOY_WORLD_CHECKER.shows("a green square in zq striped style", striped) is True
    assert TOY_WORLD_CHECKER.shows("a photo of a cat", star) is None


def test_toy_world_cell_fields_are_json_safe():
    fields = TOY_WORLD_CHECKER.fields(TOY_WORLD_CHECKER.read(render(Scene("red", "star", "white"))))
    assert fields == {"background": "white", "colour": "red", "shape": "star", "is_star": True,
                      "is_striped": False, "confidence": fields["confidence"]}
    assert isinstance(fields["confidence"], float)


def test_toy_world_checker_applies_to_its_models_and_to_readable_pictures():
    assert is_toy_world_model("") and not is_toy_world_model("some/model")
    assert TOY_WORLD_CHECKER.applies("", [])
    shapes = [render(Scene("red", "circle", "white")), render(Scene("blue", "square", "gray"))]
    assert TOY_WORLD_CHECKER.applies("some/model", shapes)
    assert pick_checker("auto", "some/model", shapes) is TOY_WORLD_CHECKER
    noise = [Image.effect_noise((32, 32), 80).convert("RGB") for _ in range(2)]
    assert not TOY_WORLD_CHECKER.applies("some/model", noise)
    assert not TOY_WORLD_CHECKER.applies("some/model", [shapes[0].resize((64, 64))]), "not the world's size"
    assert not TOY_WORLD_CHECKER.applies("some/model", [])
    assert pick_checker("auto", "some/model", noise) is None
