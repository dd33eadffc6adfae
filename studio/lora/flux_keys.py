"""FLUX.1 LoRA keys as ComfyUI and Forge read them, against the original (Black Forest Labs, "BFL") layout.

ComfyUI and Forge run FLUX.1 in BFL's layout, where a double block's image q, k and v are one weight
(``double_blocks.N.img_attn.qkv``, rows q, k, v), its text q, k, v another (``txt_attn.qkv``), and a single
block's q, k, v and MLP input one more (``single_blocks.N.linear1``, rows q, k, v, MLP). A LoRA module named by
its diffusers path patches a slice of such a weight: ComfyUI's ``comfy/utils.py`` ``flux_to_diffusers`` gives
every diffusers weight its BFL weight and, for the fused ones, the rows (``weight.narrow(0, start, size)``);
the final norm's projection is stored (shift, scale) by BFL and (scale, shift) by diffusers, so its update is
swapped. ``comfy/lora.py`` ``model_lora_keys_unet`` then knows each diffusers path as ``transformer.<path>``,
``lycoris_<path, . -> _>``, ``lora_transformer_<path, . -> _>`` and (newer ComfyUI) ``<path>``, and every BFL weight
as ``lora_unet_<BFL path, . -> _>`` and ``diffusion_model.<BFL path>``. Forge (``packages_3rdparty/
comfyui_lora_collection``, a copy of that code) knows the same names but the bare ``<path>``, on models whose
repository name holds "flux". A name whose BFL weight the model lacks is dropped when patches are added.

``BflSlice`` is where a diffusers weight lives; ``bfl_shapes`` the BFL weights of a transformer config, built as
BFL's ``flux/model.py`` builds them (``MLPEmbedder`` in- and out-layers, ``Modulation`` with 6 or 3 × hidden
rows, ``LastLayer``), so a key is checked against a real weight and not only against a name.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch

# FLUX.1-dev's transformer config (diffusers' FluxTransformer2DModel defaults plus the guidance embedding): the
# layout a FLUX.1 LoRA file of unknown origin is checked against. schnell lacks only the guidance embedding.
RELEASED_CONFIG = {
    "patch_size": 1, "in_channels": 64, "out_channels": None, "num_layers": 19, "num_single_layers": 38,
    "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096, "pooled_projection_dim": 768,
    "guidance_embeds": True,
}
TIME_EMBEDDING = 256  # the sinusoidal timestep (and guidance) embedding's width in BFL's MLPEmbedder
MLP_RATIO = 4  # FLUX.1's MLP width over its hidden width (diffusers and ComfyUI fix it)

DOUBLE_BLOCK = {  # diffusers path in transformer_blocks.N -> BFL path in double_blocks.N
    "attn.to_out.0": "img_attn.proj", "norm1.linear": "img_mod.lin", "norm1_context.linear": "txt_mod.lin",
    "attn.to_add_out": "txt_attn.proj", "ff.net.0.proj": "img_mlp.0", "ff.net.2": "img_mlp.2",
    "ff_context.net.0.proj": "txt_mlp.0", "ff_context.net.2": "txt_mlp.2",
}
# diffusers path in single_transformer_blocks.N -> BFL path in single_blocks.N
SINGLE_BLOCK = {"norm.linear": "modulation.lin", "proj_out": "linear2"}
BASIC = {
    "proj_out": "final_layer.linear", "x_embedder": "img_in", "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
}


@dataclass(frozen=True)
class BflSlice:
    """Where a diffusers weight lives in BFL's layout: rows ``start`` to ``start + size`` of ``key`` (all of its
    rows when ``size`` is None); ``swapped``: its two row halves are in the other order."""

    key: str
    start: int = 0
    size: int | None = None
    swapped: bool = False

    def label(self) -> str:
        rows = f"[{self.start}:{self.start + self.size}]" if self.size is not None else ""
        return f"{self.key}{rows}" + (" (halves swapped)" if self.swapped else "")


def hidden_size(config: Mapping) -> int:
    return int(config["num_attention_heads"]) * int(config["attention_head_dim"])


def comfyui_slices(config: Mapping) -> dict[str, BflSlice]:
    """``flux_to_diffusers`` for the weights: diffusers path (no ``.weight``) -> its place in BFL's layout."""
    hidden = hidden_size(config)
    places: dict[str, BflSlice] = {}
    for index in range(int(config["num_layers"])):
        source, target = f"transformer_blocks.{index}", f"double_blocks.{index}"
        for row, part in enumerate("qkv"):
            places[f"{source}.attn.to_{part}"] = BflSlice(f"{target}.img_attn.qkv", row * hidden, hidden)
            places[f"{source}.attn.add_{part}_proj"] = BflSlice(f"{target}.txt_attn.qkv", row * hidden, hidden)
        places.update({f"{source}.{path}": BflSlice(f"{target}.{bfl}") for path, bfl in DOUBLE_BLOCK.items()})
    for index in range(int(config["num_single_layers"])):
        source, target = f"single_transformer_blocks.{index}", f"single_blocks.{index}"
        for row, part in enumerate("qkv"):
            places[f"{source}.attn.to_{part}"] = BflSlice(f"{target}.linear1", row * hidden, hidden)
        places[f"{source}.proj_mlp"] = BflSlice(f"{target}.linear1", 3 * hidden, MLP_RATIO * hidden)
        places.update({f"{source}.{path}": BflSlice(f"{target}.{bfl}") for path, bfl in SINGLE_BLOCK.items()})
    places.update({path: BflSlice(bfl) for path, bfl in BASIC.items()})
    places["norm_out.linear"] = BflSlice("final_layer.adaLN_modulation.1", swapped=True)
    return places


