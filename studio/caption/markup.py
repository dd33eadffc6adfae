"""Structured prompts: ``**core tags**``, ``*atmosphere*`` and ``(word:1.3)`` weighting, and what training sees.

Users mark the tags that define the LoRA in bold (the template ``**{caption}**, high quality, detailed``) and the
mood in italics; WebUI-style weighting ``(red eyes:1.3)``, ``((word))`` and ``[word]`` may appear too. None of it
means anything to a text encoder during training, so :func:`strip_markup` removes it and keeps the words, with
commas normalised to ``", "``: the tokens of a marked-up caption and of the same caption written plainly are the
same. Escaped brackets ``\\(`` ``\\)`` stay as literal parentheses.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Iterable

_EMPHASIS = re.compile(r"\*\*(.+?)\*\*|\*([^*]+?)\*", re.DOTALL)
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_SPACES = re.compile(r"\s+")
_EDGES = re.compile(r"^[\s,]+|[\s,]+$")
_OPENERS = {")": "(", "]": "["}
WEIGHT_RANGE = (0.0, 2.0)
SENTENCE_WORDS = 4  # a comma-separated part of this many words or more is read as a sentence, not a tag
_ARTICLES = frozenset({"a", "an", "the"})
FUNCTION_WORDS = _ARTICLES | frozenset(
    "of on in at to with without and or but for from by over under near into onto behind beside above below its "
    "his her their this that these those is are".split())
_WORD = re.compile(r"[\w'-]+")
_SENTENCE_END = re.compile(r"[.;!?](?:\s|$)")


@dataclass(frozen=True)
class MarkupIssue:
    """A piece of malformed markup: the text as written, what is wrong, and how bad (``error`` / ``warning``)."""

    text: str
    message: str
    severity: str = "error"


@dataclass(frozen=True)
class StructuredPrompt:
    """A caption split by its markup.

    ``core`` and ``mood`` are the tags inside ``**…**`` and ``*…*`` (weighting removed); ``plain`` is the caption
    as training sees it; ``segments`` is the caption in order as ``(text, kind)`` pairs with the asterisks removed
    and kind ``"core"``, ``"mood"`` or ``None`` -- what a UI highlights.
    """

    core: list[str]
    mood: list[str]
    plain: str
    segments: list[tuple[str, str | None]] = field(default_factory=list)


def split_tags(text: str) -> list[str]:
    """Comma-separated tags, trimmed, inner whitespace collapsed, empty ones dropped."""
    return [tag for tag in (_SPACES.sub(" ", part).strip() for part in text.split(",")) if tag]


def join_tags(*parts: str) -> str:
    """Join caption parts with ``", "``: commas and spaces at each part's edges trimmed, empty parts skipped."""
    return ", ".join(cleaned for part in parts if (cleaned := _EDGES.sub("", part)))


def strip_markup(prompt: str) -> str:
    """The caption for the text encoder: no emphasis asterisks, no weighting brackets or weights, tidy commas."""
    return ", ".join(split_tags(_strip_weighting(prompt)[0].replace("*", "")))


def parse_structured(prompt: str) -> StructuredPrompt:
    """Core tags (``**…**``), mood tags (``*…*``) and the plain caption of ``prompt``."""
    core: list[str] = []
    mood: list[str] = []
    segments: list[tuple[str, str | None]] = []
    position = 0
    for match in _EMPHASIS.finditer(prompt):
        if match.start() > position:
            segments.append((prompt[position:match.start()], None))
        inner, kind = (match.group(1), "core") if match.group(1) is not None else (match.group(2), "mood")
        segments.append((inner, kind))
        (core if kind == "core" else mood).extend(split_tags(_strip_weighting(inner)[0].replace("*", "")))
        position = match.end()
    if position < len(prompt):
        segments.append((prompt[position:], None))
    return StructuredPrompt(core=core, mood=mood, plain=strip_markup(prompt), segments=segments)


def markup_issues(prompt: str) -> list[MarkupIssue]:
    """Unbalanced or mismatched brackets, weights that are not numbers or lie outside 0–2, unclosed ``*``/``**``."""
    issues = _strip_weighting(prompt)[1]
    leftover = _EMPHASIS.sub(lambda m: " " * len(m.group(0)), prompt)
    star = leftover.find("*")
    if star >= 0:
        marker = "**" if leftover.startswith("**", star) else "*"
        issues.append(MarkupIssue(_snippet(prompt, star), f"'{marker}' at character {star + 1} is never closed; "
                                  f"write {marker}core tags{marker} with a closing {marker} or remove it"))
    return issues


