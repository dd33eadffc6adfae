"""Which LoRA keys ComfyUI, A1111 and Forge load, and the weight each computes from them: our own implementation of
the rules in their code, checked here so a file is known to load before anyone tries it.

ComfyUI (``comfy/lora.py`` ``model_lora_keys_unet`` / ``model_lora_keys_clip`` / ``load_lora``,
``comfy/weight_adapter``): a module name is looked up in a key map built from the base model; the UNet is known as
``lora_unet_`` + its original (LDM) path or + its diffusers path with ``.`` -> ``_``, and by diffusers paths in
which ``.to_q`` reads ``.processor.to_q`` (``to_out.0`` -> ``to_out``); CLIP layers only as
``lora_te_text_model_encoder_layers_{i}_{part}`` (also ``lora_te1_``; SDXL's second encoder ``lora_te2_``) or
``text_encoder[_2].text_model.encoder.layers.{i}.{part}``. Every tensor of the file not consumed by a mapped
module is logged as "lora key not loaded" and ignored. Scale = alpha / rank, 1.0 without an alpha.

A1111 (``extensions-builtin/Lora/networks.py`` ``load_network``): the name is converted with
``convert_diffusers_name_to_compvis`` (SD 1.5's block arithmetic: three input blocks per level) and looked up among
the model's modules named by their original paths; failing that ``lora_unet`` -> ``diffusion_model`` and
``lora_te1_text_model`` -> ``0_transformer_text_model`` / ``transformer_text_model`` are tried. Unmatched keys are
printed as "Failed to match keys" and ignored. Scale = alpha / dim, 1.0 without an alpha.

FLUX.1 (``flux_keys``): ComfyUI and Forge map the transformer's diffusers names onto slices of its weights in Black
Forest Labs' layout and the CLIP text encoder's as above; A1111 has no FLUX.1. Forge
(``extensions-builtin/sd_forge_lora/networks.py`` ``load_lora_for_models``) loads a file only when at most 12 of its
keys match nothing, and logs those.
"""
from __future__ import annotations

import re
from typing import Iterable

import torch

from .flux_keys import client_key_map
from .layout import BaseLayout

CLIP_PARTS = {"mlp.fc1": "mlp_fc1", "mlp.fc2": "mlp_fc2", "self_attn.k_proj": "self_attn_k_proj",
              "self_attn.q_proj": "self_attn_q_proj", "self_attn.v_proj": "self_attn_v_proj",
              "self_attn.out_proj": "self_attn_out_proj"}
# ComfyUI's LoRA forms (up key, down key); a module loads when its up key is present.
COMFY_PAIRS = ((".lora_up.weight", ".lora_down.weight"), ("_lora.up.weight", "_lora.down.weight"),
               (".lora_B.weight", ".lora_A.weight"), (".lora.up.weight", ".lora.down.weight"),
               (".lora_linear_layer.up.weight", ".lora_linear_layer.down.weight"))
COMFY_EXTRAS = (".alpha", ".dora_scale", ".lora_mid.weight", ".reshape_weight")
A1111_PAIRS = ((".lora_up.weight", ".lora_down.weight"), (".lora_B.weight", ".lora_A.weight"))
Target = tuple[str, str]  # (component, path in the base model's diffusers / transformers naming)


def comfyui_key_map(layout: BaseLayout) -> dict[str, Target]:
    """Every module name ComfyUI maps on this base model -> the layer it patches."""
    if layout.family == "flux":
        return {**client_key_map(layout.slices, layout.bfl, "ComfyUI"), **_clip_keys(layout)}
    return {**_unet_keys(layout), **_clip_keys(layout)}


def forge_key_map(layout: BaseLayout) -> dict[str, Target]:
    """Every module name Forge maps on this FLUX.1 model -> the layer it patches (its UNet rules are ComfyUI's)."""
    return {**client_key_map(layout.slices, layout.bfl, "Forge"), **_clip_keys(layout)}


def _unet_keys(layout: BaseLayout) -> dict[str, Target]:
    keys: dict[str, Target] = {}
    for path, (ldm, _shape) in layout.unet.items():
        target = ("unet", path)
        keys[f"lora_unet_{ldm.replace('.', '_')}"] = target
        keys[f"diffusion_model.{ldm}"] = target
        keys[f"lora_unet_{path.replace('.', '_')}"] = target
        keys[f"lycoris_{path.replace('.', '_')}"] = target
        processor = path.replace(".to_", ".processor.to_")
        processor = processor[:-2] if processor.endswith(".to_out.0") else processor
        keys[processor] = keys[f"unet.{processor}"] = target
    return keys


