"""The caption linter: what the tutorials teach about good prompts, checked row by row.

Each finding names the image, its metadata.csv line, the rule, and the words that triggered it. Errors are what
will visibly hurt a LoRA (empty captions, non-English text, a missing trigger word, broken weighting syntax);
warnings are what usually does (subjective words, inconsistent terms, duplicates, captions cut at 75 tokens).
"""
from __future__ import annotations

import os
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

from studio.caption.markup import markup_issues, split_tags, strip_markup
from studio.caption.tokens import CLIP_WINDOW, counter_for
from studio.data import CaptionRecord, read_metadata

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from studio.caption.tokens import TokenCounter

RULES = {
    "empty": "the caption is empty",
    "control_character": "an invisible control character such as NUL (U+0000)",
    "non_english": "text in another script than Latin (CLIP has few tokens for it)",
    "missing_keyword": "a required keyword (trigger word, style tag) is missing",
    "bad_weighting": "malformed (word:1.3) weighting or unclosed **/* markup",
    "too_long": "longer than the text encoder's 75-token window",
    "subjective": "subjective words with no visual meaning",
    "inconsistent_terms": "different words for the same thing across the set",
    "duplicate": "the same caption as another image",
    "csv": "a problem with metadata.csv itself",
    "left_out": "the picture cannot be read, or is dropped in the Dataset tab, so it is not captioned",
}
_RULE_ORDER = {rule: index for index, rule in enumerate(RULES)}

SUBJECTIVE_WORDS = frozenset(
    "beautiful cute cool amazing awesome nice pretty stunning gorgeous lovely wonderful fantastic incredible "
    "perfect epic breathtaking magnificent adorable attractive fabulous superb marvelous marvellous excellent "
    "great good charming delightful splendid majestic".split()
)
# "cool" also names a colour temperature: "cool tones" is a visual description, not praise.
_VISUAL_NEXT_WORDS = {"cool": frozenset("tone tones color colors colour colours light lighting palette hues blue "
                                        "white shadows".split())}
DEFAULT_SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("digital painting", "CG artwork", "digital art", "CG art", "digital illustration"),
    ("photo", "photograph"),
    ("watercolor", "watercolour"),
    ("gray", "grey"),
    ("anime style", "anime art"),
    ("3d render", "3d rendering", "CGI"),
    ("monochrome", "black and white", "grayscale", "greyscale"),
    ("t-shirt", "tshirt", "tee shirt"),
)
_SCRIPT_NAMES = {"CJK": "Chinese/Japanese characters", "HIRAGANA": "Japanese kana", "KATAKANA": "Japanese kana",
                 "HANGUL": "Korean", "PUNCTUATION": "full-width punctuation", "FULLWIDTH": "full-width letters"}


@dataclass(frozen=True)
class Finding:
    """One lint result: which image (and metadata.csv line), which rule, how bad, what to do, and the words."""

    filename: str
    line: int
    rule: str
    severity: str
    message: str
    words: tuple[str, ...] = ()

    def __str__(self) -> str:
        where = f"line {self.line}, {self.filename}" if self.line else self.filename
        return f"{where}: {self.severity} [{self.rule}] {self.message}"


def lint_captions(records: Sequence[CaptionRecord],
                  tokenizer: PreTrainedTokenizerBase | TokenCounter | None = None, *,
                  required_keywords: Iterable[str] = (), synonym_groups: Sequence[Sequence[str]] = DEFAULT_SYNONYMS,
                  max_tokens: int = CLIP_WINDOW) -> list[Finding]:
    """Check every caption of ``records`` (CaptionRecord rows); findings sorted by line, then rule.

    ``tokenizer``: the base model's tokenizer (or a ``TokenCounter``) for ``too_long``; None counts roughly.
    ``required_keywords``: words every caption must contain (trigger word, style tag), matched as whole words.
    ``synonym_groups``: groups of terms that mean the same thing; a set should use one term from each group.
    """
    counter = counter_for(tokenizer)
    keywords = [word.strip() for word in required_keywords if word.strip()]
    findings: list[Finding] = []
    for record in records:
        findings += _control_characters(record)
        plain = strip_markup(record.prompt)
        if not plain:
            findings.append(_finding(record, "empty", "error", "the caption is empty; describe the image "
                                     "(subject, attributes, scene, style) or remove the image and its row"))
            continue
        findings += _bad_weighting(record)
        findings += _non_english(record, plain)
        findings += _missing_keywords(record, plain, keywords)
        findings += _too_long(record, plain, counter, max_tokens)
        findings += _subjective(record, plain)
    findings += _inconsistent_terms(records, synonym_groups)
    findings += _duplicates(records)
    return sorted(findings, key=lambda f: (f.line, _RULE_ORDER.get(f.rule, 99), f.filename))


