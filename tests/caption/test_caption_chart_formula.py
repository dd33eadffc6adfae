"""The keyword chart and the four-part prompt formula."""
from __future__ import annotations

from PIL import Image

from studio.caption import FORMULA_FIELDS, build_caption, keyword_chart
from studio.data import CaptionRecord


def test_keyword_chart_writes_a_png(tmp_path):
    records = [CaptionRecord("a.png", "**zq, cat**, red, *night*"), CaptionRecord("b.png", "zq, dog, red")]
    path = keyword_chart(records, tmp_path / "charts" / "keywords.png", top=3)
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > 300
    assert keyword_chart([], tmp_path / "empty.png").is_file()
    assert keyword_chart(["zq, cat"], tmp_path / "strings.png").is_file()


def test_build_caption_joins_four_parts_and_skips_empty_ones():
    assert build_caption("anime girl", "long silver hair, red eyes", "rainy neon-lit street, night",
                         "cyberpunk style, sharp focus") == (
        "anime girl, long silver hair, red eyes, rainy neon-lit street, night, cyberpunk style, sharp focus")
    assert build_caption(" a  cat ", "", "  ", "watercolor,") == "a cat, watercolor"
    assert build_caption(subject="a dog", attributes=["brown fur", " floppy ears "]) == "a dog, brown fur, floppy ears"
    assert build_caption() == ""


def test_formula_fields_follow_the_tutorial_order():
    assert [name for name, _label, _example in FORMULA_FIELDS] == ["subject", "attributes", "scene", "style"]
    assert build_caption(*(example for _name, _label, example in FORMULA_FIELDS)).startswith("anime girl, long")
