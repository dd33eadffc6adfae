"""Concept checkers are pluggable: a registered checker reads the cells, "auto" picks the first that applies."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from studio.eval import GridSpec, concepts
from studio.eval.concepts import ConceptChecker, checker_names, get_checker, pick_checker, register_checker
from studio.eval.grid import GridRow, measure
from studio.eval.metrics import METRIC_HELP, metric_help, summarise

ROOT = Path(__file__).resolve().parents[2]


class RedChecker(ConceptChecker):
    """Reads whether a picture is mostly red; applies to models whose path ends in "red"."""

    name = "red"
    help = "Concept rate (red): share of pictures that are mostly red when the prompt says red."

    def applies(self, base_model, base_pictures):
        return base_model.endswith("red")

    def read(self, image):
        r, g, b = image.convert("RGB").resize((1, 1), Image.BOX).getpixel((0, 0))
        return r > 2 * max(g, b)

    def shows(self, prompt, reading):
        return bool(reading) if "red" in prompt.split() else None

    def fields(self, reading):
        return {"red": bool(reading)}


@pytest.fixture
def registry(monkeypatch):
    """The registry as shipped, restored after the test."""
    monkeypatch.setattr(concepts, "_registry", dict(concepts._registry))
    return concepts


def test_eval_auto_picks_the_first_checker_that_applies(registry):
    red = RedChecker()
    register_checker("red", red)
    assert checker_names() == ["toy-world", "red"]
    assert pick_checker("auto", "models/red", []) is red
    assert pick_checker("auto", "models/blue", []) is None
    assert pick_checker("off", "models/red", []) is None
    assert pick_checker("on", "models/red", []) is get_checker("toy-world"), "on: the first registered"


def test_eval_a_registered_checker_reads_the_cells_and_explains_its_rate(registry):
    register_checker("red", RedChecker())
    rows = [GridRow(0, "final", Path("x"), "a red apple", "a red apple", (), 0, None),
            GridRow(1, "final", Path("x"), "an apple", "an apple", (), 0, None)]
    red, green = Image.new("RGB", (8, 8), (200, 10, 10)), Image.new("RGB", (8, 8), (10, 200, 10))
    images = {(0, 0.0): green, (0, 1.0): red, (1, 0.0): green, (1, 1.0): red}
    cells = measure(GridSpec(lora="x"), rows, images, checker=get_checker("red"))
    assert cells[(0, 1.0)]["checker"] == {"red": True} and cells[(0, 1.0)]["concept"] is True
    assert cells[(0, 0.0)]["concept"] is False and cells[(1, 1.0)]["concept"] is None
    assert summarise(rows, cells, [1.0])["concept_rate_by_weight"] == {1.0: 1.0}
    assert metric_help("red")["concept_rate"] == RedChecker.help
    assert list(metric_help("red")) == list(METRIC_HELP), "same keys, same order"


def test_eval_a_checker_can_be_registered_by_import_path(registry):
    register_checker("toy-again", "studio.toyworld.concepts:TOY_WORLD_CHECKER")
    assert get_checker("toy-again") is get_checker("toy-world")


def test_eval_importing_the_engine_imports_no_checker_and_no_torch():
    code = ("import sys, studio.eval, studio.eval.concepts, studio.eval.metrics, studio.eval.verdict; "
            "print('studio.toyworld' in sys.modules, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["False", "False"]
