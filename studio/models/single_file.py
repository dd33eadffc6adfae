"""Single-file SD 1.x and SDXL checkpoints: export ours, recognise what a user's file is, and find configs for it.

An exported file uses the original key layout that A1111, ComfyUI and diffusers' ``from_single_file`` read (CompVis
"LDM" names for SD 1.x, Stability's "SGM" names for SDXL) and carries the diffusers component configs (and the
tokenizers, unless they are CLIP's own) as JSON in the safetensors metadata under ``studio.diffusers_config``, so that
a model with a non-standard shape (the toy world's) loads back offline without a separate config folder.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from . import ldm_keys, ldm_keys_sdxl

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
from .checkpoint_kind import (
    V_PRED_KEY,
    ZERO_TERMINAL_SNR_KEY,
    CheckpointKindError,
    check_sd1_keys,
    checkpoint_family,
    has_zero_terminal_snr,
    is_v_prediction,
)

CONFIG_METADATA_KEY = "studio.diffusers_config"
SD15_CONFIG_DIR = Path(__file__).parent / "sd15"
SDXL_CONFIG_DIR = Path(__file__).parent / "sdxl"
BUILTIN_SD15_TOKENIZER = "sd15"
BUILTIN_SDXL_TOKENIZER_2 = "sdxl-tokenizer-2"
# CLIP's vocabulary as shipped here: SD 1.x / SDXL's first tokenizer pads with <|endoftext|>, SDXL's second with "!".
BUILTIN_TOKENIZERS = {
    BUILTIN_SD15_TOKENIZER: SD15_CONFIG_DIR / "tokenizer",
    BUILTIN_SDXL_TOKENIZER_2: SDXL_CONFIG_DIR / "tokenizer_2",
}
_COMPONENT_CONFIGS = {
    "unet": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "text_encoder_2": "config.json",
    "scheduler": "scheduler_config.json",
}

__all__ = [
    "CONFIG_METADATA_KEY", "SD15_CONFIG_DIR", "SDXL_CONFIG_DIR", "CheckpointKindError", "check_sd1_keys",
    "checkpoint_family", "export_single_file", "has_zero_terminal_snr", "is_v_prediction", "pipeline_configs",
    "read_header", "read_pickle_keys", "write_config_folder",
]


def export_single_file(pipeline_or_folder: DiffusionPipeline | str | os.PathLike, out_path: str | os.PathLike,
                       dtype: torch.dtype | None = None, *,
                       v_pred: bool = False, zero_terminal_snr: bool = False) -> Path:
    """Write a diffusers SD 1.x or SDXL pipeline (object or folder) as one ``.safetensors`` in the original layout.

    ``dtype`` (e.g. ``torch.float16``) casts the floating-point weights; by default they are written as they are.
    ``v_pred`` adds the empty ``v_pred`` tensor and ModelSpec metadata that v-prediction releases (NoobAI-XL v-pred)
    carry, and writes the embedded scheduler config as v-prediction; ``zero_terminal_snr`` adds the ``ztsnr``
    marker and a zero-terminal-SNR schedule on top. A pipeline that still has LoRA adapters injected is refused:
    its weights would be saved as ``base_layer`` keys that no loader reads (fuse or unload the adapters first).
    """
    from safetensors.torch import save

    from studio.util.fs import atomic_write_bytes

    out = Path(out_path)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out} must end in .safetensors: pass an output path like model.safetensors.")
    if zero_terminal_snr and not v_pred:
        raise ValueError("zero_terminal_snr=True describes a v-prediction model: pass v_pred=True with it.")
    pipe = _open_pipeline(pipeline_or_folder)
    state = _single_file_state(pipe)
    configs = pipeline_configs(pipe)
    metadata = {"format": "pt"}
    if v_pred:
        state[V_PRED_KEY] = torch.empty(0)
        metadata["modelspec.prediction_type"] = "v"
        configs["scheduler"].update(prediction_type="v_prediction")
    if zero_terminal_snr:
        state[ZERO_TERMINAL_SNR_KEY] = torch.empty(0)
        configs["scheduler"].update(rescale_betas_zero_snr=True, timestep_spacing="trailing")
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    metadata[CONFIG_METADATA_KEY] = json.dumps(configs, sort_keys=True)
    return atomic_write_bytes(out, save(state, metadata=metadata))


def _open_pipeline(pipeline_or_folder):
    """The pipeline object itself, or the SD 1.x / SDXL pipeline saved in a diffusers folder."""
    if not isinstance(pipeline_or_folder, (str, os.PathLike)):
        return pipeline_or_folder
    from diffusers import StableDiffusionPipeline, StableDiffusionXLPipeline

    folder = Path(pipeline_or_folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ValueError(f"{folder} has no model_index.json: pass a diffusers pipeline folder or a pipeline object.")
    if "text_encoder_2" in json.loads(index_path.read_text(encoding="utf-8")):
        return StableDiffusionXLPipeline.from_pretrained(str(folder), local_files_only=True)
    return StableDiffusionPipeline.from_pretrained(
        str(folder), safety_checker=None, requires_safety_checker=False, local_files_only=True
    )


def _is_sdxl(pipe) -> bool:
    return getattr(pipe, "text_encoder_2", None) is not None


def _single_file_state(pipe) -> dict[str, torch.Tensor]:
    """Every weight of ``pipe`` under its single-file name, on the CPU and contiguous."""
    modules = [pipe.unet, pipe.text_encoder, getattr(pipe, "text_encoder_2", None)]
    if _is_sdxl(pipe) and pipe.text_encoder is None:
        raise ValueError("the pipeline has no CLIP ViT-L text encoder (an SDXL refiner): export an SDXL base pipeline.")
    for module in filter(None, modules):
        if any("lora_" in key or ".base_layer." in key for key in module.state_dict()):
            raise ValueError(
                "the pipeline still has LoRA adapters in it: fuse_lora() and unload_lora_weights() before exporting."
            )
    if _is_sdxl(pipe):
        state = ldm_keys_sdxl.sdxl_to_sgm(pipe)
    else:
        state = {}
        state.update(ldm_keys.unet_to_ldm(pipe.unet.state_dict(), dict(pipe.unet.config)))
        state.update(ldm_keys.vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)))
        state.update(ldm_keys.text_encoder_to_ldm(pipe.text_encoder.state_dict()))
    return {key: value.detach().cpu().contiguous() for key, value in state.items()}


def pipeline_configs(pipe: DiffusionPipeline) -> dict:
    """The diffusers component configs of ``pipe`` and its tokenizers, as plain JSON-ready data."""
    configs = {
        "model_index": _model_index(pipe),
        "unet": json.loads(pipe.unet.to_json_string()),
        "vae": json.loads(pipe.vae.to_json_string()),
        "scheduler": json.loads(pipe.scheduler.to_json_string()),
        "text_encoder": json.loads(pipe.text_encoder.config.to_json_string()),
        "tokenizer": _tokenizer_record(pipe.tokenizer),
    }
    if _is_sdxl(pipe):
        configs["text_encoder_2"] = json.loads(pipe.text_encoder_2.config.to_json_string())
        configs["tokenizer_2"] = _tokenizer_record(pipe.tokenizer_2)
    return configs


def _model_index(pipe) -> dict:
    shared = {
        "scheduler": ["diffusers", type(pipe.scheduler).__name__],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    if _is_sdxl(pipe):
        return {
            "_class_name": "StableDiffusionXLPipeline",
            "force_zeros_for_empty_prompt": bool(pipe.config.get("force_zeros_for_empty_prompt", True)),
            "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
            "tokenizer_2": ["transformers", "CLIPTokenizer"],
            **shared,
        }
    return {
        "_class_name": "StableDiffusionPipeline",
        "feature_extractor": [None, None],
        "safety_checker": [None, None],
        "requires_safety_checker": False,
        **shared,
    }


def _tokenizer_record(tokenizer) -> dict:
    """``{"builtin": name}`` for CLIP's own vocabulary with a shipped padding, else the saved files as text."""
    if tokenizer.model_max_length == 77:
        vocab = tokenizer.get_vocab()
        for name, folder in BUILTIN_TOKENIZERS.items():
            pad = json.loads((folder / "special_tokens_map.json").read_text(encoding="utf-8"))["pad_token"]
            if tokenizer.pad_token == pad and vocab == _shipped_vocab(folder):
                return {"builtin": name}
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        files = {p.name: p.read_text(encoding="utf-8") for p in Path(folder).iterdir() if p.is_file()}
    return {"files": files}


