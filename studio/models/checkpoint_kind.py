"""What a single-file checkpoint is, read from its tensor names and metadata alone (no weights are loaded).

A base model is "sd1" (CompVis layout: ``cond_stage_model.transformer.``), "sdxl" (Stability's SGM layout:
``conditioner.embedders.0`` CLIP ViT-L and ``conditioner.embedders.1`` OpenCLIP ViT-bigG, as Pony, Illustrious and
NoobAI ship) or "flux" (a FLUX.1 transformer in Black Forest Labs' layout ``double_blocks.N.…`` / ``single_blocks.N.…``,
bare or under ComfyUI's ``model.diffusion_model.``, or in diffusers' layout; ComfyUI's all-in-one files add
``text_encoders.`` and ``vae.``). Everything else gets one sentence saying what the file is and what to pass instead.
"""
from __future__ import annotations

from .ldm_keys import UNET_PREFIX, VAE_PREFIX
from .ldm_keys_sdxl import CLIP_L_PREFIX, OPEN_CLIP_PREFIX

SD1_PARTS = (("UNet", UNET_PREFIX), ("VAE", VAE_PREFIX), ("text encoder", "cond_stage_model.transformer."))
SDXL_PARTS = (
    ("UNet", UNET_PREFIX),
    ("VAE", VAE_PREFIX),
    ("text encoder 1 (CLIP ViT-L)", CLIP_L_PREFIX),
    ("text encoder 2 (OpenCLIP ViT-bigG)", OPEN_CLIP_PREFIX),
)
# kohya sd-scripts writes "v" for v-prediction in its ModelSpec metadata; the longer spellings are diffusers' names.
V_PREDICTION_TYPES = {"v", "v_prediction", "v-prediction"}
V_PRED_KEY = "v_pred"
ZERO_TERMINAL_SNR_KEY = "ztsnr"
ACCEPTED = "an SD 1.x, SDXL or FLUX.1"
FLUX_PARTS = (("input layer", "img_in."), ("double-stream blocks", "double_blocks."),
              ("single-stream blocks", "single_blocks."), ("final layer", "final_layer."))
FLUX_DIFFUSERS_PARTS = (("input layer", "x_embedder."), ("double-stream blocks", "transformer_blocks."),
                        ("single-stream blocks", "single_transformer_blocks."), ("final layer", "proj_out."))


class CheckpointKindError(ValueError):
    """A file that is not a usable base checkpoint (a LoRA, SD 2.x, FLUX.1, one diffusers component, ...)."""


def checkpoint_family(keys: list[str], name: str) -> str:
    """"sd1", "sdxl" or "flux" for a complete base model file; otherwise ``CheckpointKindError`` with one
    sentence."""
    return _classify(list(keys), name, ACCEPTED)


def check_sd1_keys(keys: list[str], name: str) -> None:
    """Raise ``CheckpointKindError`` with one sentence unless ``keys`` are an SD 1.x single-file checkpoint."""
    family = _classify(list(keys), name, "an SD 1.x")
    if family != "sd1":
        raise CheckpointKindError(
            f"{name} is {'a FLUX.1' if family == 'flux' else 'an SDXL'} checkpoint, not an SD 1.x one: "
            "pass an SD 1.x checkpoint (.safetensors) or diffusers folder."
        )


def is_v_prediction(keys: list[str], metadata: dict[str, str]) -> bool:
    """True for a v-prediction model: a ``v_pred`` marker tensor (NoobAI-XL v-pred, read by ComfyUI) or ModelSpec
    metadata ``modelspec.prediction_type`` naming v."""
    declared = str((metadata or {}).get("modelspec.prediction_type", "")).strip().lower()
    return V_PRED_KEY in keys or declared in V_PREDICTION_TYPES


def has_zero_terminal_snr(keys: list[str], metadata: dict[str, str]) -> bool:
    """True when the noise schedule was rescaled to zero terminal SNR: a ``ztsnr`` marker tensor (ComfyUI then
    samples with a zero-SNR schedule) or kohya's ``ss_zero_terminal_snr`` training flag set to True."""
    flag = str((metadata or {}).get("ss_zero_terminal_snr", "")).strip().lower()
    return ZERO_TERMINAL_SNR_KEY in keys or flag == "true"


