"""Which family a base model belongs to, read from its files without loading any weights.

The studio shows this beside the base model as soon as one is chosen; training and evaluation load the model
through ``loading``, which decides the same way.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from . import single_file
from .families import Family, family_named
from .loading import PICKLE_SUFFIXES, ModelLoadError, check_model_index, resolve_source

KIND_WORDS = {"embedded": "built-in toy world", "folder": "diffusers folder", "single_file": "single file",
              "hub": "hub id"}


@dataclass(frozen=True)
class ModelDescription:
    """What a base model is: ``family`` (None while unknown, e.g. a hub id not in the cache), where it comes from,
    and whether it is known to predict velocity (v-prediction)."""

    family: Family | None
    kind: str
    source: str
    v_prediction: bool = False

    def line(self) -> str:
        if self.family is None:
            return f"Model family: known once {self.source} is downloaded ({KIND_WORDS[self.kind]})"
        parts = [f"Model family: **{self.family.label}**", KIND_WORDS[self.kind]]
        if self.v_prediction:
            parts.append("v-prediction")
        return " · ".join(parts)


def describe_model(base_model: str, base_model_config: str = "") -> ModelDescription:
    """The family of ``base_model`` ("" = the built-in toy world); ``ModelLoadError`` when it is not a model."""
    kind, source = resolve_source(str(base_model or "").strip())
    if kind in ("embedded", "folder"):
        folder = Path(source)
        family = check_model_index(folder)
        return ModelDescription(family, kind, source, _scheduler_says_v(folder / "scheduler"))
    if kind == "hub":
        return _describe_hub(source)
    path = Path(source)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return ModelDescription(None, kind, path.name)
    try:
        keys, metadata = single_file.read_header(path)
        family = family_named(single_file.checkpoint_family(keys, path.name))
    except single_file.CheckpointKindError as error:
        raise ModelLoadError(str(error)) from error
    except Exception as error:  # safetensors raises its own error type for a damaged header
        raise ModelLoadError(f"{path.name} is not a readable .safetensors file: pass an intact checkpoint.") from error
    if family.name == "flux":  # a transformer file: the rest of the model must come from base_model_config
        from .flux_single_file import check_flux_base

        check_flux_base(path.name, keys, base_model_config)
    return ModelDescription(family, kind, source, single_file.is_v_prediction(keys, metadata))


def _scheduler_says_v(folder: Path) -> bool:
    try:
        config = json.loads((folder / "scheduler_config.json").read_text(encoding="utf-8")[:100_000])
    except (OSError, ValueError):
        return False
    return config.get("prediction_type") == "v_prediction"


def _describe_hub(repo_id: str) -> ModelDescription:
    """A hub model's family from its ``model_index.json`` in the local cache (nothing is downloaded here)."""
    from diffusers import DiffusionPipeline

    from .families import family_of_index

    try:
        index = DiffusionPipeline.load_config(repo_id, local_files_only=True)
    except Exception:  # not in the cache: huggingface_hub raises several error types for that
        return ModelDescription(None, "hub", repo_id)
    return ModelDescription(family_of_index(dict(index)), "hub", repo_id)
