"""Tiny random FLUX.1 pipelines, and their transformers written the way the community ships FLUX.1: in Black
Forest Labs' key layout (the inverse of diffusers' ``convert_flux_transformer_checkpoint_to_diffusers``, written
out here independently of ``studio.models.flux_keys``)."""
from __future__ import annotations

from pathlib import Path

import torch


def tiny_flux_pipeline(work: Path, guidance_embeds: bool = False, **transformer):
    """A FluxPipeline of toy width with random weights (``studio.toyworld.flux_parts``)."""
    from studio.toyworld.flux_parts import build_flux_pipeline

    return build_flux_pipeline(Path(work), guidance_embeds=guidance_embeds, shift_factor=0.1, **transformer)


def _blocks(state: dict, prefix: str) -> list[int]:
    return sorted({int(key[len(prefix):].split(".")[0]) for key in state if key.startswith(prefix)})


def diffusers_to_bfl(state: dict[str, torch.Tensor], prefix: str = "") -> dict[str, torch.Tensor]:
    """A diffusers ``FluxTransformer2DModel`` state dict under BFL's names (q, k, v fused; a single block's q, k, v
    and MLP input fused into ``linear1``; the final modulation as (shift, scale))."""
    out: dict[str, torch.Tensor] = {}
    params = ("weight", "bias")
    for bfl, ours in (("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
                      ("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
                      ("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
                      ("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
                      ("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
                      ("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
                      ("txt_in", "context_embedder"), ("img_in", "x_embedder"), ("final_layer.linear", "proj_out")):
        for param in params:
            if f"{ours}.{param}" in state:
                out[f"{bfl}.{param}"] = state[f"{ours}.{param}"]
    for param in params:
        scale, shift = state[f"norm_out.linear.{param}"].chunk(2)
        out[f"final_layer.adaLN_modulation.1.{param}"] = torch.cat([shift, scale])
    for i in _blocks(state, "transformer_blocks."):
        ours, bfl = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for param in params:
            out[f"{bfl}img_attn.qkv.{param}"] = torch.cat([state[f"{ours}attn.to_{x}.{param}"] for x in "qkv"])
            out[f"{bfl}txt_attn.qkv.{param}"] = torch.cat([state[f"{ours}attn.add_{x}_proj.{param}"] for x in "qkv"])
            for b, o in (("img_mod.lin", "norm1.linear"), ("txt_mod.lin", "norm1_context.linear"),
                         ("img_attn.proj", "attn.to_out.0"), ("txt_attn.proj", "attn.to_add_out"),
                         ("img_mlp.0", "ff.net.0.proj"), ("img_mlp.2", "ff.net.2"),
                         ("txt_mlp.0", "ff_context.net.0.proj"), ("txt_mlp.2", "ff_context.net.2")):
                out[f"{bfl}{b}.{param}"] = state[f"{ours}{o}.{param}"]
        for b, o in (("img_attn.norm.query_norm", "norm_q"), ("img_attn.norm.key_norm", "norm_k"),
                     ("txt_attn.norm.query_norm", "norm_added_q"), ("txt_attn.norm.key_norm", "norm_added_k")):
            out[f"{bfl}{b}.scale"] = state[f"{ours}attn.{o}.weight"]
    for i in _blocks(state, "single_transformer_blocks."):
        ours, bfl = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for param in params:
            fused = [state[f"{ours}attn.to_{x}.{param}"] for x in "qkv"] + [state[f"{ours}proj_mlp.{param}"]]
            out[f"{bfl}linear1.{param}"] = torch.cat(fused)
            out[f"{bfl}linear2.{param}"] = state[f"{ours}proj_out.{param}"]
            out[f"{bfl}modulation.lin.{param}"] = state[f"{ours}norm.linear.{param}"]
        out[f"{bfl}norm.query_norm.scale"] = state[f"{ours}attn.norm_q.weight"]
        out[f"{bfl}norm.key_norm.scale"] = state[f"{ours}attn.norm_k.weight"]
    return {prefix + key: value.contiguous() for key, value in out.items()}


def save_bfl_transformer(transformer: torch.nn.Module, path: Path, prefix: str = "", extra: dict | None = None,
                         dtype: torch.dtype | None = None) -> Path:
    """Write ``transformer`` as a single BFL-layout ``.safetensors`` (``extra`` tensors added as they are)."""
    from safetensors.torch import save_file

    state = diffusers_to_bfl(transformer.state_dict(), prefix)
    if dtype is not None:
        state = {key: value.to(dtype) for key, value in state.items()}
    save_file({**state, **(extra or {})}, str(path))
    return path


def transformer_output(transformer: torch.nn.Module, seed: int = 0) -> torch.Tensor:
    """The transformer's velocity for fixed random inputs (8 x 8 latents, 6 text tokens), through the family."""
    from studio.models.families import FLUX, Conditioning

    config = transformer.config
    generator = torch.Generator().manual_seed(seed)
    noisy = torch.randn(1, config.in_channels // 4, 8, 8, generator=generator)
    hidden = torch.randn(1, 6, config.joint_attention_dim, generator=generator)
    pooled = torch.randn(1, config.pooled_projection_dim, generator=generator)
    with torch.no_grad():
        return FLUX.predict(transformer, noisy, torch.tensor([500.0]), Conditioning(hidden, pooled), guidance=3.5)
