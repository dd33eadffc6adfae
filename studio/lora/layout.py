"""The layers of a base model that a LoRA file can patch, in the names each client knows them by.

A ``BaseLayout`` lists, for one base model, every Linear / Conv2d layer of the denoiser under its diffusers path
and its original path (the UNet's "LDM" block names; the FLUX.1 transformer's weight in Black Forest Labs'
layout, ``flux_keys``), and every text-encoder layer under its transformers path (without the ``text_model.`` part
that transformers 5 no longer has). It is built from the live model a run trains (``layout_of``) or, for a file of
unknown origin, from the family's released model on the meta device (``standard_layout``: SD 1.5 or SDXL base from
the shipped configs, FLUX.1-dev from ``flux_keys.RELEASED_CONFIG``); A1111's fixed model configs build only the
first two.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from .flux_keys import BflSlice

if TYPE_CHECKING:
    from studio.models.families import Family

LDM_FIELDS = ("layers_per_block", "down_block_types", "up_block_types", "transformer_layers_per_block",
              "addition_embed_type", "mid_block_type")


@dataclass
class BaseLayout:
    """``unet``: the denoiser's diffusers path -> (original path, weight shape); ``text``: component -> {path:
    weight shape}; ``standard``: the UNet has the block layout of the family's released model (what A1111 can
    load). FLUX.1 only: ``bfl`` holds the transformer's weights in BFL's layout (path -> shape) and ``slices``
    where each diffusers weight lives among them."""

    family: str
    unet: dict[str, tuple[str, torch.Size]]
    text: dict[str, dict[str, torch.Size]] = field(default_factory=dict)
    standard: bool = True
    text_layers: dict[str, int] = field(default_factory=dict)
    bfl: dict[str, torch.Size] = field(default_factory=dict)
    slices: dict[str, BflSlice] = field(default_factory=dict)


def _patchable(model: nn.Module) -> dict[str, torch.Size]:
    """``{path: weight shape}`` of the Linear / Conv2d layers (under a PEFT wrapper: of its base layer)."""
    found = {}
    for path, module in model.named_modules():
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
        if not isinstance(base, (nn.Linear, nn.Conv2d)) or path.rsplit(".", 1)[-1] == "base_layer":
            continue
        if any(part.startswith("lora_") for part in path.split(".")):
            continue
        found[path.removeprefix("text_model.")] = base.weight.shape
    return found


def _ldm_paths(paths: dict[str, torch.Size], config: dict) -> dict[str, tuple[str, torch.Size]]:
    from studio.models.ldm_keys import _map_key, unet_prefix_table

    table = unet_prefix_table(dict(config))
    mapped = {}
    for path, shape in paths.items():
        try:
            mapped[path] = (_map_key(path + ".weight", table, "UNet")[: -len(".weight")], shape)
        except ValueError:
            continue  # a layer without an LDM name (not in SD 1.x / SDXL checkpoints): no client loads it
    return mapped


def _is_standard(family, config: dict) -> bool:
    import json

    standard = json.loads((family.config_dir / "unet" / "config.json").read_text())
    same = all(_plain(config.get(name)) == _plain(standard[name]) for name in LDM_FIELDS
               if standard.get(name) is not None)  # a field the shipped config leaves out keeps its default
    return same and len(config["block_out_channels"]) == len(standard["block_out_channels"])


def _plain(value):
    return list(value) if isinstance(value, (list, tuple)) else value


def layout_of(family: Family, unet: nn.Module, text_encoders: dict[str, nn.Module | None] | None = None) -> BaseLayout:
    """The layout of a live model (the denoiser — UNet or FLUX.1 transformer — and ``{component: encoder}``;
    PEFT wrappers are looked through)."""
    config = dict(unet.config)
    text = {name: _patchable(encoder) for name, encoder in (text_encoders or {}).items() if encoder is not None}
    layers = {name: int(encoder.config.num_hidden_layers) for name, encoder in (text_encoders or {}).items()
              if encoder is not None}
    if family.name == "flux":
        return _flux_layout(_patchable(unet), config, text, layers)
    return BaseLayout(family.name, _ldm_paths(_patchable(unet), config), text, _is_standard(family, config), layers)


def _flux_layout(paths: dict[str, torch.Size], config: dict, text: dict, layers: dict) -> BaseLayout:
    from .flux_keys import bfl_shapes, comfyui_slices

    slices = comfyui_slices(config)
    unet = {path: (slices[path].key, shape) for path, shape in paths.items() if path in slices}
    return BaseLayout("flux", unet, text, True, layers, bfl_shapes(config), slices)


@functools.lru_cache(maxsize=3)
def standard_layout(family_name: str) -> BaseLayout:
    """The layout of the family's released model (SD 1.5, SDXL base or FLUX.1-dev), built on the meta device."""
    import json

    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.models.families import family_named

    family = family_named(family_name)
    if family.name == "flux":
        return _released_flux_layout()
    folder = family.config_dir
    encoders = {"text_encoder": CLIPTextModel}
    if (folder / "text_encoder_2").is_dir():
        encoders["text_encoder_2"] = CLIPTextModelWithProjection
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(json.loads((folder / "unet" / "config.json").read_text()))
        text = {name: cls(CLIPTextConfig(**json.loads((folder / name / "config.json").read_text())))
                for name, cls in encoders.items()}
    return layout_of(family, unet, text)


def _released_flux_layout() -> BaseLayout:
    """FLUX.1-dev: the transformer from its config and CLIP ViT-L/14's text encoder (the one a FLUX.1 LoRA may
    change), on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from studio.models.families import FLUX

    from .flux_keys import RELEASED_CONFIG

    with init_empty_weights():
        transformer = FluxTransformer2DModel(**RELEASED_CONFIG)
        clip = CLIPTextModel(CLIPTextConfig(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                            num_attention_heads=12, projection_dim=768))
    return layout_of(FLUX, transformer, {"text_encoder": clip})
