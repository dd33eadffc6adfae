"""Single-file SD 1.x checkpoints: export ours, recognise what a user's file is, and find configs for it.

An exported file uses the original ("LDM") key layout that A1111, ComfyUI and diffusers' ``from_single_file``
read, and carries the diffusers component configs (and the tokenizer, unless it is CLIP's own) as JSON in the
safetensors metadata under ``studio.diffusers_config``, so that a model with a non-standard shape (the toy
world's) loads back offline without a separate config folder.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from . import ldm_keys

CONFIG_METADATA_KEY = "studio.diffusers_config"
SD15_CONFIG_DIR = Path(__file__).parent / "sd15"
BUILTIN_SD15_TOKENIZER = "sd15"


class CheckpointKindError(ValueError):
    """A file that is not an SD 1.x checkpoint (a LoRA, SDXL, SD 2.x, one diffusers component, ...)."""


def export_single_file(pipeline_or_folder, out_path: str | os.PathLike, dtype: torch.dtype | None = None) -> Path:
    """Write a diffusers SD 1.x pipeline (object or folder) as one ``.safetensors`` in the original layout.

    ``dtype`` (e.g. ``torch.float16``) casts the floating-point weights; by default they are written as they are.
    A pipeline that still has LoRA adapters injected is refused: its weights would be saved as ``base_layer``
    keys that no loader reads (fuse or unload the adapters first).
    """
    from diffusers import StableDiffusionPipeline
    from safetensors.torch import save

    from studio.util.fs import atomic_write_bytes

    out = Path(out_path)
    if out.suffix != ".safetensors":
        raise ValueError(f"{out} must end in .safetensors: pass an output path like model.safetensors.")
    pipe = pipeline_or_folder
    if isinstance(pipeline_or_folder, (str, os.PathLike)):
        pipe = StableDiffusionPipeline.from_pretrained(
            str(pipeline_or_folder), safety_checker=None, requires_safety_checker=False, local_files_only=True
        )
    state = _ldm_state_dict(pipe)
    if dtype is not None:
        state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    metadata = {"format": "pt", CONFIG_METADATA_KEY: json.dumps(pipeline_configs(pipe), sort_keys=True)}
    return atomic_write_bytes(out, save(state, metadata=metadata))


def _ldm_state_dict(pipe) -> dict[str, torch.Tensor]:
    unet_state = pipe.unet.state_dict()
    te_state = pipe.text_encoder.state_dict()
    if any("lora_" in key or ".base_layer." in key for key in list(unet_state) + list(te_state)):
        raise ValueError(
            "the pipeline still has LoRA adapters in it: fuse_lora() and unload_lora_weights() before exporting."
        )
    state = {}
    state.update(ldm_keys.unet_to_ldm(unet_state, dict(pipe.unet.config)))
    state.update(ldm_keys.vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)))
    state.update(ldm_keys.text_encoder_to_ldm(te_state))
    return {key: value.detach().cpu().contiguous() for key, value in state.items()}


def pipeline_configs(pipe) -> dict:
    """The diffusers component configs of ``pipe`` and its tokenizer, as plain JSON-ready data."""
    scheduler_class = type(pipe.scheduler).__name__
    return {
        "model_index": {
            "_class_name": "StableDiffusionPipeline",
            "feature_extractor": [None, None],
            "safety_checker": [None, None],
            "requires_safety_checker": False,
            "scheduler": ["diffusers", scheduler_class],
            "text_encoder": ["transformers", "CLIPTextModel"],
            "tokenizer": ["transformers", "CLIPTokenizer"],
            "unet": ["diffusers", "UNet2DConditionModel"],
            "vae": ["diffusers", "AutoencoderKL"],
        },
        "unet": json.loads(pipe.unet.to_json_string()),
        "vae": json.loads(pipe.vae.to_json_string()),
        "scheduler": json.loads(pipe.scheduler.to_json_string()),
        "text_encoder": json.loads(pipe.text_encoder.config.to_json_string()),
        "tokenizer": _tokenizer_record(pipe.tokenizer),
    }


def _tokenizer_record(tokenizer) -> dict:
    """``{"builtin": "sd15"}`` for CLIP's own vocabulary, else the tokenizer's saved files as text."""
    shipped = json.loads((SD15_CONFIG_DIR / "tokenizer" / "vocab.json").read_text(encoding="utf-8"))
    if tokenizer.get_vocab() == shipped and tokenizer.model_max_length == 77:
        return {"builtin": BUILTIN_SD15_TOKENIZER}
    with tempfile.TemporaryDirectory() as folder:
        tokenizer.save_pretrained(folder)
        files = {p.name: p.read_text(encoding="utf-8") for p in Path(folder).iterdir() if p.is_file()}
    return {"files": files}


def write_config_folder(configs: dict, folder: Path) -> Path:
    """Materialise ``pipeline_configs`` output as a diffusers folder without weights (for ``from_single_file``)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(configs["model_index"], indent=2))
    names = {"unet": "config.json", "vae": "config.json", "text_encoder": "config.json", "scheduler": "scheduler_config.json"}
    for component, file_name in names.items():
        (folder / component).mkdir(exist_ok=True)
        (folder / component / file_name).write_text(json.dumps(configs[component], indent=2))
    tokenizer = configs["tokenizer"]
    if tokenizer.get("builtin") == BUILTIN_SD15_TOKENIZER:
        shutil.copytree(SD15_CONFIG_DIR / "tokenizer", folder / "tokenizer", dirs_exist_ok=True)
    else:
        (folder / "tokenizer").mkdir(exist_ok=True)
        for name, text in tokenizer["files"].items():
            (folder / "tokenizer" / Path(name).name).write_text(text, encoding="utf-8")
    return folder


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


