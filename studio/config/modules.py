"""Which layer names a LoRA may target, and the repairs applied to common mix-ups.

Many guides write ``target_modules: ["q_proj", "v_proj"]`` for Stable Diffusion, but those are the CLIP text
encoder's names; in the diffusers UNet the same attention projections are ``to_q``/``to_k``/``to_v``/``to_out.0``.
PEFT would silently match nothing (or fail deep inside training), so such names are mapped and reported as notes,
and names that exist in neither model are rejected with the nearest valid name.

``target_modules`` names layers of the denoiser: the UNet of SD 1.x and SDXL or the transformer of FLUX.1 (its
double-stream blocks add ``add_q_proj``/``add_k_proj``/``add_v_proj``/``to_add_out`` and ``ff_context`` for the text
tokens; its single-stream blocks have ``proj_mlp`` and ``proj_out``; ``norm1.linear`` and friends are the
modulation layers). ``all-linear`` stands for every Linear layer of the denoiser (``studio.train.adapters`` expands
it for the loaded model).
"""
from __future__ import annotations

import difflib

# Leaf Linear/Conv2d names of a diffusers SD 1.x UNet (attention, feed-forward, ResNet, time embedding, sampling).
UNET_MODULES = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "time_emb_proj", "conv_in", "conv_out", "conv", "linear_1", "linear_2",
)
# Leaf Linear names that FLUX.1's FluxTransformer2DModel adds (text-token attention and MLP, single-block MLP,
# AdaLN modulation, input embedders).
FLUX_MODULES = (
    "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp",
    "norm1.linear", "norm1_context.linear", "norm.linear", "norm_out.linear", "x_embedder", "context_embedder",
)
DENOISER_MODULES = UNET_MODULES + FLUX_MODULES
ALL_LINEAR = "all-linear"
# The diffusers FLUX.1 LoRA example's default: attention and MLP projections of both token streams.
FLUX_DEFAULT_MODULES = ("to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                        "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2")
# Leaf Linear names of the CLIP text encoder.
TEXT_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")
TEXT_TO_UNET = {"q_proj": "to_q", "k_proj": "to_k", "v_proj": "to_v", "out_proj": "to_out.0", "to_out": "to_out.0"}
UNET_TO_TEXT = {"to_q": "q_proj", "to_k": "k_proj", "to_v": "v_proj", "to_out.0": "out_proj", "to_out": "out_proj"}
# Module-path segments that may prefix a leaf name, e.g. ``attn2.to_k`` or ``transformer_blocks.0.attn1.to_q``.
UNET_CONTAINERS = {
    "attn1", "attn2", "ff", "net", "transformer_blocks", "attentions", "resnets", "down_blocks", "up_blocks",
    "mid_block", "downsamplers", "upsamplers", "time_embedding",
    # FLUX.1's transformer
    "attn", "ff_context", "single_transformer_blocks", "time_text_embed", "timestep_embedder", "text_embedder",
    "guidance_embedder",
}
TEXT_CONTAINERS = {"text_model", "encoder", "layers", "self_attn", "mlp"}


def _is_known(name: str, leaves: tuple[str, ...], containers: set[str]) -> bool:
    for leaf in leaves:
        if name == leaf:
            return True
        if name.endswith("." + leaf):
            prefix = name[: -len(leaf) - 1].split(".")
            if all(part in containers or part.isdigit() for part in prefix):
                return True
    return False


def _normalise(key: str, modules: list[str], leaves: tuple[str, ...], containers: set[str],
               mapping: dict[str, str], what: str, other: str,
               model: str = "") -> tuple[list[str], list[str], list[str]]:
    """``what`` names the model in notes ("the UNet's 'to_q'"), ``model`` (default ``what``) in problems."""
    out: list[str] = []
    problems: list[str] = []
    notes: list[str] = []
    for name in modules:
        if name in mapping:
            notes.append(f"{key}: {name!r} is a {other} layer name; using the {what}'s {mapping[name]!r} "
                         f"(the same attention projection)")
            name = mapping[name]
        if not _is_known(name, leaves, containers):
            close = difflib.get_close_matches(name, leaves + tuple(mapping), n=1, cutoff=0.5)
            hint = f" — did you mean {mapping.get(close[0], close[0])!r}?" if close else ""
            problems.append(f"{key}: {name!r} is not a layer of the {model or what}{hint} "
                            f"(known names: {', '.join(leaves)})")
            continue
        if name in out:
            notes.append(f"{key}: {name!r} is listed twice; keeping one")
            continue
        out.append(name)
    if not modules:
        problems.append(f"{key} must name at least one layer, e.g. [{', '.join(leaves[:4])}]")
    return out, problems, notes


def normalise_unet_modules(key: str, modules: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``(modules with text-encoder names mapped to UNet names, problems, notes)``; ``all-linear`` alone stands
    for every Linear layer of the denoiser."""
    if ALL_LINEAR in modules:
        others = [name for name in modules if name != ALL_LINEAR]
        notes = [f"{key}: {ALL_LINEAR} already covers {', '.join(others)}; keeping {ALL_LINEAR}"] if others else []
        return [ALL_LINEAR], [], notes
    return _normalise(key, modules, DENOISER_MODULES, UNET_CONTAINERS, TEXT_TO_UNET, "UNet", "text-encoder",
                      "UNet or FLUX.1 transformer")


def normalise_text_modules(key: str, modules: list[str]) -> tuple[list[str], list[str], list[str]]:
    """``(modules with UNet names mapped to text-encoder names, problems, notes)``."""
    return _normalise(key, modules, TEXT_MODULES, TEXT_CONTAINERS, UNET_TO_TEXT, "text encoder", "UNet")
