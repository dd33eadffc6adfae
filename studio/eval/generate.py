"""Text to image with WebUI prompt syntax: ``a cat <lora:ink:0.6> <lora:watercolor:0.4>`` applies both LoRAs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from .prompts import parse_prompt
from .resolve import resolve_lora
from .samplers import sampler_name, use_sampler
from .session import Adapters, generate, get_pipeline, image_size
from .spec import EvalError

if TYPE_CHECKING:
    from PIL import Image


def prompt_loras(prompt: str,
                 lora_dirs: Iterable[str | os.PathLike] = ()) -> tuple[str, dict[str, tuple[float, float]]]:
    """(prompt without tags, {LoRA file: (unet weight, text-encoder weight)}); a file named twice adds up."""
    parsed = parse_prompt(prompt)
    weights: dict[str, tuple[float, float]] = {}
    for tag in parsed.loras:
        path = str(resolve_lora(tag.name, lora_dirs))
        unet, te = weights.get(path, (0.0, 0.0))
        weights[path] = (unet + tag.weight, te + tag.te_weight)
    return parsed.text, weights


def generate_from_prompt(prompt: str, *, base_model: str = "", base_model_config: str = "",
                         lora_dirs: Iterable[str | os.PathLike] = (), negative_prompt: str = "",
                         seeds: Iterable[int] = (0,), steps: int = 25, guidance: float = 5.0,
                         sampler: str = "auto", width: int = 0, height: int = 0, device: str = "auto",
                         pipeline_cache: dict | None = None) -> list[Image.Image]:
    """One picture per seed for ``prompt``, with every ``<lora:name:w>`` it names applied at its weight.

    Names are looked up in ``lora_dirs`` (see ``resolve_lora``); the negative prompt's tags are ignored, as in
    the WebUI. Each seed starts from the same noise as in a grid, so a cell can be reproduced here.
    """
    if not str(prompt).strip():
        raise EvalError("the prompt is empty: write what to draw, e.g. 'a red zq star <lora:star:0.7>'.")
    if steps < 1:
        raise EvalError(f"steps is {steps}: use 1 or more (25 is usual).")
    sampler_name(sampler)
    text, weights = prompt_loras(prompt, [Path(d) for d in lora_dirs])
    negative = parse_prompt(negative_prompt).text if negative_prompt else ""
    pipe = get_pipeline(base_model, base_model_config, device, pipeline_cache)
    seeds = [int(s) for s in seeds] or [0]
    size_w, size_h = image_size(pipe, width, height)
    with use_sampler(pipe, sampler), Adapters(pipe) as adapters, adapters.fused(weights):
        return generate(pipe, [text] * len(seeds), [negative] * len(seeds), seeds, steps=steps, guidance=guidance,
                        width=size_w, height=size_h)
