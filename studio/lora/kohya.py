"""The kohya / A1111 / ComfyUI ("WebUI") LoRA layout: key names and training metadata (hashes: ``hashes.py``).

Written by hand rather than with diffusers' ``convert_state_dict_to_kohya``, which stores ``alpha = rank`` and
names SD 1.x text-encoder modules ``lora_te1_...``, which ComfyUI and A1111 do not load for SD 1.x.
Conventions checked against: ComfyUI ``comfy/lora.py`` (SD 1.x text-encoder keys only as ``lora_te_text_model_encoder_layers_{i}_...``;
UNet keys as ``lora_unet_`` + diffusers path with ``.`` -> ``_``; scale = alpha / rank), A1111
``extensions-builtin/Lora/networks.py`` (same names, alias from ``ss_output_name``) and kohya sd-scripts
(``train_network.py`` metadata, ``precalculate_safetensors_hashes`` / ``addnet_hash_*``, ``sai_model_spec``).
"""
from __future__ import annotations

import datetime
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from .hashes import a1111_legacy_model_hash, file_sha256

if TYPE_CHECKING:
    from studio.models.families import Family

UNET_PREFIX = "lora_unet_"
# transformers 5 names CLIPTextModel modules without ``text_model.``; WebUI keys need it.
TEXT_MODEL_PART = "text_model_"
# Written into every kohya file: what A1111 / kohya tools use to tell SD versions and network types apart.
BASE_METADATA = {
    "ss_network_module": "networks.lora", "ss_v2": "False", "ss_base_model_version": "sd_v1",
    "modelspec.sai_model_spec": "1.0.1", "modelspec.architecture": "stable-diffusion-v1/lora",
    "modelspec.implementation": "diffusers",
}
_PEFT_INTERNALS = {
    "base_layer", "lora_A", "lora_B", "lora_dropout", "lora_embedding_A", "lora_embedding_B", "lora_magnitude_vector",
}
_PEFT_SUFFIXES = {
    ".lora_A.weight": "down", ".lora_B.weight": "up",
    ".lora_magnitude_vector": "magnitude", ".lora_magnitude_vector.weight": "magnitude",
    ".dora_scale": "dora_scale",
}


def base_metadata(family: Family | None = None) -> dict[str, str]:
    """The fixed metadata of a kohya file for ``family`` (SD 1.x when None)."""
    if family is None:
        return dict(BASE_METADATA)
    naming = family.lora_naming
    meta = {key: value for key, value in BASE_METADATA.items() if key != "ss_v2"}
    meta.update({"ss_base_model_version": naming.base_model_version, "modelspec.architecture": naming.architecture})
    meta.update(naming.extra_metadata)
    return meta


class KohyaNamer:
    """WebUI module names of one family: ``lora_unet_`` + the UNet module (SD 1.x: diffusers path; SDXL: the
    original block name, as kohya's SDXL scripts write it) and a per-encoder text prefix (``lora_te_`` for
    SD 1.x; ``lora_te1_`` / ``lora_te2_`` for SDXL's two encoders)."""

    def __init__(self, family: Family | None = None, unet_config: dict | None = None) -> None:
        from studio.models.families import SD1

        self.family = family or SD1
        self.text_prefixes = self.family.lora_naming.text_prefixes
        self.ldm_table = None
        if self.family.name == "sdxl":
            if unet_config is None:
                raise ValueError("SDXL kohya names need the UNet's config: pass unet_config=unet.config.")
            from studio.models.ldm_keys import unet_prefix_table

            self.ldm_table = sorted(unet_prefix_table(dict(unet_config)), key=lambda row: -len(row[0]))

    def unet(self, module_path: str) -> str:
        return UNET_PREFIX + self.unet_module(module_path).replace(".", "_")

    def unet_module(self, module_path: str) -> str:
        """The UNet module's dotted name in the file's layout (SD 1.x: the diffusers path; SDXL: the LDM name)."""
        if self.ldm_table is None:
            return module_path
        dotted = module_path + "."
        for diffusers_prefix, ldm_prefix, renames in self.ldm_table:
            if dotted.startswith(diffusers_prefix):
                rest = dotted[len(diffusers_prefix):].rstrip(".")
                return (ldm_prefix + renames.get(rest, rest)).rstrip(".")
        raise ValueError(f"{module_path} has no original (LDM) name: this layer cannot be saved in the WebUI format.")

    def text(self, encoder: str, module_path: str) -> str:
        return self.text_prefixes[encoder] + TEXT_MODEL_PART + module_path.removeprefix("text_model.").replace(".", "_")


def _adaptable_modules(model: nn.Module):
    """Paths of modules a LoRA can wrap (linear / conv layers, or the PEFT wrappers around them)."""
    for name, module in model.named_modules():
        if not name or _PEFT_INTERNALS & set(name.split(".")):
            continue
        if isinstance(module, (nn.Linear, nn.Conv2d)) or hasattr(module, "base_layer"):
            yield name


