"""What the studio shows about a LoRA file: rank, alpha, targets, parts, format, family and training metadata."""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import torch

from .formats import ADAPTER_METADATA_KEY, DIFFUSERS_WEIGHT_NAME, KOHYA_PREFIXES, lora_file_path, load_lora_file

# Leaf names shown to users, dotted; a kohya name matches the same name with "." -> "_".
KNOWN_TARGETS = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    # FLUX.1's transformer (diffusers names)
    "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out", "ff_context.net.0.proj", "ff_context.net.2", "proj_mlp",
    "norm1.linear", "norm1_context.linear", "norm.linear", "x_embedder", "context_embedder",
    "q_proj", "k_proj", "v_proj", "out_proj", "mlp.fc1", "mlp.fc2",
    "conv1", "conv2", "conv_shortcut", "time_emb_proj", "conv_in", "conv_out",
)


@dataclass
class LoraInfo:
    """What the UI shows about a LoRA file.

    ``alpha`` is the value loaders apply (the rank when the file stores none; None when modules differ).
    """

    path: str
    format: str
    rank: int | None
    alpha: float | None
    targets: list[str]
    modules: int
    has_unet: bool
    has_text_encoder: bool
    use_dora: bool
    output_name: str
    metadata: dict[str, str] = field(default_factory=dict)
    family: str = ""  # the family the LoRA was trained on: "sd1", "sdxl", "flux", or "" when the file does not say


def _target_label(module: str) -> str:
    for name in KNOWN_TARGETS:
        if module.endswith("." + name) or module.endswith("_" + name.replace(".", "_")):
            return name
    return re.split(r"[._]", module)[-1]


def _modules(state: dict[str, torch.Tensor], fmt: str) -> dict[str, torch.Tensor]:
    """Module name -> its down (A) matrix."""
    if fmt == "kohya":
        return {k[: -len(".lora_down.weight")]: v for k, v in state.items() if k.endswith(".lora_down.weight")}
    downs = (".lora_A.weight", ".lora.down.weight", ".lora_linear_layer.down.weight")
    return {k[: -len(s)]: v for k, v in state.items() for s in downs if k.endswith(s)}


def _alpha(state, metadata: dict[str, str], fmt: str, rank: int | None) -> float | None:
    if fmt == "kohya":
        alphas = {round(float(v), 6) for k, v in state.items() if k.endswith(".alpha")}
        if not alphas:
            return rank
        return alphas.pop() if len(alphas) == 1 else None
    try:
        config = json.loads(metadata.get(ADAPTER_METADATA_KEY, "{}"))
    except ValueError:
        config = {}
    alpha = next((config[f"{part}.lora_alpha"] for part in ("unet", "transformer", "text_encoder")
                  if f"{part}.lora_alpha" in config), None)
    return float(alpha) if alpha is not None else rank


def read_lora_info(path: str | os.PathLike) -> LoraInfo:
    """Rank, alpha, targets, parts, format and ``ss_*`` / ``modelspec.*`` metadata of a LoRA file."""
    state, metadata, fmt = load_lora_file(path)
    modules = _modules(state, fmt)
    ranks = {int(v.shape[0]) for v in modules.values()}
    rank = max(ranks) if ranks else None
    text_prefixes = KOHYA_PREFIXES[1:] if fmt == "kohya" else ("text_encoder.", "text_encoder_2.")
    text_modules = [m for m in modules if m.startswith(text_prefixes)]
    source = lora_file_path(path)
    shown = {k: v for k, v in metadata.items() if k.startswith(("ss_", "sshs_", "modelspec."))}
    default_name = source.parent.name if source.name == DIFFUSERS_WEIGHT_NAME else source.stem
    return LoraInfo(
        path=str(source),
        format=fmt,
        rank=rank,
        alpha=_alpha(state, metadata, fmt, rank),
        targets=sorted({_target_label(m) for m in modules}),
        modules=len(modules),
        has_unet=len(text_modules) < len(modules),
        has_text_encoder=bool(text_modules),
        use_dora=any("dora_scale" in k or "lora_magnitude_vector" in k for k in state),
        output_name=metadata.get("ss_output_name") or default_name,
        family=_family_name(state, metadata),
        metadata=shown,
    )


# Names only FLUX.1 LoRAs hold (SD3's transformer has no single-stream blocks): diffusers, kohya (BFL names),
# OneTrainer, SimpleTuner's LyCORIS and ComfyUI's own forms
FLUX_MARKS = ("transformer.single_transformer_blocks.", "lora_unet_double_blocks_", "lora_unet_single_blocks_",
              "lora_transformer_single_transformer_blocks_", "lycoris_single_transformer_blocks_",
              "diffusion_model.double_blocks.", "diffusion_model.single_blocks.")


def _family_name(state: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """"flux", "sdxl" or "sd1" when the metadata or the names say so, "" when the file does not tell (a UNet-only
    diffusers LoRA without metadata names the same modules for both SD families)."""
    said = metadata.get("ss_base_model_version", "") + " " + metadata.get("modelspec.architecture", "")
    if "flux" in said or any(k.startswith(FLUX_MARKS) for k in state):
        return "flux"
    if "sdxl" in said or "stable-diffusion-xl" in said:
        return "sdxl"
    if "sd_v1" in said or "stable-diffusion-v1" in said:
        return "sd1"
    # kohya's SD 1.x files name UNet modules by diffusers paths, its SDXL files by the original block names.
    marks = ("lora_te2_", "text_encoder_2.", "lora_unet_label_emb", "lora_unet_input_blocks_", "lora_unet_middle_block_",
             "lora_unet_output_blocks_")
    if any(k.startswith(marks) for k in state):
        return "sdxl"
    return "sd1" if any(k.startswith(("lora_te_", "lora_unet_down_blocks_", "lora_unet_up_blocks_")) for k in state) \
        else ""


def _header(path: str | os.PathLike) -> tuple[dict, dict] | None:
    """The tensor names (as dict keys) and metadata of a LoRA file, no tensors read; None when it cannot be read."""
    from safetensors import safe_open

    try:
        with safe_open(str(lora_file_path(path)), framework="pt") as handle:
            return dict.fromkeys(handle.keys()), dict(handle.metadata() or {})
    except Exception:  # LoraFormatError, OSError, or safetensors' own error for a damaged header
        return None


def lora_family(path: str | os.PathLike) -> str:
    """``LoraInfo.family`` from the file's header alone (names and metadata, no tensors read); "" when the file
    does not say or cannot be read (the loader then reports what is wrong with it)."""
    header = _header(path)
    return _family_name(*header) if header else ""


def has_webui_dora(path: str | os.PathLike) -> bool:
    """Whether the file is a DoRA in the WebUI layout (``.dora_scale`` tensors, decomposed per input column): what
    ComfyUI and A1111 apply, and what diffusers' loader drops with a warning, drawing another model."""
    header = _header(path)
    return bool(header) and any(name.endswith(".dora_scale") for name in header[0])
