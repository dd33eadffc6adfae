"""Where a LoRA's trigger word goes in a prompt: where its training captions had it.

A LoRA learns its trigger in the place its captions put it. The demo's captions say "a red zq star on a white
background", so "a blue star on a black background" must become "a blue zq star on a black background", not
"zq, a blue star on a black background" (a prompt the LoRA never saw, which draws no star).

``learn_placement`` reads the captions that hold the trigger and takes the majority of: at the start (with the
captions' separator, "zq, a photo" or "zq a photo"), right before the same word (the class word, "zq star"), or
at the end. The captions come from the run's training data (its ``config.yaml``), else from the tag list that
kohya-style metadata keeps inside the LoRA file; with neither, the trigger goes at the start.
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from studio.util.paths import repo_root

from .prompts import LORA_TAG, tidy, trigger_pattern

START, BEFORE, END = "start", "before", "end"
_WORD_AFTER = re.compile(r"\s*([^\W\d_][\w-]*)")


@dataclass(frozen=True)
class TriggerPlacement:
    """Where the trigger goes: ``where`` is START, BEFORE ``word`` or END; ``votes`` of ``seen`` captions agree.

    ``separator`` joins a leading trigger to the prompt (or the prompt to a trailing one) as the captions did.
    ``source`` names the captions it was learned from ("" when nothing was learned).
    """

    where: str = START
    word: str = ""
    separator: str = ", "
    votes: int = 0
    seen: int = 0
    source: str = ""

    def insert(self, prompt: str, trigger: str) -> str:
        """``prompt`` with ``trigger`` added where the captions had it (the prompt as written when it holds it)."""
        trigger, prompt = trigger.strip(), prompt.strip()
        if not trigger or trigger_pattern(trigger).search(prompt):
            return prompt
        if self.where == BEFORE:
            placed = _before_word(prompt, trigger, self.word)
            if placed is not None:
                return placed
        words = trigger.split()
        if len(words) > 1:  # "zq star" into "a blue star": the trigger's own last word is the class word
            placed = _before_word(prompt, " ".join(words[:-1]), words[-1])
            if placed is not None:
                return placed
        if self.where == END:
            return tidy(f"{prompt}{self.separator}{trigger}")
        return tidy(f"{trigger}{self.separator}{prompt}")

    def describe(self, trigger: str) -> str:
        """One sentence for the report: where the trigger goes and why."""
        place = {START: "at the start of each prompt", BEFORE: f"right before \"{self.word}\"",
                 END: "at the end of each prompt"}[self.where]
        if not self.seen:
            return f"The trigger \"{trigger}\" goes {place} (no training captions were found to learn from)."
        fallback = (f"; prompts without \"{self.word}\" get it at the start" if self.where == BEFORE else "")
        return (f"The trigger \"{trigger}\" goes {place}, as in {self.votes} of the {self.seen} training captions "
                f"that hold it ({self.source}){fallback}.")


def _before_word(prompt: str, trigger: str, word: str) -> str | None:
    """``trigger`` put before the first ``word`` of the prompt outside its <lora:…> tags; None without one."""
    tags = [match.span() for match in LORA_TAG.finditer(prompt)]
    for match in re.finditer(r"(?<!\w)" + re.escape(word) + r"(?!\w)", prompt, re.IGNORECASE):
        if not any(start <= match.start() < end for start, end in tags):
            return tidy(f"{prompt[:match.start()]}{trigger} {prompt[match.start():]}")
    return None


def _vote(caption: str, pattern: re.Pattern) -> tuple | None:
    """(where, word, separator) of the trigger in one caption, or None when the caption does not hold it."""
    match = pattern.search(caption)
    if match is None:
        return None
    before, after = caption[:match.start()].strip(" \t,"), caption[match.end():]
    if not before:
        return START, "", ", " if after.lstrip(" \t").startswith(",") else " "
    following = _WORD_AFTER.match(after)
    if following is None or not after.strip(" \t,.;"):
        return END, "", ", " if caption[:match.start()].rstrip(" \t").endswith(",") else " "
    return BEFORE, following.group(1).lower(), ", "


def learn_placement(captions: Iterable[str], trigger: str, source: str = "") -> TriggerPlacement:
    """The placement most ``captions`` holding ``trigger`` agree on (the start when none holds it), with the
    separator most of those captions use."""
    if not trigger.strip():
        return TriggerPlacement()
    pattern = trigger_pattern(trigger)
    votes = [vote for vote in (_vote(str(c), pattern) for c in captions) if vote is not None]
    if not votes:
        return TriggerPlacement()
    places = Counter((where, word) for where, word, _ in votes)
    (where, word), count = max(places.items(), key=lambda item: (item[1], item[0][0] == START))
    separator = Counter(sep for w, o, sep in votes if (w, o) == (where, word)).most_common(1)[0][0]
    return TriggerPlacement(where, word, separator, count, len(votes), source)


def _existing(path_text: str) -> Path | None:
    """A path from a run's config: as written (absolute or from here), else from the studio's folder."""
    path = Path(path_text).expanduser()
    for candidate in (path,) if path.is_absolute() else (path, repo_root() / path):
        if candidate.is_file():
            return candidate
    return None


def run_captions(run_dir: Path | None) -> tuple[list[str], str]:
    """(captions, the metadata.csv they came from) of a run's training data; ([], "") when they cannot be read."""
    from studio.config import ConfigError, load_config
    from studio.data import DatasetError, read_metadata

    from studio.train.run_folder import RunFolder

    config_file = RunFolder(run_dir).config_file if run_dir is not None else None
    if config_file is None or not config_file.is_file():
        return [], ""
    try:
        csv_text = load_config(config_file).resolved_metadata_path()
        csv_path = _existing(csv_text) if csv_text else None
        if csv_path is None:
            return [], ""
        return [r.prompt for r in read_metadata(csv_path).records if r.prompt.strip()], str(csv_path)
    except (ConfigError, DatasetError, OSError, UnicodeError):
        return [], ""


def lora_captions(lora_path: Path | None) -> tuple[list[str], str]:
    """(tags, "the LoRA's tag list") from kohya's ``ss_tag_frequency`` inside a LoRA file, each once per use."""
    import json

    from safetensors import safe_open

    if lora_path is None:
        return [], ""
    try:
        with safe_open(str(lora_path), framework="pt") as handle:
            frequency = json.loads((handle.metadata() or {}).get("ss_tag_frequency", "{}"))
        tags = [tag for folder in frequency.values() for tag, count in folder.items()
                for _ in range(min(int(count), 1000))]
    except (OSError, ValueError, TypeError, AttributeError, json.JSONDecodeError):
        return [], ""
    return tags, f"the tag list inside {Path(lora_path).name}"


def placement_for(trigger: str, run_dir: Path | None, lora_path: Path | None) -> TriggerPlacement:
    """Learned from the run's training captions, else from the LoRA file's tag list."""
    if not trigger.strip():
        return TriggerPlacement()
    for captions, source in (run_captions(run_dir), lora_captions(lora_path)):
        placement = learn_placement(captions, trigger, source)
        if placement.seen:
            return placement
    return TriggerPlacement()
