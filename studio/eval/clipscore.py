"""CLIP text-image score: 100 x cosine similarity of CLIP's image and text embeddings, floored at 0.

The CLIP model comes from a local folder (``CLIPModel`` weights + tokenizer + image processor, as
``save_pretrained`` writes them) or a hub id such as ``openai/clip-vit-base-patch32``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

from .spec import EvalError

if TYPE_CHECKING:
    from transformers import CLIPModel, CLIPProcessor


class ClipScorer:
    """A loaded CLIP model and processor; ``score(images, texts)`` gives one number per pair."""

    def __init__(self, model: CLIPModel, processor: CLIPProcessor, device: str = "cpu", source: str = "") -> None:
        self.model = model.to(device).eval()
        self.processor = processor
        self.device = device
        self.source = source

    def score(self, images: list, texts: list[str], batch: int = 32) -> list[float]:
        scores: list[float] = []
        max_length = int(self.model.config.text_config.max_position_embeddings)
        for start in range(0, len(images), batch):
            chunk_images = [image.convert("RGB") for image in images[start:start + batch]]
            chunk_texts = [str(text) for text in texts[start:start + batch]]
            inputs = self.processor(text=chunk_texts, images=chunk_images, return_tensors="pt", padding=True,
                                    truncation=True, max_length=max_length)
            inputs = {key: value.to(self.device) for key, value in inputs.items()}
            with torch.inference_mode():
                image_embeds = self.model.get_image_features(pixel_values=inputs["pixel_values"])
                text_embeds = self.model.get_text_features(input_ids=inputs["input_ids"],
                                                           attention_mask=inputs.get("attention_mask"))
            image_embeds = _features(image_embeds)
            text_embeds = _features(text_embeds)
            cosine = torch.nn.functional.cosine_similarity(image_embeds.float(), text_embeds.float(), dim=-1)
            scores.extend((100.0 * cosine.clamp(min=0)).tolist())
        return [round(float(s), 3) for s in scores]


def _features(output) -> torch.Tensor:
    """``get_*_features`` return a tensor in most transformers versions and an output object in some."""
    if isinstance(output, torch.Tensor):
        return output
    for name in ("pooler_output", "image_embeds", "text_embeds"):
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor):
            return value
    raise EvalError("this transformers version returns CLIP features in an unknown form: update transformers.")


def load_clip_scorer(source: str, device: str = "cpu", cache: dict | None = None) -> ClipScorer:
    """Load CLIP from a folder or hub id (once per ``cache``); EvalError naming the source when it cannot."""
    from transformers import CLIPModel, CLIPProcessor

    key = ("clip", str(source), device)
    if cache is not None and key in cache:
        return cache[key]
    path = Path(str(source)).expanduser()
    local = path.is_dir()
    if not local and (path.suffix or str(source).startswith((".", "/", "~")) or str(source).count("/") != 1):
        raise EvalError(f"CLIP model {source!r} is not a folder or a hub id (org/name): pass a folder holding a "
                        "saved CLIPModel with its tokenizer and image processor.")
    where = str(path) if local else str(source)
    try:
        model = CLIPModel.from_pretrained(where, local_files_only=local)
        processor = CLIPProcessor.from_pretrained(where, local_files_only=local)
    except (OSError, ValueError, KeyError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise EvalError(f"CLIP model {source} cannot be loaded ({first}): pass a folder with a CLIPModel, its "
                        "tokenizer and image processor (save_pretrained of each), or a reachable hub id.") from error
    scorer = ClipScorer(model, processor, device, str(source))
    if cache is not None:
        cache[key] = scorer
    return scorer
