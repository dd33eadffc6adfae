"""WebUI prompt syntax: ``<lora:name:0.7>`` tags, and prompts with and without a trigger word.

``<lora:name>`` means weight 1; ``<lora:name:0.7>`` weight 0.7 on the UNet and the text encoder;
``<lora:name:0.4:0.8>`` 0.4 on the text encoder and 0.8 on the UNet (A1111's ``te`` and ``unet`` multipliers).
The same name twice adds its weights, as the WebUI does.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .spec import EvalError

if TYPE_CHECKING:
    from .trigger import TriggerPlacement

LORA_TAG = re.compile(r"<lora:([^<>]*)>", re.IGNORECASE)


@dataclass
class LoraTag:
    """One LoRA named in a prompt: ``weight`` for the UNet, ``te_weight`` for the text encoder."""

    name: str
    weight: float = 1.0
    te_weight: float = 1.0


@dataclass
class ParsedPrompt:
    """A prompt with its ``<lora:…>`` tags taken out (``text``) and the LoRAs they named (``loras``)."""

    text: str
    loras: list[LoraTag] = field(default_factory=list)


def _number(value: str, tag: str, prompt: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise EvalError(f"in the prompt {prompt!r}, {tag} has the weight {value!r}, which is not a number: "
                        "write <lora:name:0.7>.") from None


def _tag(body: str, prompt: str) -> LoraTag:
    parts = [part.strip() for part in body.split(":")]
    tag = f"<lora:{body}>"
    if not parts[0]:
        raise EvalError(f"in the prompt {prompt!r}, {tag} has no LoRA name: write <lora:name:0.7>.")
    if len(parts) > 3:
        raise EvalError(f"in the prompt {prompt!r}, {tag} has too many parts: write <lora:name:weight> or "
                        "<lora:name:text_encoder_weight:unet_weight>.")
    numbers = [_number(part, tag, prompt) for part in parts[1:]]
    if not numbers:
        return LoraTag(parts[0])
    if len(numbers) == 1:
        return LoraTag(parts[0], numbers[0], numbers[0])
    return LoraTag(parts[0], weight=numbers[1], te_weight=numbers[0])


def tidy(text: str) -> str:
    """Collapse the gaps and doubled commas that removing words leaves behind."""
    text = re.sub(r"\s*,(\s*,)+", ",", text)
    text = re.sub(r"\s+,", ",", text)
    text = re.sub(r"\s{2,}", " ", text)
    return text.strip(" ,\t\n")


def parse_prompt(prompt: str) -> ParsedPrompt:
    """Split ``a cat <lora:ink:0.6>, sketch`` into ``a cat, sketch`` and ``[LoraTag('ink', 0.6, 0.6)]``."""
    merged: dict[str, LoraTag] = {}
    for match in LORA_TAG.finditer(prompt):
        tag = _tag(match.group(1), prompt)
        if tag.name in merged:
            seen = merged[tag.name]
            seen.weight += tag.weight
            seen.te_weight += tag.te_weight
        else:
            merged[tag.name] = tag
    return ParsedPrompt(tidy(LORA_TAG.sub(" ", prompt)), list(merged.values()))


def trigger_pattern(trigger: str) -> re.Pattern:
    """The trigger as a whole word (or phrase), any case."""
    return re.compile(r"(?<!\w)" + re.escape(trigger.strip()) + r"(?!\w)", re.IGNORECASE)


def has_trigger(prompt: str, trigger: str) -> bool:
    return bool(trigger.strip()) and bool(trigger_pattern(trigger).search(prompt))


def with_trigger(prompt: str, trigger: str, placement: TriggerPlacement | None = None) -> str:
    """The prompt as written when it holds the trigger, else the trigger added where ``placement`` (a
    ``trigger.TriggerPlacement``) puts it, or ``trigger, prompt`` without one."""
    if placement is not None:
        return placement.insert(prompt, trigger)
    return prompt if has_trigger(prompt, trigger) else tidy(f"{trigger.strip()}, {prompt}")


def without_trigger(prompt: str, trigger: str) -> str:
    """The prompt with every occurrence of the trigger taken out."""
    return tidy(trigger_pattern(trigger).sub(" ", prompt))


def prompt_rows(prompts: list[str], trigger: str = "",
                placement: TriggerPlacement | None = None) -> list[tuple[str, bool | None]]:
    """(prompt, uses the trigger) for every row: each prompt once, or with and without ``trigger`` when set
    (added where ``placement`` puts it)."""
    rows: list[tuple[str, bool | None]] = []
    for prompt in prompts:
        if not str(prompt).strip():
            continue
        if trigger.strip():
            rows += [(with_trigger(prompt, trigger, placement), True), (without_trigger(prompt, trigger), False)]
        else:
            rows.append((prompt.strip(), None))
    return rows