def bfl_shapes(config: Mapping) -> dict[str, torch.Size]:
    """The Linear weights of BFL's FLUX model for a diffusers transformer ``config``: path -> (out, in)."""
    hidden, mlp = hidden_size(config), MLP_RATIO * hidden_size(config)
    channels = int(config["in_channels"])
    out = int(config["patch_size"]) ** 2 * int(config.get("out_channels") or channels)
    shapes = {"img_in": (hidden, channels), "txt_in": (hidden, int(config["joint_attention_dim"])),
              "time_in.in_layer": (hidden, TIME_EMBEDDING), "time_in.out_layer": (hidden, hidden),
              "vector_in.in_layer": (hidden, int(config["pooled_projection_dim"])),
              "vector_in.out_layer": (hidden, hidden), "final_layer.linear": (out, hidden),
              "final_layer.adaLN_modulation.1": (2 * hidden, hidden)}
    if config.get("guidance_embeds"):
        shapes.update({"guidance_in.in_layer": (hidden, TIME_EMBEDDING), "guidance_in.out_layer": (hidden, hidden)})
    for index in range(int(config["num_layers"])):
        for stream in ("img", "txt"):
            block = f"double_blocks.{index}.{stream}"
            shapes.update({f"{block}_mod.lin": (6 * hidden, hidden), f"{block}_attn.qkv": (3 * hidden, hidden),
                           f"{block}_attn.proj": (hidden, hidden), f"{block}_mlp.0": (mlp, hidden),
                           f"{block}_mlp.2": (hidden, mlp)})
    for index in range(int(config["num_single_layers"])):
        block = f"single_blocks.{index}"
        shapes.update({f"{block}.linear1": (3 * hidden + mlp, hidden), f"{block}.linear2": (hidden, hidden + mlp),
                       f"{block}.modulation.lin": (3 * hidden, hidden)})
    return {path: torch.Size(shape) for path, shape in shapes.items()}


def client_key_map(slices: Mapping[str, BflSlice], shapes: Mapping[str, torch.Size], client: str
                   ) -> dict[str, tuple[str, str]]:
    """Every transformer module name ``client`` ("ComfyUI" or "Forge") maps on a FLUX model -> the layer it
    patches: ("transformer", diffusers path) for diffusers-style names, ("bfl", BFL path) for names of BFL's
    weights (a kohya/WebUI FLUX file's ``lora_unet_double_blocks_0_img_attn_qkv``)."""
    keys: dict[str, tuple[str, str]] = {}
    for path in slices:
        target = ("transformer", path)
        flat = path.replace(".", "_")
        keys[f"transformer.{path}"] = keys[f"lycoris_{flat}"] = keys[f"lora_transformer_{flat}"] = target
        if client == "ComfyUI":
            keys[path] = target  # "DiffSynth lora format"
    for bfl in shapes:
        keys[f"lora_unet_{bfl.replace('.', '_')}"] = keys[f"diffusion_model.{bfl}"] = ("bfl", bfl)
    return keys


def slice_shape(place: BflSlice, shapes: Mapping[str, torch.Size]) -> torch.Size | str:
    """The shape of the rows ``place`` patches, or why the model has no such rows (a sentence part)."""
    weight = shapes.get(place.key)
    if weight is None:
        return f"{place.key} is not a weight of this FLUX model, so the patch is dropped"
    size = weight[0] if place.size is None else place.size
    if place.start + size > weight[0]:
        return f"{place.label()} lies outside {place.key}'s {weight[0]} rows"
    return torch.Size((size, *weight[1:]))
