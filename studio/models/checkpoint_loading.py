"""Single-file checkpoints as pipelines: SD 1.x and SDXL files with their configs (the user's, the file's own or
the family's shipped ones), FLUX.1 files through ``flux_single_file``.

What a file is comes from its tensor names alone (``single_file.checkpoint_family``); pickle files (``.ckpt``) are
read only when the user opted in.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

from . import single_file
from .families import Family, family_named
from .flux_single_file import load_flux_single_file
from .loading import PICKLE_SUFFIXES, ModelLoadError, _first_line, _no_safety, _quiet_dtype, check_model_index

# Shapes every SD 1.x checkpoint has; a file that differs needs its own configs (inpainting, SD 2.x-like, toy).
_SD15_SHAPES = {
    "model.diffusion_model.input_blocks.0.0.weight": [320, 4, 3, 3],
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": [49408, 768],
}


def load_single_file(path: Path, base_model_config: str, dtype: torch.dtype, allow_pickle: bool):
    """The pipeline of a single-file checkpoint (see ``loading.load_pipeline`` for the arguments)."""
    keys, metadata = _checkpoint_header(path, allow_pickle)
    try:
        family = family_named(single_file.checkpoint_family(keys, path.name))
    except single_file.CheckpointKindError as error:
        raise ModelLoadError(str(error)) from error
    if family.name == "flux":
        return load_flux_single_file(path, keys, base_model_config, dtype)
    with tempfile.TemporaryDirectory(prefix="studio-config-") as scratch:
        config_dir, described = _config_folder(path, family, base_model_config, metadata, Path(scratch))
        try:
            pipe = family.pipeline_class().from_single_file(
                str(path), config=str(config_dir), local_files_only=True, **_quiet_dtype(dtype), **_no_safety(family)
            )
        except (OSError, ValueError, RuntimeError, KeyError) as error:
            raise ModelLoadError(
                f"{path.name} does not match {described} ({_first_line(error)}): "
                "pass base_model_config=<a diffusers folder with this checkpoint's configs>."
            ) from error
    if single_file.is_v_prediction(keys, metadata):
        zero_snr = single_file.has_zero_terminal_snr(keys, metadata)
        pipe.scheduler = type(pipe.scheduler).from_config(
            pipe.scheduler.config, prediction_type="v_prediction",
            **({"rescale_betas_zero_snr": True, "timestep_spacing": "trailing"} if zero_snr else {}))
    return pipe


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
            f"{path.name} is not a readable .safetensors file ({_first_line(error)}): pass an intact SD 1.x, SDXL or "
            "FLUX.1 file."
        ) from error


def _config_folder(path: Path, family: Family, base_model_config: str, metadata: dict[str, str],
                   scratch: Path) -> tuple[Path, str]:
    """(folder, description) of the configs for a single file: the user's, else the file's own, else the family's."""
    if base_model_config:
        folder = Path(base_model_config).expanduser()
        if not folder.is_dir():
            raise ModelLoadError(
                f"base_model_config {base_model_config} is not a folder: "
                "pass a diffusers folder (with model_index.json) whose configs match the checkpoint."
            )
        check_model_index(folder)
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
    if family.name == "sd1" and path.suffix.lower() == ".safetensors":
        _check_sd15_shapes(path)
    return family.config_dir, f"the {family.label} configs"


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
