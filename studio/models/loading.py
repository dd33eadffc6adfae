"""Load an SD 1.x base model from wherever the user points: embedded toy world, folder, single file or hub id.

Every failure a user can cause (missing path, wrong kind of file, no network) becomes a ``ModelLoadError`` whose
message is one sentence saying what is wrong and what to pass instead.
"""
from __future__ import annotations

import json
import re
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import studio

from . import single_file

SINGLE_FILE_SUFFIXES = {".safetensors"}
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Shapes every SD 1.x checkpoint has; a file that differs needs its own configs (inpainting, SD 2.x-like, toy).
_SD15_SHAPES = {
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": [49408, 768],
}


class ModelLoadError(ValueError):
    """The base model could not be loaded; the message says what to pass instead."""


@dataclass
class Components:
    """The parts of an SD 1.x model that training needs.

    ``noise_scheduler`` is a ``DDPMScheduler`` built from the model's own scheduler config, so prediction_type,
    rescale_betas_zero_snr and timestep_spacing are the model's. ``kind`` is one of "embedded", "folder",
    "single_file", "hub"; ``source`` is the resolved path or hub id.
    """

    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    noise_scheduler: Any
    source: str
    kind: str


def default_model_path() -> Path:
    """Where the embedded toy-world model lives (a diffusers folder)."""
    return Path(studio.__file__).parent.parent / "assets" / "toy-world"


def load_components(
    base_model: str = "", base_model_config: str = "", dtype: torch.dtype = torch.float32, allow_pickle: bool = False
) -> Components:
    """Load tokenizer, text encoder, VAE, UNet and a DDPM noise scheduler for training (see ``load_pipeline``)."""
    from diffusers import DDPMScheduler

    pipe, source, kind = _load(base_model, base_model_config, dtype, allow_pickle)
    return Components(
        tokenizer=pipe.tokenizer,
        text_encoder=pipe.text_encoder,
        vae=pipe.vae,
        unet=pipe.unet,
        noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config),
        source=source,
        kind=kind,
    )


def load_pipeline(
    base_model: str = "", base_model_config: str = "", dtype: torch.dtype = torch.float32, allow_pickle: bool = False
):
    """A ``StableDiffusionPipeline`` (safety checker off) for ``base_model``.

    ``base_model``: "" for the embedded toy world, a diffusers folder, an SD 1.x ``.safetensors`` checkpoint, a
    ``.ckpt`` (only with ``allow_pickle=True``), or a hub id ``org/name``. ``base_model_config``: a diffusers
    folder whose configs describe a single-file checkpoint; by default the configs embedded in the file are
    used, else the shipped SD 1.5 ones.
    """
    return _load(base_model, base_model_config, dtype, allow_pickle)[0]


def _load(base_model: str, base_model_config: str, dtype: torch.dtype, allow_pickle: bool):
    kind, source = _resolve(str(base_model or "").strip())
    if kind in ("embedded", "folder"):
        return _load_folder(Path(source), dtype), source, kind
    if kind == "hub":
        return _load_hub(source, dtype), source, kind
    return _load_single_file(Path(source), base_model_config, dtype, allow_pickle), source, kind


def _resolve(base_model: str) -> tuple[str, str]:
    """(kind, source) for what the user typed, or a ``ModelLoadError`` saying what to pass."""
    if not base_model:
        path = default_model_path()
        if not (path / "model_index.json").is_file():
            raise ModelLoadError(
                f"the embedded toy-world model is missing at {path}: build it with "
                "`python -m studio.toyworld.pretrain --out assets/toy-world` or pass a base model."
            )
        return "embedded", str(path)
    path = Path(base_model).expanduser()
    if path.is_dir():
        _check_model_index(path)
        return "folder", str(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix not in SINGLE_FILE_SUFFIXES | PICKLE_SUFFIXES:
            raise ModelLoadError(
                f"{path} is not a model file: pass an SD 1.x .safetensors checkpoint or a diffusers folder."
            )
        return "single_file", str(path)
    if _HUB_ID.match(base_model) and path.suffix.lower() not in SINGLE_FILE_SUFFIXES | PICKLE_SUFFIXES:
        return "hub", base_model
    raise ModelLoadError(
        f"{base_model} does not exist: pass a diffusers folder, an SD 1.x .safetensors file or a hub id like org/name."
    )


def _check_model_index(folder: Path) -> None:
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise ModelLoadError(
            f"{folder} has no model_index.json, so it is not a diffusers model folder: "
            "pass the folder that contains model_index.json or a .safetensors checkpoint."
        )
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelLoadError(f"{index_path} cannot be read ({error}): pass an intact diffusers folder.") from error
    _check_index_kind(index, str(folder))


def _check_index_kind(index: dict, name: str) -> None:
    if "text_encoder_2" in index or "XL" in str(index.get("_class_name", "")):
        raise ModelLoadError(f"{name} is an SDXL model, which is not supported yet: pass an SD 1.x model.")
    missing = [c for c in ("unet", "vae", "text_encoder", "tokenizer") if c not in index]
    if missing:
        kind = index.get("_class_name", "non-SD")
        raise ModelLoadError(f"{name} is a {kind} folder without {', '.join(missing)}: pass an SD 1.x model.")


def _pipeline_class():
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline


_NO_SAFETY = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}


def _quiet_dtype(dtype: torch.dtype) -> dict:
    """``torch_dtype`` works in every diffusers we support; newer ones warn that it is renamed ``dtype``."""
    warnings.filterwarnings("ignore", message=".*Please use `dtype` instead.*", category=FutureWarning)
    return {"torch_dtype": dtype}


