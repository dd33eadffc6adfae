"""A CLIP BPE vocabulary we write ourselves, in which every word of the toy world is one token.

CLIP's tokenizer works on byte-level characters and merges pairs by rank. Merges built naively, one word at a
time, can still split a word (an earlier, higher-ranked merge from another word wins a pair first), so for every
word we replay BPE with the merges so far and append the merges it still needs until the word is a single token.
Words outside the list still tokenize, character by character, as CLIP does with rare words.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from .world import ALL_SHAPES, BACKGROUNDS, COLOURS

if TYPE_CHECKING:
    from transformers import CLIPTokenizer

WORLD_WORDS = (
    ["a", "an", "the", "on", "in", "of", "with", "and", "background", "style", "shape", "zq", "striped", "stripes"]
    + list(COLOURS)
    + list(BACKGROUNDS)
    + list(ALL_SHAPES)
)
# Words users type around the toy world's own (templates, linter examples): single tokens too, so that token
# counts are close to what real CLIP reports for plain English.
COMMON_WORDS = (
    "high quality detailed photo picture image painting drawing art artwork digital cg sharp focus simple flat "
    "small big large tiny huge centered center left right top bottom bright dark light colour color colorful "
    "beautiful cute cool amazing awesome nice pretty stunning gorgeous best masterpiece lighting soft hard "
    "is are at by for to from this that one two three single plain solid pattern outline icon logo "
    "girl boy man woman cat dog house tree sky city street night day rain neon anime watercolor ink cyberpunk"
).split()

START, END = "<|startoftext|>", "<|endoftext|>"


@lru_cache(maxsize=1)
def bytes_to_unicode() -> dict[int, str]:
    """CLIP/GPT-2's reversible map from bytes to printable unicode characters."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars)))


def _word_symbols(word: str) -> list[str]:
    byte_chars = bytes_to_unicode()
    symbols = [byte_chars[b] for b in word.encode("utf-8")]
    symbols[-1] += "</w>"
    return symbols


def _apply_bpe(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """Standard BPE: merge the lowest-ranked adjacent pair until no pair has a rank."""
    while len(symbols) > 1:
        pairs = [(ranks.get((a, b), None), i) for i, (a, b) in enumerate(zip(symbols, symbols[1:]))]
        ranked = [(r, i) for r, i in pairs if r is not None]
        if not ranked:
            break
        _, i = min(ranked)
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2 :]
    return symbols


def build_vocabulary(words: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return (vocab, merges) in which each of ``words`` is a single ``word</w>`` token."""
    base = list(bytes_to_unicode().values())
    tokens = base + [c + "</w>" for c in base]
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in dict.fromkeys(w.lower() for w in words):
        symbols = _apply_bpe(_word_symbols(word), ranks)
        while len(symbols) > 1:
            pair = (symbols[0], symbols[1])
            ranks[pair] = len(merges)
            merges.append(pair)
            tokens.append(pair[0] + pair[1])
            symbols = _apply_bpe(_word_symbols(word), ranks)
    tokens = list(dict.fromkeys(tokens)) + [START, END]
    return {tok: i for i, tok in enumerate(tokens)}, merges


def write_tokenizer_files(folder: Path, words: list[str] | None = None) -> tuple[Path, Path]:
    """Write ``vocab.json`` and ``merges.txt`` (CLIP's format) into ``folder``."""
    vocab, merges = build_vocabulary(words or WORLD_WORDS + COMMON_WORDS)
    folder.mkdir(parents=True, exist_ok=True)
    vocab_path, merges_path = folder / "vocab.json", folder / "merges.txt"
    vocab_path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_path.write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return vocab_path, merges_path


def build_clip_tokenizer(folder: Path, model_max_length: int = 77) -> CLIPTokenizer:
    """A ``CLIPTokenizer`` over our vocabulary. ``model_max_length`` is passed explicitly: a tokenizer loaded from
    only ``vocab.json`` + ``merges.txt`` gets 1e30, and the pipeline would pad every prompt to that length."""
    from transformers import CLIPTokenizer

    write_tokenizer_files(folder)
    # transformers 5 ignores ``vocab_file=`` keywords; loading the folder reads both files.
    return CLIPTokenizer.from_pretrained(str(folder), model_max_length=model_max_length, pad_token=END)


def build_t5_tokenizer(folder: Path, model_max_length: int = 32):
    """A T5 tokenizer (SentencePiece-style unigram with ``▁`` word marks, ``</s>`` appended, ``<pad>`` 0) over the
    toy world's words, built offline: every world word is one token, other text falls back to characters."""
    import string

    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    words = list(dict.fromkeys(w.lower() for w in WORLD_WORDS + COMMON_WORDS))
    chars = list(string.ascii_letters + string.digits + string.punctuation)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *[("▁" + w, -1.0) for w in words], ("▁", -3.0),
              *[("▁" + c, -4.0) for c in chars], *[(c, -5.0) for c in chars]]
    vocab = list({piece: (piece, score) for piece, score in reversed(pieces)}.values())[::-1]
    backend = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", 1)])
    tokenizer = T5TokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                extra_ids=0, model_max_length=model_max_length)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    return T5TokenizerFast.from_pretrained(str(folder))
