"""What a single-file checkpoint is, read from its tensor names and metadata alone (no weights are loaded).

A base model is "sd1" (CompVis layout: ``cond_stage_model.transformer.``) or "sdxl" (Stability's SGM layout:
``conditioner.embedders.0`` CLIP ViT-L and ``conditioner.embedders.1`` OpenCLIP ViT-bigG, as Pony, Illustrious and
NoobAI ship). Everything else gets one sentence saying what the file is and what to pass instead.
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


class CheckpointKindError(ValueError):
    """A file that is not a usable base checkpoint (a LoRA, SD 2.x, FLUX.1, one diffusers component, ...)."""


def checkpoint_family(keys: list[str], name: str) -> str:
    """"sd1" or "sdxl" for a complete base checkpoint; otherwise ``CheckpointKindError`` with one sentence."""
    return _classify(list(keys), name, "an SD 1.x or SDXL")


def check_sd1_keys(keys: list[str], name: str) -> None:
    """Raise ``CheckpointKindError`` with one sentence unless ``keys`` are an SD 1.x single-file checkpoint."""
    if _classify(list(keys), name, "an SD 1.x") != "sd1":
        raise CheckpointKindError(
            f"{name} is an SDXL checkpoint, not an SD 1.x one: "
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
    if any("double_blocks." in k or "single_blocks." in k or k.startswith("single_transformer_blocks.") for k in keys):
        raise CheckpointKindError(
            f"{name} is a FLUX.1 checkpoint, which is not supported yet: "
            f"pass {accepted} checkpoint (.safetensors) or diffusers folder."
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


def _require(keys: list[str], name: str, label: str, parts) -> None:
    missing = [part for part, prefix in parts if not _has(keys, prefix)]
    if missing:
        raise CheckpointKindError(
            f"{name} is not a complete {label} checkpoint (no {', '.join(missing)} weights found): "
            f"pass a full {label} .safetensors checkpoint or a diffusers folder."
        )


def _has(keys: list[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in keys)
