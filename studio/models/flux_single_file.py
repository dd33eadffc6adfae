"""Single-file FLUX.1 models: the transformer from the file, the rest of the pipeline from ``base_model_config``.

A FLUX.1 file as the community ships it (``flux1-dev.safetensors``, its fp8 copies, fine-tunes) holds only the
transformer, in Black Forest Labs' key layout (``studio.models.flux_keys`` converts it). The tokenizers, the CLIP
and T5 text encoders and the VAE come from ``base_model_config``: a FLUX.1 diffusers folder or hub id (FLUX.1-dev
and FLUX.1-schnell share them; schnell is not gated). ComfyUI's all-in-one checkpoints also hold CLIP, T5 and the
VAE: those are read from the file too (``flux_all_in_one``), and ``base_model_config`` gives their configs, the
tokenizers and the scheduler.

The transformer's config is read from the file's shapes over the base's own transformer config (or the shipped
FLUX.1-dev / schnell config when the base has none). The scheduler is the base's when the base and the file are
the same kind (both guidance-distilled like dev, or both not), else the shipped one of the file's kind: dev's
scheduler shifts its noise levels with the picture size, schnell's does not.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import flux_keys
from .flux_all_in_one import embedded_parts, quiet_fp32_notice, read_tensors
from .families import family_named
from .loading import (
    _HUB_ID, ModelLoadError, _first_line, _hub_message, _quiet_dtype, check_model_index,
)

if TYPE_CHECKING:
    from diffusers import FluxPipeline

EMBEDDED_PARTS = ("text_encoders.", "vae.")


def variant_of(keys: list[str]) -> str:
    """"dev" for a guidance-distilled FLUX.1 transformer (it has a guidance embedding), else "schnell"."""
    return "dev" if any("guidance_in." in k or "guidance_embedder." in k for k in keys) else "schnell"


def is_all_in_one(keys: list[str]) -> bool:
    """True for a ComfyUI checkpoint that holds CLIP, T5 and the VAE beside the transformer."""
    return any(key.startswith(EMBEDDED_PARTS) for key in keys)


def needs_base_sentence(name: str, keys: list[str]) -> str:
    """What to pass when a FLUX.1 single file comes without ``base_model_config``."""
    variant = variant_of(keys)
    if is_all_in_one(keys):
        return (f"{name} holds a FLUX.1-{variant} transformer with CLIP, T5 and a VAE (a ComfyUI checkpoint): set "
                "base_model_config to a FLUX.1 diffusers folder or hub id for their configs and the tokenizers, "
                "e.g. black-forest-labs/FLUX.1-schnell (not gated; its .json and tokenizer files are enough).")
    return (f"{name} holds a FLUX.1-{variant} transformer only: set base_model_config to a FLUX.1 diffusers folder "
            "or hub id for the tokenizers, CLIP and T5 text encoders and VAE, e.g. black-forest-labs/FLUX.1-schnell "
            "(not gated; FLUX.1-dev has the same ones), downloaded without its transformer/ folder and "
            "flux1-schnell.safetensors.")


def load_flux_single_file(path: Path, keys: list[str], base_model_config: str, dtype: torch.dtype) -> FluxPipeline:
    """A ``FluxPipeline`` whose transformer is the one in ``path`` (and CLIP, T5 and VAE too, for an all-in-one
    file) and whose other parts are the base's."""
    base, hub = check_flux_base(path.name, keys, base_model_config)
    local = _cache_only() if hub else True
    if hub:
        _check_hub_base(base, path.name, local)
    base_transformer = _base_config(base, "transformer", local)
    variant = variant_of(keys)
    same_kind = base_transformer is not None and bool(base_transformer.get("guidance_embeds")) == (variant == "dev")
    transformer = _load_transformer(path, keys, base_transformer or _shipped(variant, "transformer"), dtype)
    extra = {} if same_kind else {"scheduler": _shipped_scheduler(variant)}
    extra.update(embedded_parts(path, keys, base, local, dtype) if is_all_in_one(keys) else {})
    from diffusers import FluxPipeline

    try:
        pipe = FluxPipeline.from_pretrained(base, transformer=transformer, local_files_only=local,
                                            **_quiet_dtype(dtype), **extra)
    except Exception as error:  # a hub id raises several error types for offline / not found / gated
        if hub:
            raise ModelLoadError(_hub_message(base, local)) from error
        raise ModelLoadError(
            f"could not load the CLIP, T5 and VAE of base_model_config {base} ({_first_line(error)}): "
            "pass a complete FLUX.1 diffusers folder (its transformer/ folder may be left out).") from error
    _check_fits(pipe, path.name, base)
    return pipe


def check_flux_base(name: str, keys: list[str], base_model_config: str) -> tuple[str, bool]:
    """``(base, is_hub_id)`` for a FLUX.1 single file's ``base_model_config``, or the sentence saying what to
    set; nothing is loaded."""
    if not base_model_config:
        raise ModelLoadError(needs_base_sentence(name, keys))
    folder = Path(base_model_config).expanduser()
    if folder.is_dir():
        family = check_model_index(folder)
        if family.name != "flux":
            raise ModelLoadError(
                f"base_model_config {base_model_config} is {_a(family.label)} folder, but {name} is a FLUX.1 "
                "transformer: set base_model_config to a FLUX.1 diffusers folder or hub id.")
        return str(folder), False
    if _HUB_ID.match(base_model_config):
        return base_model_config, True
    raise ModelLoadError(
        f"base_model_config {base_model_config} is neither a folder nor a hub id: set it to a FLUX.1 diffusers "
        "folder (with model_index.json) or a hub id such as black-forest-labs/FLUX.1-schnell.")


