"""The with/without-priors report: both LoRAs side by side, star rate, leak and colour per weight."""
from __future__ import annotations

from studio.toyworld.leak_report import table_lines


def _variant(label, seconds, stars, leaks, others=None):
    rows = [{"weight": w, "star_rate": s, "leak_rate": k, "colour": 1.0}
            for w, s, k in zip((0.0, 0.9), stars, leaks)]
    for row, other in zip(rows, others or ()):
        row["other_shape_star_rate"] = other
    return {"label": label, "train_seconds": seconds, "stars": {"by_weight": rows}}


def test_the_table_shows_the_leak_of_each_variant_at_each_weight():
    report = {"variants": [_variant("with prior images", 120.4, (0.0, 0.85), (0.0, 0.02)),
                           _variant("without prior images", 110.0, (0.0, 0.9), (0.0, 0.7))]}
    lines = table_lines(report)
    assert lines[0] == "| LoRA | measure | 0 | 0.9 |"
    assert "| with prior images (120 s) | stars without `zq` (leak) | 0% | 2% |" in lines
    assert "| without prior images (110 s) | stars without `zq` (leak) | 0% | 70% |" in lines
    assert len(lines) == 2 + 3 * 2


def test_the_table_shows_stars_drawn_for_other_shapes_when_measured():
    report = {"variants": [_variant("with prior images", 200.0, (0.05, 0.85), (0.0, 0.02), (0.0, 0.1))]}
    lines = table_lines(report)
    assert "| with prior images (200 s) | stars on other shapes without `zq` | 0% | 10% |" in lines
    assert len(lines) == 2 + 4



def test_a_variant_is_a_name_and_a_json_object_of_config_changes():
    import argparse

    import pytest

    from studio.toyworld.leak_report import _variant as parse_variant

    assert parse_variant('b16={"batch_size": 16, "seed": 1}') == ("b16", {"batch_size": 16, "seed": 1})
    assert parse_variant("as-is={}") == ("as-is", {})
    with pytest.raises(argparse.ArgumentTypeError, match="not JSON"):
        parse_variant("b16={batch_size: 16}")
    with pytest.raises(argparse.ArgumentTypeError, match="NAME="):
        parse_variant("=[16]")
