"""Structured prompts: Markdown and weighting are stripped for training without changing a single token."""
from __future__ import annotations

import pytest

from studio.caption import core_tags, join_tags, markup_issues, parse_structured, split_tags, strip_markup, tag_frequency

PLAIN = "anime girl, long silver hair, red eyes, black leather jacket, rainy street, night, cyberpunk style"
MARKED = ("**anime girl, (long silver hair:1.2)**,  (red eyes:1.3), ((black leather jacket)),"
          " *[rainy street], night*, , cyberpunk style")


@pytest.fixture(scope="module")
def clip_tokenizer(tmp_path_factory):
    from studio.toyworld.vocab import build_clip_tokenizer

    return build_clip_tokenizer(tmp_path_factory.mktemp("toy-tokenizer"))


def test_strip_markup_gives_the_plain_caption():
    assert strip_markup(MARKED) == PLAIN
    assert strip_markup(PLAIN) == PLAIN


def test_token_ids_identical_with_and_without_markup(clip_tokenizer):
    marked = clip_tokenizer(strip_markup(MARKED), padding="max_length", max_length=77, truncation=True).input_ids
    plain = clip_tokenizer(PLAIN, padding="max_length", max_length=77, truncation=True).input_ids
    assert marked == plain
    raw = clip_tokenizer(MARKED, padding="max_length", max_length=77, truncation=True).input_ids
    assert raw != plain  # the markup itself would have been tokens


@pytest.mark.parametrize("marked, plain", [
    ("(red eyes:1.3)", "red eyes"),
    ("((word))", "word"),
    ("[word]", "word"),
    ("(a, b:0.8), c", "a, b, c"),
    ("((nested:1.2):0.9)", "nested"),
    ("**bold**, *italic*", "bold, italic"),
    (r"artist \(style\), cat", "artist (style), cat"),
    ("a  ,, b ,c", "a, b, c"),
    ("**  **", ""),
])
def test_strip_markup_cases(marked, plain):
    assert strip_markup(marked) == plain


def test_parse_structured_core_mood_and_segments():
    parsed = parse_structured("**zq, (silver hair:1.2)**, red eyes, *moody, rainy*")
    assert parsed.core == ["zq", "silver hair"]
    assert parsed.mood == ["moody", "rainy"]
    assert parsed.plain == "zq, silver hair, red eyes, moody, rainy"
    assert [kind for _text, kind in parsed.segments] == ["core", None, "mood"]
    assert parsed.segments[0][0] == "zq, (silver hair:1.2)"


def test_template_output_is_structured():
    parsed = parse_structured("**a cat on a table**, high quality, detailed")
    assert parsed.core == ["a cat on a table"] and parsed.mood == []
    assert parsed.plain == "a cat on a table, high quality, detailed"


@pytest.mark.parametrize("prompt, needle, severity", [
    ("(red eyes:1.3", "never closed", "error"),
    ("(x:abc)", "not a number", "error"),
    ("red eyes)", "closes nothing", "error"),
    ("(x:)", "no weight", "error"),
    ("(a]", "closed by", "error"),
    ("(x:2.5)", "outside 0–2", "warning"),
    ("**open core, b", "never closed", "error"),
])
def test_markup_issues_hit(prompt, needle, severity):
    issues = markup_issues(prompt)
    assert len(issues) == 1, issues
    assert needle in issues[0].message and issues[0].severity == severity


@pytest.mark.parametrize("prompt", [MARKED, PLAIN, "(x:0)", "(x:2)", "[from], (to:1.1)", r"\(literal", "a:b, 16:9"])
def test_markup_issues_miss(prompt):
    assert markup_issues(prompt) == []


def test_tag_frequency_counts_stripped_lower_cased_tags_once_per_caption():
    counts = tag_frequency(["**Zq**, red, red", "zq, (blue:1.2)", "zq"])
    assert counts == {"zq": 3, "blue": 1, "red": 1}
    assert list(counts) == ["zq", "blue", "red"]  # most frequent first, then by name


def test_core_tags_split_join():
    assert core_tags(["**Zq, cat**, x", "y, **dog**"]) == {"zq", "cat", "dog"}
    assert split_tags(" a ,  b   c ,, ") == ["a", "b c"]
    assert join_tags(" , zq ,", "", "a cat, ", "**x, y**") == "zq, a cat, **x, y**"
