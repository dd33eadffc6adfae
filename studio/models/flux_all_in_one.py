"""The CLIP, T5 and VAE inside ComfyUI's all-in-one FLUX.1 checkpoints.

ComfyUI saves a whole FLUX.1 model in one file: the transformer under ``model.diffusion_model.``, CLIP-L under
``text_encoders.clip_l.transformer.``, T5-XXL under ``text_encoders.t5xxl.transformer.`` (both in transformers'
own names) and the VAE under ``vae.`` (in the original autoencoder's names). Each part the file holds is built from
``base_model_config``'s config for it and filled from the file, so that folder needs no weights of its own: its
JSON configs and tokenizer files are enough.
"""
from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import torch

from .loading import PICKLE_SUFFIXES, ModelLoadError, _first_line, _quiet_dtype

CLIP_PREFIX = "text_encoders.clip_l.transformer."
T5_PREFIX = "text_encoders.t5xxl.transformer."
VAE_PREFIX = "vae."


def embedded_parts(path: Path, keys: list[str], base: str, local: bool, dtype: torch.dtype) -> dict:
    """``{"text_encoder": CLIP, "text_encoder_2": T5, "vae": VAE}`` for the parts ``path`` holds (none for a
    transformer-only file), in ``dtype``; their configs come from ``base``."""
    from transformers import CLIPTextModel, T5EncoderModel

    parts = {}
    for name, prefix, model_class in (("text_encoder", CLIP_PREFIX, CLIPTextModel),
                                      ("text_encoder_2", T5_PREFIX, T5EncoderModel)):
        names = [key for key in keys if key.startswith(prefix)]
        if names:
            state = read_tensors(path, names, prefix)
            parts[name] = _text_encoder(model_class, base, name, state, local, dtype, path.name)
    vae_names = [key for key in keys if key.startswith(VAE_PREFIX)]
    if vae_names:
        parts["vae"] = _vae(read_tensors(path, vae_names, ""), base, local, dtype, path.name)
    return parts


def read_tensors(path: Path, names: list[str], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors ``names`` of a ``.safetensors`` (or, once the user allowed it, pickle) file, ``prefix`` removed."""
    if path.suffix.lower() in PICKLE_SUFFIXES:
        state = torch.load(str(path), map_location="cpu", weights_only=True)
        while isinstance(state, dict) and "state_dict" in state:
            state = state["state_dict"]
        return {name[len(prefix):]: state[name] for name in names}
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return {name[len(prefix):]: handle.get_tensor(name) for name in names}


def _text_encoder(model_class, base: str, subfolder: str, state: dict[str, torch.Tensor], local: bool,
                  dtype: torch.dtype, file_name: str) -> torch.nn.Module:
    """``model_class`` from the base's config with the file's weights (transformers 4 and 5 name CLIP's layers
    with and without ``text_model.``; both are read)."""
    from accelerate import init_empty_weights

    try:
        config = model_class.config_class.from_pretrained(base, subfolder=subfolder, local_files_only=local)
    except Exception as error:  # missing folder / offline hub: each raises its own error type
        raise ModelLoadError(
            f"{file_name} holds a {subfolder.replace('_', ' ')} but base_model_config {base} has no config for it "
            f"({_first_line(error)}): set base_model_config to a complete FLUX.1 diffusers folder.") from error
    with init_empty_weights():
        model = model_class(config)
    own = set(model.state_dict())
    renamed = {_own_name(key, own): tensor for key, tensor in state.items()}
    model.load_state_dict({key: value for key, value in renamed.items() if key in own}, strict=False, assign=True)
    model.tie_weights()
    missing = [name for name, param in model.named_parameters() if param.is_meta]
    if missing:
        raise ModelLoadError(
            f"{file_name} holds an incomplete {subfolder.replace('_', ' ')} (no {', '.join(missing[:3])}): pass an "
            "intact FLUX.1 checkpoint.")
    return model.to(dtype).eval()


def _own_name(key: str, own: set[str]) -> str:
    if key in own:
        return key
    if key.removeprefix("text_model.") in own:
        return key.removeprefix("text_model.")
    return f"text_model.{key}"


def _vae(state: dict[str, torch.Tensor], base: str, local: bool, dtype: torch.dtype, file_name: str):
    """The VAE from its original-layout weights (diffusers converts them) and the base's VAE config."""
    from diffusers import AutoencoderKL

    try:
        with quiet_fp32_notice():
            return AutoencoderKL.from_single_file(state, config=base, subfolder="vae", local_files_only=local,
                                                  **_quiet_dtype(dtype))
    except Exception as error:  # converter KeyError / shape RuntimeError / missing config OSError
        raise ModelLoadError(
            f"{file_name}'s VAE does not load with the VAE config of base_model_config {base} "
            f"({_first_line(error)}): set base_model_config to the FLUX.1 model the file belongs to.") from error


@contextmanager
def quiet_fp32_notice():
    """diffusers warns on every cast of a model loaded from a single file that it has no modules to keep in fp32
    ("[]"); that notice is left out, every other message kept."""
    notice = logging.getLogger("diffusers.models.modeling_utils")
    notice.addFilter(_no_empty_fp32_notice)
    try:
        yield
    finally:
        notice.removeFilter(_no_empty_fp32_notice)


def _no_empty_fp32_notice(record: logging.LogRecord) -> bool:
    return "should be kept in float32: []" not in record.getMessage()
