"""FLUX.1 transformers saved in Black Forest Labs' key layout: their weights under diffusers' names, and the
``FluxTransformer2DModel`` config their shapes describe.

The community ships FLUX.1 transformers as single files in BFL's layout (``double_blocks.N.img_attn.qkv.weight``,
``single_blocks.N.linear1.weight``, ``final_layer.…``), ComfyUI's under a ``model.diffusion_model.`` prefix.
diffusers' own converter assumes FLUX.1's width (3072 channels); this one reads the width from the tensors, so
reduced-width models (the tests', the toy world's) convert the same way. A file already in diffusers' layout
(``transformer_blocks.N.attn.to_q.weight``) passes through unchanged.
"""
from __future__ import annotations

import torch

BFL_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
DIFFUSERS_PREFIX = "transformer."
_TOP = {
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
    "txt_in": "context_embedder",
    "img_in": "x_embedder",
    "final_layer.linear": "proj_out",
}
# BFL's final modulation yields (shift, scale); diffusers' AdaLayerNormContinuous reads (scale, shift).
_FINAL_MODULATION = ("final_layer.adaLN_modulation.1", "norm_out.linear")
_DOUBLE = {
    "img_mod.lin": "norm1.linear",
    "txt_mod.lin": "norm1_context.linear",
    "img_attn.proj": "attn.to_out.0",
    "txt_attn.proj": "attn.to_add_out",
    "img_attn.norm.query_norm": "attn.norm_q",
    "img_attn.norm.key_norm": "attn.norm_k",
    "txt_attn.norm.query_norm": "attn.norm_added_q",
    "txt_attn.norm.key_norm": "attn.norm_added_k",
    "img_mlp.0": "ff.net.0.proj",
    "img_mlp.2": "ff.net.2",
    "txt_mlp.0": "ff_context.net.0.proj",
    "txt_mlp.2": "ff_context.net.2",
}
# Fused projections, split row-wise in this order (a single block's linear1 ends with the MLP's input rows).
_DOUBLE_FUSED = {
    "img_attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v"),
    "txt_attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj"),
}
_SINGLE = {
    "modulation.lin": "norm.linear",
    "linear2": "proj_out",
    "norm.query_norm": "attn.norm_q",
    "norm.key_norm": "attn.norm_k",
}
_SINGLE_FUSED = ("linear1", ("attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"))


class FluxKeyError(ValueError):
    """A tensor that has no place in a FLUX.1 transformer; the message names it."""


def transformer_keys(keys: list[str]) -> tuple[str, list[str]]:
    """``(prefix, keys)``: the transformer's tensor names in a single file and the prefix they share ("" when
    none); text-encoder and VAE tensors of an all-in-one file are left out."""
    for prefix in (*BFL_PREFIXES, DIFFUSERS_PREFIX):
        found = [key for key in keys if key.startswith(prefix)]
        if found:
            return prefix, found
    return "", [key for key in keys if not key.startswith(("text_encoders.", "vae.", "first_stage_model."))]


def is_diffusers_layout(keys: list[str]) -> bool:
    """True for a transformer saved under diffusers' names (``x_embedder.weight``)."""
    return "x_embedder.weight" in keys


def bfl_to_diffusers(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The weights of a BFL-layout FLUX.1 transformer (prefix already removed) under diffusers' names; a state in
    diffusers' layout is returned as it is. ``FluxKeyError`` names a tensor that fits neither."""
    if is_diffusers_layout(list(state)):
        return dict(state)
    if "img_in.weight" not in state:
        raise FluxKeyError("it has no img_in.weight, the first layer of every FLUX.1 transformer")
    width = int(state["img_in.weight"].shape[0])
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        module, _, param = key.rpartition(".")
        converted.update(_convert(module, "weight" if param == "scale" else param, tensor, width, key))
    return converted


def _convert(module: str, param: str, tensor: torch.Tensor, width: int, key: str) -> dict[str, torch.Tensor]:
    if module in _TOP:
        return {f"{_TOP[module]}.{param}": tensor}
    if module == _FINAL_MODULATION[0]:
        shift, scale = tensor.chunk(2, dim=0)
        return {f"{_FINAL_MODULATION[1]}.{param}": torch.cat([scale, shift], dim=0)}
    kind, _, rest = module.partition(".")
    index, _, part = rest.partition(".")
    if kind == "double_blocks" and index.isdigit():
        block = f"transformer_blocks.{index}"
        if part in _DOUBLE_FUSED:
            return _split(block, _DOUBLE_FUSED[part], param, tensor.chunk(3, dim=0))
        if part in _DOUBLE:
            return {f"{block}.{_DOUBLE[part]}.{param}": tensor}
    if kind == "single_blocks" and index.isdigit():
        block = f"single_transformer_blocks.{index}"
        if part == _SINGLE_FUSED[0]:
            mlp = int(tensor.shape[0]) - 3 * width
            return _split(block, _SINGLE_FUSED[1], param, tensor.split([width, width, width, mlp], dim=0))
        if part in _SINGLE:
            return {f"{block}.{_SINGLE[part]}.{param}": tensor}
    raise FluxKeyError(f"its tensor {key} is not part of a FLUX.1 transformer")


def _split(block: str, names: tuple[str, ...], param: str, parts) -> dict[str, torch.Tensor]:
    return {f"{block}.{name}.{param}": part.contiguous() for name, part in zip(names, parts)}


def transformer_config(state: dict[str, torch.Tensor], base: dict) -> dict:
    """``base`` (a ``FluxTransformer2DModel`` config) with every setting the diffusers-named ``state`` fixes
    read from it: depth, width, heads, input/text/pooled widths and whether it embeds guidance (FLUX.1-dev)."""
    def count(prefix: str) -> int:
        indices = {int(key.split(".")[1]) for key in state if key.startswith(prefix)}
        return max(indices) + 1 if indices else 0

    width, in_channels = (int(n) for n in state["x_embedder.weight"].shape)
    norm = next((key for key in state if key.endswith("attn.norm_q.weight")), None)
    head_dim = int(state[norm].shape[0]) if norm else int(base.get("attention_head_dim", 128))
    config = {key: value for key, value in base.items() if not key.startswith("_")}
    config.update(
        num_layers=count("transformer_blocks."), num_single_layers=count("single_transformer_blocks."),
        in_channels=in_channels, attention_head_dim=head_dim, num_attention_heads=width // head_dim,
        joint_attention_dim=int(state["context_embedder.weight"].shape[1]),
        pooled_projection_dim=int(state["time_text_embed.text_embedder.linear_1.weight"].shape[1]),
        guidance_embeds="time_text_embed.guidance_embedder.linear_1.weight" in state,
        out_channels=None if int(state["proj_out.weight"].shape[0]) == in_channels
        else int(state["proj_out.weight"].shape[0]),
    )
    return config