def check_sd1_keys(keys: list[str], name: str) -> None:
    """Raise ``CheckpointKindError`` with one sentence unless ``keys`` are an SD 1.x single-file checkpoint."""

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if any(k.startswith(("lora_unet_", "lora_te", "unet.", "text_encoder.")) or ".lora_" in k for k in keys):
        raise CheckpointKindError(
            f"{name} is a LoRA file, not a base model: pass it as a LoRA and pass an SD 1.x checkpoint "
            "or diffusers folder as the base model."
        )
    if has("conditioner.embedders.") or has("model.diffusion_model.label_emb."):
        raise CheckpointKindError(
            f"{name} is an SDXL checkpoint, which is not supported yet: pass an SD 1.x checkpoint (.safetensors) or diffusers folder."
        )
    if has("cond_stage_model.model."):
        raise CheckpointKindError(
            f"{name} is an SD 2.x checkpoint (OpenCLIP text encoder), which is not supported yet: "
            "pass an SD 1.x checkpoint or diffusers folder."
        )
    if has("down_blocks.") or has("encoder.layers.") or has("text_model.") or has("encoder.down_blocks."):
        raise CheckpointKindError(
            f"{name} holds a single diffusers component, not a whole model: pass the folder that contains model_index.json."
        )
    parts = (("UNet", ldm_keys.UNET_PREFIX), ("VAE", ldm_keys.VAE_PREFIX), ("text encoder", "cond_stage_model.transformer."))
    missing = [part for part, prefix in parts if not has(prefix)]
    if missing:
        raise CheckpointKindError(
            f"{name} is not a complete SD 1.x checkpoint (no {', '.join(missing)} weights found): "
            "pass a full SD 1.x .safetensors checkpoint or a diffusers folder."
        )


def checkpoint_family(keys: list[str], name: str) -> str:
    """"sdxl" or "sd1" for a complete base checkpoint, else ``CheckpointKindError`` (interim: SDXL by its embedders)."""
    if any(k.startswith("conditioner.embedders.") for k in keys):
        return "sdxl"
    check_sd1_keys(keys, name)
    return "sd1"


def is_v_prediction(keys: list[str], metadata: dict[str, str]) -> bool:
    return "v_pred" in keys


def has_zero_terminal_snr(keys: list[str], metadata: dict[str, str]) -> bool:
    return "ztsnr" in keys
