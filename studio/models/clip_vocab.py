"""Rebuild the shipped SD 1.x tokenizer files (``sd15/tokenizer``) from CLIP's own BPE merge list.

    python -m studio.models.clip_vocab path/to/bpe_simple_vocab_16e6.txt.gz

The merge list ships inside the ``open_clip_torch`` wheel on PyPI (``open_clip/bpe_simple_vocab_16e6.txt.gz``).
The vocabulary is built exactly as CLIP's ``SimpleTokenizer`` builds it: the 256 byte characters, the same with
``</w>``, one token per merge (the first 49152 - 256 - 2 merges), then ``<|startoftext|>`` and
``<|endoftext|>`` -- 49408 entries, the vocabulary of every SD 1.x text encoder.
"""
from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path

from studio.toyworld.vocab import bytes_to_unicode

VOCAB_SIZE = 49408
SHIPPED_TOKENIZER = Path(__file__).parent / "sd15" / "tokenizer"


def build_clip_vocabulary(bpe_gz: Path) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Return CLIP's (vocab, merges) from the gzipped merge list."""
    lines = gzip.open(bpe_gz).read().decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    tokens = list(bytes_to_unicode().values())
    tokens = tokens + [t + "</w>" for t in tokens]
    tokens += ["".join(pair) for pair in merges]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    if len(tokens) != VOCAB_SIZE:
        raise ValueError(
            f"{bpe_gz} gave {len(tokens)} tokens instead of {VOCAB_SIZE}: pass CLIP's bpe_simple_vocab_16e6.txt.gz."
        )
    return {token: index for index, token in enumerate(tokens)}, merges


def write_tokenizer_folder(bpe_gz: Path, folder: Path = SHIPPED_TOKENIZER) -> None:
    """Write ``vocab.json`` and ``merges.txt`` in the Hugging Face CLIPTokenizer layout."""
    vocab, merges = build_clip_vocabulary(bpe_gz)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merge_lines = "".join(f"{a} {b}\n" for a, b in merges)
    (folder / "merges.txt").write_text("#version: 0.2\n" + merge_lines, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bpe_gz", type=Path)
    parser.add_argument("--out", type=Path, default=SHIPPED_TOKENIZER)
    args = parser.parse_args(argv)
    write_tokenizer_folder(args.bpe_gz, args.out)


if __name__ == "__main__":
    main()