def kohya_module_map(unet: nn.Module, text_encoder: nn.Module | dict[str, nn.Module] | None = None,
                     family: Family | None = None) -> dict[str, tuple[str, str]]:
    """Map each WebUI module name to (component, module path): component "unet", "text_encoder" or
    "text_encoder_2". ``text_encoder``: one encoder module, or ``{component: module}``."""
    namer = KohyaNamer(family, getattr(unet, "config", None) if family is not None and family.name == "sdxl" else None)
    mapping = {}
    for path in _adaptable_modules(unet):
        try:
            mapping[namer.unet(path)] = ("unet", path)
        except ValueError:
            continue
    encoders = text_encoder if isinstance(text_encoder, dict) else {"text_encoder": text_encoder}
    for component, module in encoders.items():
        if module is not None and component in namer.text_prefixes:
            mapping.update({namer.text(component, path): (component, path) for path in _adaptable_modules(module)})
    return mapping


def split_peft_state(state: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Group a ``get_peft_model_state_dict`` output by module: ``{path: {"down", "up"[, "magnitude"]}}``."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        key = key.removeprefix("unet.").removeprefix("text_encoder_2.").removeprefix("text_encoder.")
        for suffix, part in _PEFT_SUFFIXES.items():
            if key.endswith(suffix):
                modules.setdefault(key[: -len(suffix)], {})[part] = tensor
                break
        else:
            raise ValueError(f"{key!r} is not a PEFT LoRA weight: pass peft.utils.get_peft_model_state_dict(model).")
    incomplete = [path for path, parts in modules.items() if not {"down", "up"} <= set(parts)]
    if incomplete:
        raise ValueError(f"{incomplete[0]} has no lora_A/lora_B pair: pass the complete get_peft_model_state_dict output.")
    return modules


def to_kohya_state(unet_state: dict[str, torch.Tensor] | None, text_states: dict[str, dict[str, torch.Tensor]] | None,
                   rank: int, alpha: float, namer: KohyaNamer | None = None) -> dict[str, torch.Tensor]:
    """PEFT state dicts -> ``{name}.lora_down.weight`` / ``.lora_up.weight`` / ``.alpha`` tensors, and
    ``.dora_scale`` ([1, in] or [1, in, 1, 1]) for a DoRA trained along the input axis (``studio.lora.dora``).

    ``text_states``: ``{"text_encoder": state[, "text_encoder_2": state]}`` (``formats.text_states_by_encoder``)."""
    from .dora import file_shape

    namer = namer or KohyaNamer()
    parts_to_save = [(unet_state or {}, None)] + [(state, name) for name, state in (text_states or {}).items()]
    tensors: dict[str, torch.Tensor] = {}
    for state, encoder in parts_to_save:
        for path, parts in split_peft_state(state).items():
            if "magnitude" in parts:
                raise ValueError(
                    f"{path}: a DoRA trained with dora_axis: diffusers (PEFT normalises output rows) cannot be saved "
                    "in the kohya/WebUI format, whose dora_scale ComfyUI and A1111 apply per input column: train "
                    "with dora_axis: webui for a WebUI file, or use the diffusers file."
                )
            down, up = parts["down"].detach().cpu().contiguous(), parts["up"].detach().cpu().contiguous()
            if down.shape[0] != rank:
                raise ValueError(f"{path} has rank {down.shape[0]}, not {rank}: pass the rank the adapter was trained with.")
            name = namer.unet(path) if encoder is None else namer.text(encoder, path)
            tensors[f"{name}.lora_down.weight"] = down
            tensors[f"{name}.lora_up.weight"] = up
            tensors[f"{name}.alpha"] = torch.tensor(float(alpha), dtype=down.dtype)
            if "dora_scale" in parts:
                tensors[f"{name}.dora_scale"] = file_shape(parts["dora_scale"], down).to(down.dtype).contiguous()
    if not tensors:
        raise ValueError("there are no LoRA weights to save: pass the UNet and/or text-encoder PEFT state dicts.")
    return tensors


def kohya_targets(unet_state: dict[str, torch.Tensor] | None, text_states: dict[str, dict[str, torch.Tensor]] | None,
                  namer: KohyaNamer) -> dict[str, tuple[str, str]]:
    """``{WebUI module name: (component, layer path)}`` of the modules ``to_kohya_state`` writes (text paths
    without transformers 4's ``text_model.``), the layers a client must patch with them."""
    targets = {namer.unet(path): ("unet", path) for path in split_peft_state(unet_state or {})}
    for encoder, state in (text_states or {}).items():
        targets.update({namer.text(encoder, path): (encoder, path.removeprefix("text_model."))
                        for path in split_peft_state(state)})
    return targets


def _timestamp(value) -> float:
    if isinstance(value, datetime.datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return datetime.datetime.fromisoformat(str(value)).timestamp()


def _resolution(value) -> tuple[int, int]:
    if isinstance(value, (list, tuple)):
        return int(value[0]), int(value[-1])
    return int(value), int(value)


_DIRECT = {
    "output_name": "ss_output_name", "session_id": "ss_session_id", "seed": "ss_seed",
    "learning_rate": "ss_learning_rate", "unet_lr": "ss_unet_lr", "text_encoder_lr": "ss_text_encoder_lr",
    "lr_scheduler": "ss_lr_scheduler", "optimizer": "ss_optimizer", "num_train_images": "ss_num_train_images",
    "num_epochs": "ss_num_epochs", "epoch": "ss_epoch", "steps": "ss_steps", "network_dim": "ss_network_dim",
    "network_alpha": "ss_network_alpha", "mixed_precision": "ss_mixed_precision", "noise_offset": "ss_noise_offset",
    "min_snr_gamma": "ss_min_snr_gamma", "clip_skip": "ss_clip_skip", "keep_tokens": "ss_keep_tokens",
    "zero_terminal_snr": "ss_zero_terminal_snr",
    # flow matching (FLUX.1), under the names sd-scripts' flux_train_network.py writes
    "weighting_scheme": "ss_weighting_scheme", "logit_mean": "ss_logit_mean", "logit_std": "ss_logit_std",
    "mode_scale": "ss_mode_scale", "guidance_scale": "ss_guidance_scale", "flow_shift": "ss_discrete_flow_shift",
    "model_prediction_type": "ss_model_prediction_type",
}
_SPECIAL = {
    "started_at", "finished_at", "use_dora", "resolution", "base_model_name", "base_model_path", "tag_frequency",
    "dataset_dirs", "prediction_type", "trigger_phrase", "description", "architecture",
}


def build_kohya_metadata(values: Mapping[str, object], family: Family | None = None) -> dict[str, str]:
    """kohya-style ``ss_*`` and Stability ``modelspec.*`` metadata (all strings) from plain training values.

    Keys: output_name, session_id, started_at / finished_at (unix seconds, datetime or ISO text), seed,
    learning_rate, unet_lr, text_encoder_lr, lr_scheduler, optimizer, num_train_images, num_epochs, epoch,
    steps, network_dim, network_alpha, use_dora, mixed_precision, resolution (int or (w, h)), base_model_name,
    noise_offset, min_snr_gamma, tag_frequency ({dir: {tag: count}}), dataset_dirs ({dir: {"n_repeats",
    "img_count"}}); optional: clip_skip, keep_tokens, zero_terminal_snr, base_model_path (a single-file base
    model adds ``ss_sd_model_hash`` / ``ss_new_sd_model_hash`` as kohya computes them), prediction_type, trigger_phrase,
    description, architecture (``modelspec.architecture`` when it depends on the model: FLUX.1 dev or schnell) and the
    flow-matching settings weighting_scheme, logit_mean, logit_std, mode_scale, guidance_scale, flow_shift,
    model_prediction_type. Values are written as kohya writes them (``str(v)``, nested values as JSON). The
    ``sshs_*`` hashes depend on the tensors and are added by ``save_kohya_lora``.
    """
    unknown = sorted(set(values) - set(_DIRECT) - _SPECIAL)
    if unknown:
        allowed = ", ".join(sorted(set(_DIRECT) | _SPECIAL))
        raise ValueError(f"unknown training value(s) {', '.join(unknown)}: pass only {allowed}.")
    meta = base_metadata(family)
    meta.update({target: str(values[key]) for key, target in _DIRECT.items() if key in values})
    meta.update(_special_metadata(values))
    return meta


def _special_metadata(values: Mapping[str, object]) -> dict[str, str]:
    meta: dict[str, str] = {}
    for key, target in (("started_at", "ss_training_started_at"), ("finished_at", "ss_training_finished_at")):
        if values.get(key) is not None:
            meta[target] = str(_timestamp(values[key]))
    when = values.get("finished_at") or values.get("started_at")
    if when is not None:
        meta["modelspec.date"] = datetime.datetime.fromtimestamp(int(_timestamp(when))).isoformat()
    if values.get("use_dora"):
        meta["ss_network_args"] = json.dumps({"use_dora": "True"})
    if values.get("resolution") is not None:
        width, height = _resolution(values["resolution"])
        meta["ss_resolution"] = str((width, height))
        meta["modelspec.resolution"] = f"{width}x{height}"
    if values.get("base_model_name") is not None:
        name = str(values["base_model_name"])
        meta["ss_sd_model_name"] = os.path.basename(name.rstrip("/\\")) or name
    if values.get("base_model_path") and os.path.isfile(str(values["base_model_path"])):
        meta["ss_sd_model_hash"] = a1111_legacy_model_hash(str(values["base_model_path"]))
        meta["ss_new_sd_model_hash"] = file_sha256(str(values["base_model_path"]))
    for key, target in (("tag_frequency", "ss_tag_frequency"), ("dataset_dirs", "ss_dataset_dirs")):
        if values.get(key) is not None:
            meta[target] = json.dumps(values[key])
    if values.get("output_name") is not None:
        meta["modelspec.title"] = str(values["output_name"])
    if values.get("prediction_type") not in (None, "flow"):  # kohya writes none for flow matching (FLUX.1)
        meta["modelspec.prediction_type"] = "v" if str(values["prediction_type"]).startswith("v") else "epsilon"
    if values.get("architecture"):
        meta["modelspec.architecture"] = str(values["architecture"])
    for key in ("trigger_phrase", "description"):
        if values.get(key):
            meta[f"modelspec.{key}"] = str(values[key])
    return meta