def _check_hub_base(repo_id: str, name: str, local: bool) -> None:
    """The hub model's index must be reachable (or cached) and describe a FLUX.1 pipeline."""
    from diffusers import DiffusionPipeline

    from .families import family_of_index

    try:
        index = DiffusionPipeline.load_config(repo_id, local_files_only=local)
    except Exception as error:  # offline / 404 / gated surface as different classes across huggingface_hub versions
        raise ModelLoadError(_hub_message(repo_id, local)) from error
    family = family_of_index(dict(index))
    if family.name != "flux":
        raise ModelLoadError(
            f"base_model_config {repo_id} is {_a(family.label)} model, but {name} is a FLUX.1 transformer: set "
            "base_model_config to a FLUX.1 diffusers folder or hub id.")


def _a(label: str) -> str:
    """The label with its article: "an SD 1.x", "an SDXL", "a FLUX.1"."""
    return f"{'an' if label.startswith('S') else 'a'} {label}"


def _cache_only() -> bool:
    from studio.util.hub import cache_only

    return cache_only()


def _shipped(variant: str, component: str) -> dict:
    folder = family_named("flux").config_dir / variant / component
    name = "scheduler_config.json" if component == "scheduler" else "config.json"
    return json.loads((folder / name).read_text(encoding="utf-8"))


def _shipped_scheduler(variant: str):
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler.from_config(_shipped(variant, "scheduler"))


def _base_config(base: str, component: str, local: bool) -> dict | None:
    """The base's config of ``component``; None when it has none (or the hub cannot say)."""
    from diffusers import FluxTransformer2DModel

    try:
        return dict(FluxTransformer2DModel.load_config(base, subfolder=component, local_files_only=local))
    except Exception:  # missing folder, offline hub, not cached: each raises its own error type
        return None


def _load_transformer(path: Path, keys: list[str], base_config: dict, dtype: torch.dtype):
    from diffusers import FluxTransformer2DModel

    try:
        prefix, names = flux_keys.transformer_keys(keys)
        state = flux_keys.bfl_to_diffusers(read_tensors(path, names, prefix))
        config = flux_keys.transformer_config(state, base_config)
    except (flux_keys.FluxKeyError, KeyError, IndexError) as error:
        raise ModelLoadError(
            f"{path.name} is not a complete FLUX.1 transformer ({_first_line(error)}): pass an intact FLUX.1 "
            ".safetensors file.") from error
    if sum(config["axes_dims_rope"]) != config["attention_head_dim"]:
        raise ModelLoadError(
            f"{path.name} has {config['attention_head_dim']}-wide attention heads, which the rotary position "
            f"settings {list(config['axes_dims_rope'])} of the base model's transformer config do not fit: "
            "set base_model_config to a folder whose transformer/config.json describes this model.")
    with tempfile.TemporaryDirectory(prefix="studio-flux-") as scratch:
        (Path(scratch) / "transformer").mkdir()
        config_file = Path(scratch) / "transformer" / "config.json"
        config_file.write_text(json.dumps({"_class_name": FluxTransformer2DModel.__name__, **config}))
        try:
            with quiet_fp32_notice():
                return FluxTransformer2DModel.from_single_file(
                    state, config=scratch, subfolder="transformer", local_files_only=True, **_quiet_dtype(dtype))
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelLoadError(
                f"{path.name} does not load as the FLUX.1 transformer its shapes describe ({_first_line(error)}): "
                "pass an intact FLUX.1 .safetensors file.") from error


def _check_fits(pipe, name: str, base: str) -> None:
    """Refuse a transformer that the base's VAE and text encoders cannot feed (FLUX.1 Fill/Depth/Canny take
    extra image channels; another base's encoders give other widths)."""
    config = pipe.transformer.config
    latent = 4 * int(pipe.vae.config.latent_channels)
    if int(config.in_channels) != latent:
        raise ModelLoadError(
            f"{name} takes {config.in_channels} input channels where a text-to-image FLUX.1 transformer takes "
            f"{latent} (4 x the VAE's latent channels), as FLUX.1 Fill, Depth and Canny do: pass a text-to-image "
            "FLUX.1 transformer such as FLUX.1-dev or FLUX.1-schnell.")
    widths = (int(pipe.text_encoder_2.config.d_model), int(pipe.text_encoder.config.hidden_size))
    if widths != (int(config.joint_attention_dim), int(config.pooled_projection_dim)):
        raise ModelLoadError(
            f"{name} reads {config.joint_attention_dim}-wide T5 and {config.pooled_projection_dim}-wide CLIP "
            f"features but the encoders of base_model_config {base} give {widths[0]} and {widths[1]}: set "
            "base_model_config to the FLUX.1 model this transformer belongs to.")