def _clip_keys(layout: BaseLayout) -> dict[str, Target]:
    """The CLIP text encoders' names (``model_lora_keys_clip``); Forge's copy of it names them alike."""
    keys: dict[str, Target] = {}
    for component in layout.text:
        second = component == "text_encoder_2"
        prefixes = ("lora_te2_",) if second else ("lora_te_", "lora_te1_")
        for index in range(min(layout.text_layers.get(component, 0), 32)):
            for part, flat in CLIP_PARTS.items():
                path = f"encoder.layers.{index}.{part}"
                if path not in layout.text[component]:
                    continue
                for prefix in prefixes:
                    keys[f"{prefix}text_model_encoder_layers_{index}_{flat}"] = (component, path)
                keys[f"{component}.text_model.encoder.layers.{index}.{part}"] = (component, path)
        if second and "text_projection" in layout.text[component]:
            keys["lora_te2_text_projection"] = (component, "text_projection")
    return keys


_SUFFIXES = {"attentions": {}, "resnets": {"conv1": "in_layers_2", "conv2": "out_layers_3",
                                           "time_emb_proj": "emb_layers_1", "conv_shortcut": "skip_connection"}}


def a1111_compvis_name(name: str) -> str:
    """A1111's ``convert_diffusers_name_to_compvis`` for SD 1.x / SDXL names (no SD 2 branch)."""
    rules = (
        (r"lora_unet_conv_in(.*)", lambda m: f"diffusion_model_input_blocks_0_0{m[0]}"),
        (r"lora_unet_conv_out(.*)", lambda m: f"diffusion_model_out_2{m[0]}"),
        (r"lora_unet_time_embedding_linear_(\d+)(.*)", lambda m: f"diffusion_model_time_embed_{int(m[0]) * 2 - 2}{m[1]}"),
        (r"lora_unet_down_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)",
         lambda m: f"diffusion_model_input_blocks_{1 + int(m[0]) * 3 + int(m[2])}_"
                   f"{1 if m[1] == 'attentions' else 0}_{_SUFFIXES[m[1]].get(m[3], m[3])}"),
        (r"lora_unet_mid_block_(attentions|resnets)_(\d+)_(.+)",
         lambda m: f"diffusion_model_middle_block_{1 if m[0] == 'attentions' else int(m[1]) * 2}_"
                   f"{_SUFFIXES[m[0]].get(m[2], m[2])}"),
        (r"lora_unet_up_blocks_(\d+)_(attentions|resnets)_(\d+)_(.+)",
         lambda m: f"diffusion_model_output_blocks_{int(m[0]) * 3 + int(m[2])}_"
                   f"{1 if m[1] == 'attentions' else 0}_{_SUFFIXES[m[1]].get(m[3], m[3])}"),
        (r"lora_unet_down_blocks_(\d+)_downsamplers_0_conv", lambda m: f"diffusion_model_input_blocks_{3 + int(m[0]) * 3}_0_op"),
        (r"lora_unet_up_blocks_(\d+)_upsamplers_0_conv",
         lambda m: f"diffusion_model_output_blocks_{2 + int(m[0]) * 3}_{2 if int(m[0]) > 0 else 1}_conv"),
        (r"lora_te_text_model_encoder_layers_(\d+)_(.+)", lambda m: f"transformer_text_model_encoder_layers_{m[0]}_{m[1]}"),
        (r"lora_te2_text_model_encoder_layers_(\d+)_(.+)", lambda m: f"1_model_transformer_resblocks_{m[0]}_" + (
            m[1].replace("mlp_fc1", "mlp_c_fc").replace("mlp_fc2", "mlp_c_proj").replace("self_attn", "attn"))),
    )
    for pattern, build in rules:
        match = re.match(pattern, name)
        if match:
            return build(match.groups())
    return name


def a1111_modules(layout: BaseLayout) -> dict[str, Target]:
    """A1111's ``network_layer_mapping`` for this base model: its module names -> the layer."""
    mapping: dict[str, Target] = {f"diffusion_model_{ldm.replace('.', '_')}": ("unet", path)
                                  for path, (ldm, _shape) in layout.unet.items()}
    sdxl = layout.family == "sdxl"
    for component, paths in layout.text.items():
        for path in paths:
            if component == "text_encoder":
                prefix = "0_transformer_text_model_" if sdxl else "transformer_text_model_"
                mapping[prefix + path.replace(".", "_")] = (component, path)
            elif match := re.fullmatch(r"encoder\.layers\.(\d+)\.(self_attn\.(?:q|k|v|out)_proj|mlp\.fc[12])", path):
                # OpenCLIP layout: q/k/v live in one MultiheadAttention ("..._attn"), out_proj beside it.
                part = {"mlp.fc1": "mlp_c_fc", "mlp.fc2": "mlp_c_proj", "self_attn.out_proj": "attn_out_proj"}
                mapping[f"1_model_transformer_resblocks_{match[1]}_{part.get(match[2], 'attn')}"] = (component, path)
    return mapping