def lint_file(csv_path: str | os.PathLike, tokenizer: PreTrainedTokenizerBase | TokenCounter | None = None,
              **options: object) -> list[Finding]:
    """Lint a metadata.csv: :func:`lint_captions` plus the file's own problems and warnings (rule ``csv``).

    Raises ``studio.data.DatasetError`` when the file cannot be read at all (missing, not UTF-8, broken quotes).
    """
    table = read_metadata(csv_path)
    findings = lint_captions(table.records, tokenizer, **options)
    empty_lines = {f.line for f in findings if f.rule == "empty"}
    name = Path(csv_path).name
    for problem in table.problems:
        if problem.line in empty_lines and "is empty" in problem.message:
            continue  # already reported by the ``empty`` rule
        findings.append(Finding(name, problem.line or 0, "csv", "error", problem.message))
    for warning in table.warnings:
        findings.append(Finding(name, 0, "csv", "warning", warning.removeprefix(f"{table.path}: ")))
    return sorted(findings, key=lambda f: (f.line, _RULE_ORDER.get(f.rule, 99), f.filename))


def count_severities(findings: Iterable[Finding]) -> dict[str, int]:
    """``{"error": n, "warning": m}`` over ``findings``."""
    counts = {"error": 0, "warning": 0}
    for finding in findings:
        counts[finding.severity] = counts.get(finding.severity, 0) + 1
    return counts


def _finding(record: CaptionRecord, rule: str, severity: str, message: str, words=()) -> Finding:
    return Finding(record.filename, record.line, rule, severity, message, tuple(words))


def _quote(words) -> str:
    return ", ".join(f"'{word}'" for word in words)


def _phrase_pattern(phrase: str) -> re.Pattern:
    """``phrase`` as whole words, any case, any run of spaces between its words."""
    body = r"\s+".join(re.escape(part) for part in phrase.split())
    return re.compile(rf"(?<![\w-]){body}(?![\w-])", re.IGNORECASE)


def _bad_weighting(record: CaptionRecord) -> list[Finding]:
    return [_finding(record, "bad_weighting", issue.severity, issue.message, [issue.text])
            for issue in markup_issues(record.prompt)]


def _control_characters(record: CaptionRecord) -> list[Finding]:
    """Control characters other than tab and line breaks: invisible in editors, and NUL cuts text short in tools."""
    positions = [index for index, char in enumerate(record.prompt)
                 if unicodedata.category(char) == "Cc" and char not in "\t\n\r"]
    if not positions:
        return []
    codes = list(dict.fromkeys(f"U+{ord(record.prompt[index]):04X}" for index in positions))
    return [_finding(record, "control_character", "error", f"the caption contains the control character"
                     f"{'s' if len(codes) > 1 else ''} {', '.join(codes)} (first at character {positions[0] + 1}), "
                     "which editors do not show; retype the caption or delete the character", codes)]


def _subjective(record: CaptionRecord, plain: str) -> list[Finding]:
    found: list[str] = []
    for match in re.finditer(r"[A-Za-z]+", plain):
        word = match.group(0).lower()
        if word not in SUBJECTIVE_WORDS:
            continue
        following = re.match(r"\s+([A-Za-z]+)", plain[match.end():])
        if following and following.group(1).lower() in _VISUAL_NEXT_WORDS.get(word, ()):
            continue
        if word not in found:
            found.append(word)
    if not found:
        return []
    return [_finding(record, "subjective", "warning", f"{_quote(found)} say nothing the model can see; describe "
                     "what makes it so (e.g. 'long silver hair', 'big round eyes') or delete "
                     f"{'it' if len(found) == 1 else 'them'}", found)]


