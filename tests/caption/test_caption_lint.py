"""The caption linter: every rule has a hit and a miss; findings name the image, its line and the words."""
from __future__ import annotations

import pytest

from studio.caption import Finding, lint_captions, lint_file, load_token_counter
from studio.caption.tokens import rough_counter
from studio.data import CaptionRecord

GOOD = "zq, anime girl, long silver hair, red eyes, rainy street at night, digital painting"


def _records(*prompts):
    return [CaptionRecord(f"img{i:02d}.png", prompt, i + 2) for i, prompt in enumerate(prompts)]


def _by_rule(findings, rule):
    return [finding for finding in findings if finding.rule == rule]


@pytest.fixture(scope="module")
def clip_counter():
    return load_token_counter()


def test_clean_set_has_no_findings(clip_counter):
    records = _records(GOOD, GOOD.replace("red eyes", "blue eyes"), "**zq**, a black cat, sofa, digital painting")
    assert lint_captions(records, clip_counter, required_keywords=["zq"]) == []


def test_subjective_hit_names_words_and_file():
    findings = _by_rule(lint_captions(_records(GOOD, "zq, a Beautiful, cute girl, stunning view")), "subjective")
    assert len(findings) == 1
    finding = findings[0]
    assert (finding.filename, finding.line, finding.severity) == ("img01.png", 3, "warning")
    assert finding.words == ("beautiful", "cute", "stunning")
    assert "img01.png" in str(finding) and "line 3" in str(finding) and "'cute'" in str(finding)


def test_subjective_miss_cool_tones_and_substrings():
    records = _records("cool tones, prettyboy logo, nicely lit, coolant tank", GOOD)
    assert _by_rule(lint_captions(records), "subjective") == []


@pytest.mark.parametrize("prompt, word", [
    ("女孩, red eyes", "女孩"),
    ("a girl，red eyes", "，"),
    ("кошка on a sofa", "кошка"),
    ("صورة, a cat", "صورة"),
    ("さくら, tree", "さくら"),
])
def test_non_english_hit(prompt, word):
    findings = _by_rule(lint_captions(_records(prompt)), "non_english")
    assert len(findings) == 1 and findings[0].severity == "error"
    assert word in findings[0].words and word in findings[0].message


def test_non_english_miss_accented_latin_and_symbols():
    assert _by_rule(lint_captions(_records("café terrace, naïve art, 3/4 view, 50% grey, © logo")), "non_english") == []


def test_too_long_hit_shows_what_is_cut(clip_counter):
    tags = [f"{colour} stripe" for colour in ["red", "blue", "green", "black", "white", "pink", "gray", "brown"]] * 5
    prompt = "**" + ", ".join(tags[:20]) + "**, " + ", ".join(tags[20:]) + ", final tag"
    findings = _by_rule(lint_captions(_records(prompt), clip_counter), "too_long")
    assert len(findings) == 1
    words = findings[0].words
    assert words[-1] == "final tag" and "red stripe" not in words[:1]  # the end is cut, the start kept
    assert f"'{words[0]}, {words[1]}" in findings[0].message
    count = len(clip_counter.spans(prompt.replace("**", "")))
    assert f"{count} tokens" in findings[0].message and "(rough count)" not in findings[0].message


def test_too_long_counts_with_the_given_tokenizer(tmp_path):
    from studio.toyworld.vocab import build_clip_tokenizer

    toy = build_clip_tokenizer(tmp_path)  # words outside its small vocabulary split into many tokens
    prompt = "xylophone quasar zephyr, " * 6  # 96 toy tokens, 24 words and commas
    assert _by_rule(lint_captions(_records(prompt), toy), "too_long")
    assert not _by_rule(lint_captions(_records(prompt), rough_counter()), "too_long")


def test_too_long_miss_at_75_tokens(clip_counter):
    prompt = " ".join(["cat"] * 75)
    assert len(clip_counter.spans(prompt)) == 75
    assert _by_rule(lint_captions(_records(prompt), clip_counter), "too_long") == []
    assert _by_rule(lint_captions(_records(prompt + " dog"), clip_counter), "too_long")[0].words == ("dog",)


def test_rough_count_is_labelled():
    findings = _by_rule(lint_captions(_records(" ".join(["cat"] * 80))), "too_long")
    assert findings and "(rough count)" in findings[0].message