def a1111_lookup(name: str, modules: dict[str, Target]) -> Target | None:
    """The layer A1111 patches for module ``name`` (the part of a key before its first ``.``), or None."""
    key = a1111_compvis_name(name)
    if key in modules:
        return _mha_part(modules[key], key, name)
    projection = re.match(r"(.*)_([qkv]_proj)$", key)
    if projection and projection[1] in modules:
        return _mha_part(modules[projection[1]], projection[1], name)
    if "lora_unet" in name:
        return modules.get(name.replace("lora_unet", "diffusion_model"))
    if "lora_te1_text_model" in name:
        for replacement in ("0_transformer_text_model", "transformer_text_model"):
            if name.replace("lora_te1_text_model", replacement) in modules:
                return modules[name.replace("lora_te1_text_model", replacement)]
    return None


def a1111_partial_attention(names: Iterable[str], modules: dict[str, Target]) -> dict[str, str]:
    """Modules A1111 leaves out because their OpenCLIP attention layer (SDXL's second text encoder) is not complete:
    it patches that layer's one q/k/v weight and its out_proj together, only when the file holds all four.
    Returns {module name: the parts its layer lacks}."""
    layers: dict[str, dict[str, str]] = {}
    for name in names:
        match = re.fullmatch(r"(.*_attn)_(q|k|v|out)_proj", a1111_compvis_name(name))
        if match and match[1] in modules:
            layers.setdefault(match[1], {})[match[2]] = name
    partial = {}
    for parts in layers.values():
        missing = [f"{part}_proj" for part in ("q", "k", "v", "out") if part not in parts]
        if missing:
            partial.update({name: ", ".join(missing) for name in parts.values()})
    return partial


def _mha_part(target: Target, key: str, name: str) -> Target:
    """A q/k/v name that reached OpenCLIP's MultiheadAttention patches that projection of it."""
    if key.endswith("_attn") and (part := re.search(r"_([qkv])_proj$", name)):
        return target[0], re.sub(r"\.(q|k|v|out)_proj$", f".{part[1]}_proj", target[1])
    return target


def module_name(key: str) -> str:
    """The module part of a tensor key as both clients split it (ComfyUI by suffix, A1111 at the first ``.``)."""
    for up, down in COMFY_PAIRS:
        for suffix in (up, down):
            if key.endswith(suffix):
                return key[: -len(suffix)]
    for suffix in COMFY_EXTRAS:
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key.split(".", 1)[0]


def _scale(alpha, down) -> float:
    return 1.0 if alpha is None else float(alpha) / down.shape[0]


def _product(up, down, shape):
    return (up.float().flatten(1) @ down.float().flatten(1)).reshape(shape)


def comfyui_weight(weight: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
                   alpha: torch.Tensor | float | None = None, dora_scale: torch.Tensor | None = None,
                   strength: float = 1.0) -> torch.Tensor:
    """The weight ComfyUI patches in (``LoRAAdapter.calculate_weight`` + ``weight_decompose``), in float32."""
    weight = weight.float()
    diff = _product(up, down, weight.shape) * _scale(alpha, down)
    if dora_scale is None:
        return weight + strength * diff
    combined = weight + diff
    if dora_scale.shape[0] == weight.shape[0]:  # "wd_on_output_axis": normalised by the base weight's rows
        norm = weight.reshape(weight.shape[0], -1).norm(dim=1).reshape(weight.shape[0], *[1] * (weight.dim() - 1))
    else:
        norm = combined.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)
        norm = norm.reshape(weight.shape[1], *[1] * (weight.dim() - 1)).transpose(0, 1)
    combined = combined * (dora_scale.float() / (norm + torch.finfo(weight.dtype).eps))
    return weight + strength * (combined - weight)


def a1111_weight(weight: torch.Tensor, up: torch.Tensor, down: torch.Tensor,
                 alpha: torch.Tensor | float | None = None, dora_scale: torch.Tensor | None = None,
                 multiplier: float = 1.0) -> torch.Tensor:
    """The weight A1111 patches in (``NetworkModuleLora.calc_updown`` + ``finalize_updown`` +
    ``apply_weight_decompose``), in float32."""
    weight = weight.float()
    updown = _product(up, down, weight.shape) * _scale(alpha, down)
    if dora_scale is not None:
        merged = updown + weight
        norm = merged.transpose(0, 1).reshape(merged.shape[1], -1).norm(dim=1, keepdim=True)
        norm = norm.reshape(merged.shape[1], *[1] * (weight.dim() - 1)).transpose(0, 1)
        updown = merged * (dora_scale.float() / norm) - weight
    return weight + updown * multiplier