def _script(char: str) -> str | None:
    """The script of a character CLIP reads badly (non-Latin letters, full-width or CJK punctuation), else None."""
    if char.isascii():
        return None
    name = unicodedata.name(char, "")
    if name.startswith(("FULLWIDTH", "HALFWIDTH", "IDEOGRAPHIC")) or name.startswith("CJK SYMBOL"):
        return "FULLWIDTH" if unicodedata.category(char).startswith("L") else "PUNCTUATION"
    if unicodedata.category(char).startswith("L") and not name.startswith("LATIN"):
        return name.split()[0] if name else "UNKNOWN"
    return None


def _non_english(record: CaptionRecord, plain: str) -> list[Finding]:
    runs: list[str] = []
    scripts: list[str] = []
    current = ""
    for char in plain + " ":
        script = _script(char)
        if script:
            current += char
            label = _SCRIPT_NAMES.get(script, script.title())
            if label not in scripts:
                scripts.append(label)
        elif current:
            runs.append(current)
            current = ""
    if not runs:
        return []
    words = list(dict.fromkeys(runs))
    advice = ("use the ASCII comma ',' between tags" if scripts == [_SCRIPT_NAMES["PUNCTUATION"]]
              else "write the caption in English")
    return [_finding(record, "non_english", "error", f"{_quote(words[:6])} ({', '.join(scripts)}): CLIP's tokenizer "
                     f"has almost no tokens for this and the LoRA learns little from it; {advice}", words)]


def _missing_keywords(record: CaptionRecord, plain: str, keywords: list[str]) -> list[Finding]:
    missing = [word for word in keywords if not _phrase_pattern(word).search(plain)]
    if not missing:
        return []
    return [_finding(record, "missing_keyword", "error", f"{_quote(missing)} missing; every caption of the set "
                     "should contain it so the LoRA ties what it learns to it (add it with a prefix edit)", missing)]


def _too_long(record: CaptionRecord, plain: str, counter, max_tokens: int) -> list[Finding]:
    spans = counter.spans(plain)
    if len(spans) <= max_tokens:
        return []
    cut_at = spans[max_tokens][0]
    while cut_at > 0 and plain[cut_at - 1] not in " ,":
        cut_at -= 1  # show the whole word the window ends in
    cut = plain[cut_at:].strip(" ,")
    rough = "" if counter.exact else " (rough count)"
    shown = cut if len(cut) <= 80 else cut[:77].rstrip() + "…"
    return [_finding(record, "too_long", "warning", f"{len(spans)} tokens{rough}; the text encoder reads "
                     f"{max_tokens} and training never sees the rest: '{shown}'. Shorten it or move the important "
                     "tags to the front", split_tags(cut) or [cut])]


def _inconsistent_terms(records, synonym_groups) -> list[Finding]:
    findings: list[Finding] = []
    plains = [strip_markup(record.prompt) for record in records]
    for group in synonym_groups:
        terms = [term for term in group if term.strip()]
        patterns = sorted(((term, _phrase_pattern(term)) for term in terms), key=lambda item: -len(item[0]))
        used: list[set[str]] = []
        for plain in plains:
            found = set()
            for term, pattern in patterns:  # longest first, masked, so "digital art" is not seen in "digital artwork"
                if pattern.search(plain):
                    found.add(term)
                    plain = pattern.sub(lambda m: " " * len(m.group(0)), plain)
            used.append(found)
        counts = {term: sum(term in found for found in used) for term in terms}
        if sum(1 for count in counts.values() if count) < 2:
            continue
        preferred = max(terms, key=lambda term: (counts[term], -terms.index(term)))
        for record, found in zip(records, used):
            for term in sorted(found - {preferred}, key=terms.index):
                others = counts[preferred] - (preferred in found)
                findings.append(_finding(record, "inconsistent_terms", "warning", f"'{term}' here, '{preferred}' in "
                                         f"{others} other caption(s): use one term for the same thing across the "
                                         f"set (e.g. '{preferred}')", [term, preferred]))
    return findings


def _duplicates(records) -> list[Finding]:
    first: dict[str, CaptionRecord] = {}
    findings: list[Finding] = []
    for record in records:
        key = strip_markup(record.prompt).lower()
        if not key:
            continue
        if key in first:
            earlier = first[key]
            where = f"{earlier.filename} (line {earlier.line})" if earlier.line else earlier.filename
            findings.append(_finding(record, "duplicate", "warning", f"the same caption as {where}; the model cannot "
                                     "tell these images apart: describe what differs", [record.prompt]))
        else:
            first[key] = record
    return findings
