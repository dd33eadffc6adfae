"""Load a base model from wherever the user points: embedded toy world, folder, single file or hub id.

The model family (SD 1.x, SDXL, FLUX.1) is read from the folder's ``model_index.json`` or the checkpoint's key
layout; the family supplies the pipeline class and the shipped configs, so this module names none.

Every failure a user can cause (missing path, wrong kind of file, no network) becomes a ``ModelLoadError`` whose
message is one sentence saying what is wrong and what to pass instead.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from studio.util.paths import repo_root

from . import single_file
from .families import Components, Family, family_of_index, family_of_pipeline
from .precision import WeightPlan, nf4_quantize

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

SINGLE_FILE_SUFFIXES = {".safetensors"}
PICKLE_SUFFIXES = {".ckpt", ".pt", ".pth", ".bin"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

class ModelLoadError(ValueError):
    """The base model could not be loaded; the message says what to pass instead."""


def default_model_path() -> Path:
    """Where the embedded toy-world model lives (a diffusers folder)."""
    return repo_root() / "assets" / "toy-world"


def toy_world_models() -> list[Path]:
    """The shipped toy-world models: the SD 1.x one (the default base model), the SDXL one and the FLUX.1 one."""
    return [default_model_path()] + [default_model_path().parent / name for name in ("toy-world-sdxl", "toy-world-flux")]


def load_components(
    base_model: str = "", base_model_config: str = "", dtype: torch.dtype = torch.float32, allow_pickle: bool = False,
    prediction_type: str = "auto", weights: WeightPlan | None = None,
) -> Components:
    """Load tokenizers, text encoders, VAE, UNet and a DDPM noise scheduler for training (see ``load_pipeline``).

    ``weights``: the run's ``base_weights`` plan; nf4 loads in its compute dtype and quantizes the UNet and text
    encoders to 4 bits (the other choices are applied after the LoRA is added: ``precision.store_base_weights``)."""
    nf4 = weights is not None and weights.choice == "nf4"
    pipe, source, kind = _load(base_model, base_model_config, weights.compute if nf4 else dtype, allow_pickle,
                               prediction_type)
    family = family_of_pipeline(pipe)
    if nf4:
        nf4_quantize(pipe, family, weights.compute)
    return family.components(pipe, source, kind)


def load_pipeline(
    base_model: str = "", base_model_config: str = "", dtype: torch.dtype = torch.float32, allow_pickle: bool = False,
    prediction_type: str = "auto",
) -> DiffusionPipeline:
    """The family's text-to-image pipeline (SD 1.x: safety checker off) for ``base_model``.

    ``base_model``: "" for the embedded toy world, a diffusers folder, an SD 1.x or SDXL ``.safetensors``
    checkpoint or a FLUX.1 transformer file, a ``.ckpt`` (only with ``allow_pickle=True``), or a hub id
    ``org/name``. ``base_model_config``: a diffusers folder whose configs describe a single-file checkpoint; by
    default the configs embedded in the file are used, else the family's shipped ones. A FLUX.1 file needs it: a
    FLUX.1 folder or hub id giving the text encoders, VAE and tokenizers (``flux_single_file``).
    ``prediction_type`` "epsilon"/"v_prediction" overrides what the model says ("auto"; a single file marked
    ``v_pred`` is v-prediction).
    """
    return _load(base_model, base_model_config, dtype, allow_pickle, prediction_type)[0]


def _load(base_model: str, base_model_config: str, dtype: torch.dtype, allow_pickle: bool, prediction_type: str):
    kind, source = resolve_source(str(base_model or "").strip())
    if kind in ("embedded", "folder"):
        pipe = _load_folder(Path(source), dtype)
    elif kind == "hub":
        pipe = _load_hub(source, dtype)
    else:
        from .checkpoint_loading import load_single_file

        pipe = load_single_file(Path(source), base_model_config, dtype, allow_pickle)
    _set_prediction_type(pipe, prediction_type)
    return pipe, source, kind


def _set_prediction_type(pipe, prediction_type: str) -> None:
    """Apply a prediction type the user set (a v-prediction model saved with an epsilon scheduler config)."""
    current = pipe.scheduler.config.get("prediction_type")  # flow-matching schedulers have none: nothing to set
    if prediction_type in ("epsilon", "v_prediction") and current is not None and current != prediction_type:
        pipe.scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config, prediction_type=prediction_type)


def resolve_source(base_model: str) -> tuple[str, str]:
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
        check_model_index(path)
        return "folder", str(path)
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".gguf":
            raise ModelLoadError(
                f"{path.name} is a GGUF file (llama.cpp's quantized format), which cannot be trained on: pass the "
                ".safetensors model (bf16 or fp8) and set base_weights: fp8 or nf4 to keep it small while training.")
        if suffix not in SINGLE_FILE_SUFFIXES | PICKLE_SUFFIXES:
            raise ModelLoadError(
                f"{path} is not a model file: pass an SD 1.x, SDXL or FLUX.1 .safetensors file or a diffusers folder."
            )
        return "single_file", str(path)
    if _HUB_ID.match(base_model) and path.suffix.lower() not in SINGLE_FILE_SUFFIXES | PICKLE_SUFFIXES:
        return "hub", base_model
    raise ModelLoadError(
        f"{base_model} does not exist: pass a diffusers folder, an SD 1.x, SDXL or FLUX.1 .safetensors file or a "
        "hub id like org/name."
    )


def check_model_index(folder: Path) -> Family:
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
    return _check_index_kind(index, str(folder))


def _check_index_kind(index: dict, name: str) -> Family:
    """The family of a ``model_index.json``, or a ``ModelLoadError`` when a text-to-image part is missing."""
    family = family_of_index(index)
    needed = (family.denoiser_name, "vae", *family.text_encoder_names, *(t.replace("text_encoder", "tokenizer")
                                                          for t in family.text_encoder_names))
    missing = [c for c in needed if not index.get(c) or index.get(c) == [None, None]]
    if missing:
        kind = index.get("_class_name", "non-SD")
        raise ModelLoadError(
            f"{name} is a {kind} folder without {', '.join(missing)}: pass an SD 1.x, SDXL or FLUX.1 model.")
    return family


def _no_safety(family: Family) -> dict:
    return {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False} \
        if family.name == "sd1" else {}


def _quiet_dtype(dtype: torch.dtype) -> dict:
    """``torch_dtype`` works in every diffusers we support; newer ones warn that it is renamed ``dtype``."""
    warnings.filterwarnings("ignore", message=".*Please use `dtype` instead.*", category=FutureWarning)
    return {"torch_dtype": dtype}


def _check_no_adapter_weights(folder: Path) -> None:
    """Refuse folders saved after ``add_adapter``: peft renames the wrapped weights ``….base_layer.weight``, so
    ``from_pretrained`` finds no weight under the original names and leaves those layers randomly initialised."""
    for weights in sorted(folder.glob("*/*.safetensors")):
        keys, _ = single_file.read_header(weights)
        if any(".base_layer." in key or ".lora_A." in key for key in keys):
            raise ModelLoadError(
                f"{weights.parent.name} in {folder} was saved with LoRA adapters inside, so its attention weights would "
                "load as random: save the base model before adding adapters, or fuse and unload them first."
            )


def _load_folder(folder: Path, dtype: torch.dtype):
    family = check_model_index(folder)
    _check_no_adapter_weights(folder)
    try:
        return family.pipeline_class().from_pretrained(
            str(folder), local_files_only=True, **_quiet_dtype(dtype), **_no_safety(family))
    except (OSError, ValueError, RuntimeError, KeyError) as error:
        raise ModelLoadError(
            f"could not load the diffusers folder {folder} ({_first_line(error)}): "
            f"pass a complete {family.label} diffusers folder."
        ) from error


def _load_hub(repo_id: str, dtype: torch.dtype):
    """A hub model: from the local cache when the hub cannot be reached (no minutes of retries), else downloaded."""
    from studio.util.hub import cache_only

    from diffusers import DiffusionPipeline

    local = cache_only()
    try:
        index = DiffusionPipeline.load_config(repo_id, local_files_only=local)
    except Exception as error:  # offline / 404 / auth surface as different classes across huggingface_hub versions
        raise ModelLoadError(_hub_message(repo_id, local)) from error
    family = _check_index_kind(dict(index), repo_id)
    try:
        return family.pipeline_class().from_pretrained(
            repo_id, local_files_only=local, **_quiet_dtype(dtype), **_no_safety(family))
    except Exception as error:
        raise ModelLoadError(_hub_message(repo_id, local)) from error


def _hub_message(repo_id: str, local: bool = False) -> str:
    where = "the hub is not reachable and it is not in the local cache" if local else "no network / not found"
    return f"could not download {repo_id}: {where} — pass a local folder or a .safetensors file."


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