def test_inconsistent_terms_hit_flags_the_minority():
    records = _records("a cat, digital painting", "a dog, digital painting", "a cow, CG artwork")
    findings = _by_rule(lint_captions(records), "inconsistent_terms")
    assert [(f.filename, f.words) for f in findings] == [("img02.png", ("CG artwork", "digital painting"))]


def test_inconsistent_terms_miss_and_custom_groups():
    records = _records("a cat, digital artwork", "a dog, digital art", "a cow, digital art")
    assert _by_rule(lint_captions(records), "inconsistent_terms") == []  # "digital art" is not in "digital artwork"
    records = _records("kitten, sofa", "cat, sofa", "cat, bed")
    assert _by_rule(lint_captions(records), "inconsistent_terms") == []
    custom = _by_rule(lint_captions(records, synonym_groups=[("cat", "kitten")]), "inconsistent_terms")
    assert [(f.filename, f.words) for f in custom] == [("img00.png", ("kitten", "cat"))]


def test_missing_keyword_hit_and_miss():
    records = _records("**ZQ style**, a cat", "a dog, zq", "a cow, zqx style")
    findings = _by_rule(lint_captions(records, required_keywords=["zq", "style"]), "missing_keyword")
    assert [(f.filename, f.words, f.severity) for f in findings] == [
        ("img01.png", ("style",), "error"), ("img02.png", ("zq",), "error")]


def test_empty_hit_and_miss():
    findings = lint_captions(_records("", "**  **", "a cat"))
    assert [(f.filename, f.rule) for f in findings] == [("img00.png", "empty"), ("img01.png", "empty")]


def test_duplicate_hit_names_the_first_and_ignores_markup():
    findings = _by_rule(lint_captions(_records("a red cat", "a blue cat", "**A red cat**")), "duplicate")
    assert [f.filename for f in findings] == ["img02.png"] and "img00.png (line 2)" in findings[0].message


def test_duplicate_miss():
    assert _by_rule(lint_captions(_records("a red cat", "a red cat, sofa")), "duplicate") == []


def test_bad_weighting_hit_and_miss():
    findings = _by_rule(lint_captions(_records("(red eyes:1.3, cat", "(x:abc)", "(x:3)", "(ok:1.2), [fine]")),
                        "bad_weighting")
    assert [(f.filename, f.severity, f.words) for f in findings] == [
        ("img00.png", "error", ("(red eyes:1.3",)), ("img01.png", "error", ("(x:abc)",)),
        ("img02.png", "warning", ("(x:3)",))]


def test_lint_file_reads_csv_quirks_and_reports_file_problems(tmp_path):
    csv_path = tmp_path / "metadata.csv"
    text = '\ufeffimg1.png,"a cute cat, sofa"\r\nimg2.png,\r\nimg1.png,"a dog, grass"\r\nnotes.txt,a file\r\n'
    csv_path.write_bytes(text.encode("utf-8"))
    findings = lint_file(csv_path)
    rules = [(f.line, f.rule) for f in findings]
    assert (1, "subjective") in rules and (2, "empty") in rules
    assert (3, "csv") in rules and (4, "csv") in rules  # listed again; not an image type
    assert sum(1 for line, _ in rules if line == 2) == 1  # the empty caption is reported once
    assert all(isinstance(f, Finding) for f in findings)


@pytest.mark.parametrize("toy_slot", ["tokenizer", "tokenizer_2"])
def test_too_long_counts_with_both_tokenizers_of_an_sdxl_folder(tmp_path, toy_slot):
    """A caption cut by either of SDXL's encoders is too long, whichever of the two tokenizers splits it more."""
    import shutil

    from studio.caption.tokens import SHIPPED_TOKENIZER
    from studio.toyworld.vocab import build_clip_tokenizer

    model = tmp_path / "sdxl"
    other = "tokenizer_2" if toy_slot == "tokenizer" else "tokenizer"
    build_clip_tokenizer(model / toy_slot)
    shutil.copytree(SHIPPED_TOKENIZER, model / other)
    counter = load_token_counter(model)
    assert "both tokenizers" in counter.source
    prompt = "xylophone quasar zephyr, " * 6  # 96 toy tokens; 24 for CLIP's own vocabulary
    assert _by_rule(lint_captions(_records(prompt), counter), "too_long")
    assert not _by_rule(lint_captions(_records(prompt), load_token_counter(model / other)), "too_long")