def _shipped_vocab(folder: Path) -> dict:
    return json.loads((folder / "vocab.json").read_text(encoding="utf-8"))


def write_config_folder(configs: dict, folder: Path) -> Path:
    """Materialise ``pipeline_configs`` output as a diffusers folder without weights (for ``from_single_file``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(configs["model_index"], indent=2))
    for component, file_name in _COMPONENT_CONFIGS.items():
        if component in configs:
            (folder / component).mkdir(exist_ok=True)
            (folder / component / file_name).write_text(json.dumps(configs[component], indent=2))
    for component in ("tokenizer", "tokenizer_2"):
        if component in configs:
            _write_tokenizer(configs[component], folder / component)
    return folder


def _write_tokenizer(record: dict, target: Path) -> None:
    if "builtin" in record:
        shutil.copytree(BUILTIN_TOKENIZERS[record["builtin"]], target, dirs_exist_ok=True)
        return
    target.mkdir(exist_ok=True)
    for name, text in record["files"].items():
        (target / Path(name).name).write_text(text, encoding="utf-8")


def read_header(path: Path) -> tuple[list[str], dict[str, str]]:
    """Tensor names and metadata of a ``.safetensors`` file, without reading any weights."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return list(handle.keys()), dict(handle.metadata() or {})


def read_pickle_keys(path: Path) -> list[str]:
    """Tensor names of a ``.ckpt`` (only called after the user opted in to pickle files)."""
    try:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:
        checkpoint = torch.load(str(path), map_location="cpu", weights_only=True)
    while isinstance(checkpoint, dict) and "state_dict" in checkpoint:
        checkpoint = checkpoint["state_dict"]
    return [key for key in checkpoint if isinstance(key, str)]
