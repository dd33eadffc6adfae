"""Diffusers -> original ("SGM") key layout of an SDXL checkpoint, the one Pony, Illustrious and NoobAI ship.

The UNet and VAE use the LDM names of ``ldm_keys`` (``model.diffusion_model.`` / ``first_stage_model.``). The first
text encoder (CLIP ViT-L) keeps its Hugging Face names under ``conditioner.embedders.0.transformer.``; the second
(OpenCLIP ViT-bigG) uses OpenCLIP's own: ``transformer.resblocks.N`` with query, key and value fused into one
``attn.in_proj_weight`` / ``in_proj_bias``, ``positional_embedding`` as a bare tensor and ``text_projection`` stored
as the matrix that multiplies from the right (the transpose of the Linear weight). diffusers' ``from_single_file``
undoes exactly this in ``convert_open_clip_checkpoint``.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch

from . import ldm_keys

if TYPE_CHECKING:
    from diffusers import StableDiffusionXLPipeline

CLIP_L_PREFIX = "conditioner.embedders.0.transformer.text_model."
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."
# OpenCLIP clamps its learned logit scale at ln(100) and the released bigG sits there; SDXL files carry it although
# no text-to-image code reads it, and ComfyUI expects the key.
_LOGIT_SCALE = math.log(100.0)

# diffusers CLIPEncoderLayer child -> OpenCLIP ResidualAttentionBlock child
_OPEN_CLIP_LAYER = {
    "layer_norm1.": "ln_1.",
    "layer_norm2.": "ln_2.",
    "mlp.fc1.": "mlp.c_fc.",
    "mlp.fc2.": "mlp.c_proj.",
    "self_attn.out_proj.": "attn.out_proj.",
}
_OPEN_CLIP_TOP = {
    "embeddings.token_embedding.weight": "token_embedding.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "final_layer_norm.weight": "ln_final.weight",
    "final_layer_norm.bias": "ln_final.bias",
}
_QKV = ("q_proj", "k_proj", "v_proj")


def open_clip_to_sgm(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ``CLIPTextModelWithProjection`` state dict in OpenCLIP's layout under ``conditioner.embedders.1.model.``."""
    out: dict[str, torch.Tensor] = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
            continue
        name = key.removeprefix("text_model.")
        if name == "embeddings.position_ids":
            continue
        if name in _OPEN_CLIP_TOP:
            out[_OPEN_CLIP_TOP[name]] = value
            continue
        out.update(_open_clip_layer_key(key, name, value, fused))
    for block, parts in fused.items():
        for kind in ("weight", "bias"):
            pieces = [parts.get(f"{proj}.{kind}") for proj in _QKV]
            if any(piece is None for piece in pieces):
                raise ValueError(
                    f"layer {block} of text encoder 2 lacks a q/k/v {kind}: export a complete CLIP text model.")
            out[f"transformer.resblocks.{block}.attn.in_proj_{kind}"] = torch.cat(pieces, dim=0)
    out["logit_scale"] = torch.tensor(_LOGIT_SCALE, dtype=out["positional_embedding"].dtype)
    return {OPEN_CLIP_PREFIX + key: value for key, value in out.items()}


def _open_clip_layer_key(key: str, name: str, value: torch.Tensor, fused: dict) -> dict[str, torch.Tensor]:
    """One encoder-layer weight renamed, or (for q/k/v) set aside in ``fused`` to be concatenated."""
    head = "encoder.layers."
    if not name.startswith(head):
        raise _unplaced(key)
    block, _, child = name[len(head):].partition(".")
    for proj in _QKV:
        if child.startswith(f"self_attn.{proj}."):
            fused.setdefault(block, {})[child.removeprefix("self_attn.")] = value
            return {}
    for old, new in _OPEN_CLIP_LAYER.items():
        if child.startswith(old):
            return {f"transformer.resblocks.{block}.{new}{child[len(old):]}": value}
    raise _unplaced(key)


def _unplaced(key: str) -> ValueError:
    return ValueError(f"the text encoder 2 weight {key!r} has no place in an SDXL checkpoint: export an SDXL pipeline.")


def sdxl_to_sgm(pipe: StableDiffusionXLPipeline) -> dict[str, torch.Tensor]:
    """Every weight of an SDXL pipeline (UNet, VAE, both text encoders) under its single-file name."""
    state = {}
    state.update(ldm_keys.unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config)))
    state.update(ldm_keys.vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)))
    state.update(ldm_keys.text_encoder_to_ldm(pipe.text_encoder.state_dict(), CLIP_L_PREFIX))
    state.update(open_clip_to_sgm(pipe.text_encoder_2.state_dict()))
    return state
