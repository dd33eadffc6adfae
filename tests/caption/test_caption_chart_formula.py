"""The keyword chart and the four-part prompt formula."""
from __future__ import annotations

from PIL import Image

from studio.app.datasets import DEMO_ROOT
from studio.caption import FORMULA_FIELDS, build_caption, keyword_chart
from studio.caption.chart import chart_bars
from studio.data import CaptionRecord, read_metadata


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


def test_the_chart_splits_sentence_captions_into_their_words_and_keeps_tags_whole():
    """The star demo's captions are sentences: the chart shows the words they share, not 20 one-caption 'tags'."""
    captions = [record.prompt for record in read_metadata(DEMO_ROOT / "star" / "metadata.csv").records]
    bars = dict(chart_bars(captions))
    assert bars["star"] == bars["zq"] == bars["background"] == 20
    assert sum(bars[colour] for colour in ("red", "green", "blue", "yellow", "purple", "orange")) == 20
    assert not {"a", "on"} & set(bars) and max(len(keyword.split()) for keyword in bars) == 1
    tagged = dict(chart_bars(["**zq star**, long silver hair, red eyes", "zq star, black and white, red eyes"]))
    assert tagged == {"red eyes": 2, "zq star": 2, "black and white": 1, "long silver hair": 1}
