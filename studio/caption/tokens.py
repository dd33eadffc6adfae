"""Counting a caption's tokens the way the base model's text encoder will, to show what a long caption loses.

SD 1.x text encoders read 77 tokens: a start token, 75 for the caption and an end token. Anything after the 75th
caption token is cut off in training. Counting needs the model's own tokenizer; the SD 1.x CLIP tokenizer ships
with the package (``studio/models/sd15/tokenizer``), so an exact count is always at hand for SD 1.x models.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import studio
from studio.util.paths import repo_root

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

# The same folders as ``studio.models.clip_vocab.SHIPPED_TOKENIZER`` and ``studio.models.default_model_path()``,
# named here so that counting tokens does not import torch and diffusers through ``studio.models``.
SHIPPED_TOKENIZER = Path(studio.__file__).parent / "models" / "sd15" / "tokenizer"
TOY_WORLD_TOKENIZER = repo_root() / "assets" / "toy-world" / "tokenizer"
CLIP_WINDOW = 75
_ROUGH_TOKEN = re.compile(r"[^\W_]+|[^\w\s]|_", re.UNICODE)


class TokenizerError(ValueError):
    """The tokenizer the user pointed at cannot be read."""


@dataclass(frozen=True)
class TokenCounter:
    """Splits text into tokens with character spans; ``tokenizer`` None means a rough word/punctuation count.

    ``second``: a two-encoder model's (SDXL's) second tokenizer. Each encoder cuts a caption at its own 75th
    token, so spans come from whichever tokenizer splits the caption into more tokens.
    """

    tokenizer: object | None
    source: str
    second: object | None = None

    @property
    def exact(self) -> bool:
        return self.tokenizer is not None

    def spans(self, text: str) -> list[tuple[int, int]]:
        """(start, end) character span in ``text`` of every token, without the start/end tokens."""
        if self.tokenizer is None:
            return [match.span() for match in _ROUGH_TOKEN.finditer(text)]
        found = []
        for tokenizer in filter(None, (self.tokenizer, self.second)):
            encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
            found.append([tuple(span) for span in encoded["offset_mapping"]])
        return max(found, key=len)


def rough_counter() -> TokenCounter:
    """One token per word and per punctuation mark: CLIP splits rare words further, so real counts are higher."""
    return TokenCounter(None, "a rough count (one token per word or punctuation mark; real CLIP counts are higher)")


def counter_for(tokenizer: PreTrainedTokenizerBase | TokenCounter | None) -> TokenCounter:
    """A counter over a tokenizer object already loaded (a transformers tokenizer with offset mapping)."""
    if tokenizer is None:
        return rough_counter()
    if isinstance(tokenizer, TokenCounter):
        return tokenizer
    return TokenCounter(tokenizer, type(tokenizer).__name__)


def load_token_counter(model: str | Path | None = None) -> TokenCounter:
    """The tokenizer of ``model`` (a diffusers folder, a tokenizer folder, or an SD 1.x / SDXL single file); both
    tokenizers of an SDXL folder.

    Without ``model``: the shipped SD 1.x CLIP tokenizer, then the embedded toy-world model's, then a rough count.
    Raises :class:`TokenizerError` when ``model`` is given but holds no readable CLIP tokenizer.
    """
    if model:
        path = Path(model).expanduser()
        if path.is_file():
            return _load(SHIPPED_TOKENIZER, f"the CLIP tokenizer (standard for the single file {path.name}; SDXL's "
                                            "two tokenizers count the same)")
        for folder in (path / "tokenizer", path):
            if (folder / "vocab.json").is_file() or (folder / "tokenizer.json").is_file():
                counter = _load(folder, str(folder))
                second = path / "tokenizer_2"
                if folder != path and (second / "vocab.json").is_file():
                    both = f"both tokenizers of {path} (tokenizer, tokenizer_2)"
                    return TokenCounter(counter.tokenizer, both, _load(second, str(second)).tokenizer)
                return counter
        raise TokenizerError(f"{path} holds no CLIP tokenizer (no tokenizer/vocab.json or tokenizer.json); pass the "
                             "base model's diffusers folder, its tokenizer folder or its .safetensors file.")
    for folder, label in ((SHIPPED_TOKENIZER, "the SD 1.x CLIP tokenizer"),
                          (TOY_WORLD_TOKENIZER, "the toy-world model's tokenizer")):
        if (folder / "vocab.json").is_file():
            try:
                return _load(folder, label)
            except TokenizerError:
                continue
    return rough_counter()


def _load(folder: Path, label: str) -> TokenCounter:
    from transformers import CLIPTokenizer

    try:
        # Only counting here, never padding or truncating: a large limit keeps transformers from warning that a
        # long caption "will result in indexing errors" (the linter reports it better).
        tokenizer = CLIPTokenizer.from_pretrained(str(folder), model_max_length=1_000_000)
    except (OSError, ValueError, TypeError) as error:
        raise TokenizerError(f"{folder}: cannot read a CLIP tokenizer ({error}); pass the base model's folder.") from None
    return TokenCounter(tokenizer, label)