def tag_frequency(captions: Iterable[str]) -> dict[str, int]:
    """How often each tag appears over ``captions`` (strings), most frequent first.

    Tags are the comma-separated parts of each caption with markup stripped and lower-cased (the CLIP tokenizer
    lower-cases, so ``Red eyes`` and ``red eyes`` are one tag to the model); a tag counts once per caption. This
    is kohya's ``ss_tag_frequency`` for one dataset folder: ``{folder_name: tag_frequency(captions)}``.
    """
    counts: dict[str, int] = {}
    for caption in captions:
        for tag in dict.fromkeys(tag.lower() for tag in split_tags(strip_markup(caption))):
            counts[tag] = counts.get(tag, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def keyword_frequency(captions: Iterable[str]) -> dict[str, int]:
    """How often each keyword appears over ``captions``, most frequent first (counted once per caption).

    Tagged captions (``zq star, red eyes, long silver hair``) keep each comma-separated tag as one keyword, as
    :func:`tag_frequency` does. A part that reads as a sentence (four or more words, or one that starts with an
    article) gives its words instead, without articles, prepositions and conjunctions: ``a red zq star on a gray
    background`` counts red, zq, star, gray and background, so sentence captions show which words they share.
    """
    counts: dict[str, int] = {}
    for caption in captions:
        found = [word for tag in split_tags(_SENTENCE_END.sub(",", strip_markup(caption)))
                 for word in _keywords(tag.lower())]
        for keyword in dict.fromkeys(found):
            counts[keyword] = counts.get(keyword, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _keywords(part: str) -> list[str]:
    words = _WORD.findall(part)
    if len(words) < SENTENCE_WORDS and (not words or words[0] not in _ARTICLES):
        return [part] if words else []
    return [word for word in words if word not in FUNCTION_WORDS]


def core_tags(captions: Iterable[str]) -> set[str]:
    """Every tag marked ``**core**`` in any of ``captions``, lower-cased."""
    return {tag.lower() for caption in captions for tag in parse_structured(caption).core}


def _strip_weighting(text: str) -> tuple[str, list[MarkupIssue]]:
    """Remove weighting brackets and ``:weight`` suffixes; collect what is malformed on the way."""
    out: list[str] = []
    stack: list[tuple[str, int, int]] = []  # opener, where its content starts in ``out``, position in ``text``
    issues: list[MarkupIssue] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char == "\\" and text[index + 1:index + 2] in ("(", ")", "[", "]"):
            out.append(text[index + 1])
            index += 2
            continue
        if char in "([":
            stack.append((char, len(out), index))
        elif char in ")]":
            if not stack:
                issues.append(MarkupIssue(_snippet(text, index), f"'{char}' at character {index + 1} closes nothing; "
                                          f"remove it or add the matching '{_OPENERS[char]}'"))
            else:
                opener, start, where = stack.pop()
                if opener != _OPENERS[char]:
                    issues.append(MarkupIssue(text[where:index + 1], f"'{opener}' at character {where + 1} is "
                                              f"closed by '{char}'; use matching brackets"))
                if opener == "(":
                    _drop_weight(out, start, text[where:index + 1], issues)
        else:
            out.append(char)
        index += 1
    for opener, _start, where in stack:
        closer = ")" if opener == "(" else "]"
        issues.append(MarkupIssue(_snippet(text, where), f"'{opener}' at character {where + 1} is never closed; "
                                  f"add '{closer}' after the weighted words"))
    return "".join(out), issues


def _drop_weight(out: list[str], start: int, written: str, issues: list[MarkupIssue]) -> None:
    """Remove a trailing ``:weight`` from the bracket content ``out[start:]`` and check the weight."""
    inner = "".join(out[start:])
    colon = inner.rfind(":")
    if colon < 0:
        return
    value = inner[colon + 1:].strip()
    if _NUMBER.fullmatch(value):
        weight = float(value)
        low, high = WEIGHT_RANGE
        if not low <= weight <= high:
            issues.append(MarkupIssue(written, f"weight {value} in {written} is outside {low:g}–{high:g}; "
                                      "weights far from 1 distort the image (1.1–1.5 is usual)", "warning"))
        del out[start + colon:]
    elif not value:
        issues.append(MarkupIssue(written, f"{written} has ':' but no weight; write a number like (word:1.2) "
                                  "or remove the ':'"))
    else:
        issues.append(MarkupIssue(written, f"the weight '{value}' in {written} is not a number; write it like "
                                  "(red eyes:1.3)"))


def _snippet(text: str, index: int, width: int = 24) -> str:
    """The text from ``index`` up to the next comma (at most ``width`` characters), to quote in a message."""
    end = text.find(",", index)
    end = len(text) if end < 0 else end
    return text[index:min(end, index + width)].strip()