def _check_no_adapter_weights(folder: Path) -> None:
    """Refuse folders saved after ``add_adapter`` (spike pitfall 4): their ``base_layer`` keys reload as random."""
    for weights in sorted(folder.glob("*/*.safetensors")):
        keys, _ = single_file.read_header(weights)
        if any(".base_layer." in key or ".lora_A." in key for key in keys):
            raise ModelLoadError(
                f"{weights.parent.name} in {folder} was saved with LoRA adapters inside, so its attention weights would "
                "load as random: save the base model before adding adapters, or fuse and unload them first."
            )


def _load_folder(folder: Path, dtype: torch.dtype):
    _check_no_adapter_weights(folder)
    try:
        return _pipeline_class().from_pretrained(str(folder), local_files_only=True, **_quiet_dtype(dtype), **_NO_SAFETY)
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(
            f"could not load the diffusers folder {folder} ({_first_line(error)}): pass a complete SD 1.x diffusers folder."
        ) from error


def _load_hub(repo_id: str, dtype: torch.dtype):
    """A hub model: from the local cache when the hub cannot be reached (no minutes of retries), else downloaded."""
    from studio.util.hub import cache_only

    pipeline_class = _pipeline_class()
    local = cache_only()
    try:
        index = pipeline_class.load_config(repo_id, local_files_only=local)
    except Exception as error:  # offline / 404 / auth surface as different classes across huggingface_hub versions
        raise ModelLoadError(_hub_message(repo_id, local)) from error
    _check_index_kind(dict(index), repo_id)
    try:
        return pipeline_class.from_pretrained(repo_id, local_files_only=local, **_quiet_dtype(dtype), **_NO_SAFETY)
    except Exception as error:
        raise ModelLoadError(_hub_message(repo_id, local)) from error


def _hub_message(repo_id: str, local: bool = False) -> str:
    where = "the hub is not reachable and it is not in the local cache" if local else "no network / not found"
    return f"could not download {repo_id}: {where} — pass a local folder or a .safetensors file."


def _load_single_file(path: Path, base_model_config: str, dtype: torch.dtype, allow_pickle: bool):
    keys, metadata = _checkpoint_header(path, allow_pickle)
    try:
        single_file.check_sd1_keys(keys, path.name)
    except single_file.CheckpointKindError as error:
        raise ModelLoadError(str(error)) from error
    with tempfile.TemporaryDirectory(prefix="studio-config-") as scratch:
        config_dir, described = _config_folder(path, base_model_config, metadata, Path(scratch))
        try:
            return _pipeline_class().from_single_file(
                str(path), config=str(config_dir), local_files_only=True, **_quiet_dtype(dtype), **_NO_SAFETY
            )
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelLoadError(
                f"{path.name} does not match {described} ({_first_line(error)}): "
                "pass base_model_config=<a diffusers folder with this checkpoint's configs>."
            ) from error


def _checkpoint_header(path: Path, allow_pickle: bool) -> tuple[list[str], dict[str, str]]:
    """Tensor names and metadata of a single file; pickle files only when the user opted in."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise ModelLoadError(
                f"{path.name} is a pickle checkpoint, which can run code when loaded: "
                "convert it to .safetensors or opt in with allow_pickle=True."
            )
        try:
            return single_file.read_pickle_keys(path), {}
        except Exception as error:  # UnpicklingError for objects weights_only refuses, RuntimeError for others
            raise ModelLoadError(
                f"{path.name} cannot be read as plain tensors ({_first_line(error)}): convert it to .safetensors."
            ) from error
    try:
        return single_file.read_header(path)
    except Exception as error:  # safetensors raises its own error type for a corrupt header
        raise ModelLoadError(
            f"{path.name} is not a readable .safetensors file ({_first_line(error)}): pass an intact SD 1.x checkpoint."
        ) from error


def _config_folder(path: Path, base_model_config: str, metadata: dict[str, str], scratch: Path) -> tuple[Path, str]:
    """(folder, description) of the configs for a single file: the user's, else the file's own, else SD 1.5's."""
    if base_model_config:
        folder = Path(base_model_config).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(
                f"base_model_config {base_model_config} is not a folder: "
                "pass a diffusers folder (with model_index.json) whose configs match the checkpoint."
            )
        _check_model_index(folder)
        return folder, f"the configs in {folder}"
    if single_file.CONFIG_METADATA_KEY in metadata:
        try:
            configs = json.loads(metadata[single_file.CONFIG_METADATA_KEY])
            return single_file.write_config_folder(configs, scratch / "embedded"), "the configs embedded in it"
        except (ValueError, KeyError, TypeError, OSError) as error:
            raise ModelLoadError(
                f"the configs embedded in {path.name} are damaged ({_first_line(error)}): "
                "pass base_model_config=<a diffusers folder>."
            ) from error
    if path.suffix.lower() == ".safetensors":
        _check_sd15_shapes(path)
    return single_file.SD15_CONFIG_DIR, "the SD 1.5 configs"


def _check_sd15_shapes(path: Path) -> None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        names = set(handle.keys())
        for key, expected in _SD15_SHAPES.items():
            shape = list(handle.get_slice(key).get_shape()) if key in names else None
            if shape != expected:
                raise ModelLoadError(
                    f"{path.name} is not shaped like SD 1.5 ({key} is {shape}, expected {expected}): "
                    "pass base_model_config=<a diffusers folder with this model's configs>."
                )


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