def _classify(keys: list[str], name: str, accepted: str) -> str:
    _refuse_other_kinds(keys, name, accepted)
    if _is_flux(keys):
        _check_flux(keys, name)
        return "flux"
    if _has(keys, "conditioner.embedders.") or _has(keys, UNET_PREFIX + "label_emb."):
        _require(keys, name, "SDXL", SDXL_PARTS)
        return "sdxl"
    _require(keys, name, "SD 1.x", SD1_PARTS)
    return "sd1"


def _refuse_other_kinds(keys: list[str], name: str, accepted: str) -> None:
    """One sentence for every kind of file that is not an SD 1.x / SDXL base checkpoint, checked in this order:
    adapters first (a FLUX or SDXL LoRA names the blocks of its base model)."""
    if any(k.startswith(("lora_unet_", "lora_te", "unet.", "text_encoder.")) or ".lora_" in k for k in keys):
        raise CheckpointKindError(
            f"{name} is a LoRA file, not a base model: pass it as a LoRA and pass {accepted} checkpoint "
            "or diffusers folder as the base model."
        )
    if any("joint_blocks." in k for k in keys):
        raise CheckpointKindError(
            f"{name} is a Stable Diffusion 3 checkpoint, which is not supported: "
            f"pass {accepted} checkpoint (.safetensors) or diffusers folder."
        )
    if _has(keys, "conditioner.embedders.0.model."):
        raise CheckpointKindError(
            f"{name} is an SDXL refiner checkpoint (OpenCLIP as its only text encoder), which is not supported: "
            f"pass {accepted} base checkpoint (.safetensors) or diffusers folder."
        )
    if _has(keys, "cond_stage_model.model."):
        raise CheckpointKindError(
            f"{name} is an SD 2.x checkpoint (OpenCLIP text encoder), which is not supported yet: "
            f"pass {accepted} checkpoint or diffusers folder."
        )
    if any(_has(keys, prefix) for prefix in ("down_blocks.", "encoder.layers.", "text_model.", "encoder.down_blocks.")):
        raise CheckpointKindError(
            f"{name} holds a single diffusers component, not a whole model: "
            "pass the folder that contains model_index.json."
        )
    if any(_has(keys, prefix) for prefix in ("encoder.block.", "shared.", "decoder.conv_in.", "encoder.conv_in.")):
        raise CheckpointKindError(
            f"{name} holds a text encoder (T5) or VAE alone, not a whole model: pass {accepted} model file or "
            "diffusers folder as the base model (a FLUX.1 transformer takes these parts from base_model_config)."
        )


def _is_flux(keys: list[str]) -> bool:
    return any("double_blocks." in k or "single_blocks." in k or "single_transformer_blocks." in k for k in keys)


def _check_flux(keys: list[str], name: str) -> None:
    """One sentence for FLUX.1-shaped files that cannot be trained on: pre-quantized copies, Chroma, parts."""
    if any(k.endswith((".absmax", ".quant_map")) or ".quant_state." in k for k in keys):
        raise CheckpointKindError(
            f"{name} is a FLUX.1 transformer quantized with bitsandbytes (NF4), which cannot be trained on: pass the "
            "bf16 or fp8 FLUX.1 file and set base_weights: nf4 to train it in 4 bits.")
    if any(k.endswith(".scale_weight") or k == "scaled_fp8" for k in keys):
        raise CheckpointKindError(
            f"{name} is a scaled-fp8 FLUX.1 file (ComfyUI's fp8_scaled), which is not supported: pass the bf16 or "
            "plain fp8 FLUX.1 file (base_weights: fp8 keeps it in 8 bits while training).")
    if any("distilled_guidance_layer." in k for k in keys):
        raise CheckpointKindError(
            f"{name} is a Chroma checkpoint (a FLUX.1-schnell transformer with its own modulation), which is not "
            f"supported yet: pass {ACCEPTED} model file or diffusers folder.")
    from .flux_keys import is_diffusers_layout, transformer_keys

    prefix, names = transformer_keys(keys)
    names = [k[len(prefix):] for k in names]
    _require(names, name, "FLUX.1", FLUX_DIFFUSERS_PARTS if is_diffusers_layout(names) else FLUX_PARTS,
             what="transformer")


def _require(keys: list[str], name: str, label: str, parts, what: str = "checkpoint") -> None:
    missing = [part for part, prefix in parts if not _has(keys, prefix)]
    if missing:
        raise CheckpointKindError(
            f"{name} is not a complete {label} {what} (no {', '.join(missing)} weights found): "
            f"pass a full {label} .safetensors {what} or a diffusers folder."
        )


def _has(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)
