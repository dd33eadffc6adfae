"""Save trained LoRAs in the two formats users' tools load, and read either back.

* diffusers: ``<dir>/pytorch_lora_weights.safetensors`` written by the model family's pipeline
  (``save_lora_weights``) with the PEFT adapter configs as metadata, so ``lora_alpha`` survives the round trip
  (without them diffusers reloads the LoRA with alpha = rank); text-encoder keys keep ``text_model.``. For FLUX.1
  it is also the file ComfyUI and Forge load (``diffusers_webui.py``), checked against their key rules.
* kohya / WebUI: one ``.safetensors`` with ``lora_unet_*`` and per-encoder ``lora_te_*`` (SD 1.x) or
  ``lora_te1_*`` / ``lora_te2_*`` (SDXL) modules, a real ``.alpha`` per module (``.dora_scale`` for a WebUI-axis
  DoRA), kohya's ``ss_*`` metadata and additional-network hashes (see ``kohya.py``), optionally checked against
  ComfyUI's and A1111's key rules before it is written (``check.py``).

Both savers take ``peft.utils.get_peft_model_state_dict(model)`` outputs and write atomically.
"""
from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import torch

from studio.util.fs import atomic_write_bytes

from . import DIFFUSERS_WEIGHT_NAME, hashes, kohya

if TYPE_CHECKING:
    from studio.models.families import Family

    from .layout import BaseLayout

ADAPTER_METADATA_KEY = "lora_adapter_metadata"
KOHYA_PREFIXES = ("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")
DIFFUSERS_PREFIXES = ("unet.", "transformer.", "text_encoder.", "text_encoder_2.")


class LoraFormatError(ValueError):
    """A file that is not a LoRA we can read; the message says what to pass."""


def _adapter_config(rank: int, alpha: float, targets, use_dora: bool, layers: list[int] | None = None) -> dict:
    """The PEFT LoraConfig that diffusers' loader rebuilds the adapter from (JSON-ready); ``layers``: the text
    encoder layers that hold a LoRA when not all of them do."""
    from peft import LoraConfig

    config = LoraConfig(
        r=rank, lora_alpha=alpha, target_modules=sorted(targets), init_lora_weights="gaussian", use_dora=use_dora,
        layers_to_transform=layers, layers_pattern="layers" if layers is not None else None,
    ).to_dict()
    return json.loads(json.dumps(config, default=lambda value: sorted(value) if isinstance(value, set) else str(value)))


def text_states_by_encoder(text: dict[str, torch.Tensor] | dict[str, dict[str, torch.Tensor]] | None
                           ) -> dict[str, dict[str, torch.Tensor]]:
    """``{"text_encoder": state[, "text_encoder_2": state]}`` from that mapping or from one encoder's state dict."""
    if not text:
        return {}
    if set(text) <= {"text_encoder", "text_encoder_2"}:
        return {name: state for name, state in text.items() if state}
    return {"text_encoder": text}


def _family_for(family, texts: dict):
    from studio.models.families import SD1, SDXL

    return family or (SDXL if "text_encoder_2" in texts else SD1)


def save_diffusers_lora(
    out_dir: str | os.PathLike,
    unet_state: dict[str, torch.Tensor],
    text_encoder_state: dict[str, torch.Tensor] | dict[str, dict[str, torch.Tensor]] | None = None,
    *,
    rank: int,
    alpha: float,
    use_dora: bool = False,
    unet_targets: Iterable[str],
    te_targets: Iterable[str] | None = None,
    metadata: dict[str, str] | None = None,
    family: Family | None = None,
    layout: BaseLayout | None = None,
) -> Path:
    """Write ``out_dir/pytorch_lora_weights.safetensors``; the family's ``pipe.load_lora_weights(out_dir)`` reads
    it back.

    ``text_encoder_state``: one text encoder's PEFT state, or ``{"text_encoder": …, "text_encoder_2": …}`` for
    two-encoder families (SDXL). ``unet_targets`` / ``te_targets`` are the ``target_modules`` the adapters were
    created with; ``metadata`` (strings, e.g. from ``build_kohya_metadata``) is stored next to diffusers' own
    adapter metadata. ``family`` (``studio.models.families``) defaults to SDXL when a second encoder is given.
    Where this file is also the WebUIs' (FLUX.1), an alpha other than the rank is folded into ``lora_B``
    (``diffusers_webui``), and with ``layout`` the bytes are checked against ComfyUI's and Forge's key rules before
    they replace the file (``LoraCheckError`` naming the module; the previous file stays).
    """
    from diffusers.utils import convert_state_dict_to_diffusers
    from safetensors.torch import load_file, save

    from . import diffusers_webui

    texts = text_states_by_encoder(text_encoder_state)
    if texts and not te_targets:
        raise ValueError("a text-encoder LoRA needs te_targets: pass the target_modules its adapter was created with.")
    for state in (unet_state, *texts.values()):
        _check_rank(state, rank)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    layers: dict = {}
    family = _family_for(family, texts)
    unet_state, texts, metadata, alpha = diffusers_webui.scale_for_webuis(family, unet_state, texts, metadata, rank,
                                                                          alpha)
    if unet_state:
        # PEFT names as they are: diffusers' old-style conversion maps only linear layers, and a file that mixes
        # both styles (conv LoRA = LoCon) is read back with its attention LoRA silently dropped.
        layers[f"{family.denoiser_name}_lora_layers"] = _detached(unet_state)
        layers[f"{family.denoiser_name}_lora_adapter_metadata"] = _adapter_config(rank, alpha, unet_targets, use_dora)
    for name, state in texts.items():
        layers[f"{name}_lora_layers"] = convert_state_dict_to_diffusers(_te_magnitudes(_detached(state)))
        layers[f"{name}_lora_adapter_metadata"] = _adapter_config(rank, alpha, te_targets, use_dora,
                                                                  _encoder_layers(state))
    with tempfile.TemporaryDirectory(dir=out, prefix=".saving-") as scratch:
        family.pipeline_class().save_lora_weights(scratch, safe_serialization=True, **layers)
        written = Path(scratch) / DIFFUSERS_WEIGHT_NAME
        tensors = _with_text_model_part(load_file(str(written)))
        file_metadata = _read_metadata(written)
    file_metadata.update({str(k): str(v) for k, v in (metadata or {}).items()})
    target, data = out / DIFFUSERS_WEIGHT_NAME, save(tensors, file_metadata)
    if layout is not None:
        _check_before_replacing(target, data, layout, diffusers_webui.diffusers_targets(unet_state, texts, family))
    return atomic_write_bytes(target, data)


def save_kohya_lora(
    path: str | os.PathLike,
    unet_state: dict[str, torch.Tensor] | None,
    text_encoder_state: dict[str, torch.Tensor] | dict[str, dict[str, torch.Tensor]] | None,
    rank: int,
    alpha: float,
    metadata: dict[str, str] | None = None,
    family: Family | None = None,
    unet_config: dict | None = None,
    layout: BaseLayout | None = None,
) -> Path:
    """Write a kohya/WebUI LoRA file (A1111, ComfyUI, Forge) with ``ss_*`` metadata and ``sshs_*`` hashes.

    ``text_encoder_state`` as for ``save_diffusers_lora``. SDXL files name UNet modules by their original
    ("LDM") block names, which needs the UNet's ``unet_config``. A DoRA trained along the input axis
    (``studio.lora.dora``) is written with ``.dora_scale`` tensors; a PEFT DoRA is refused with a ``ValueError``.
    With ``layout`` (``studio.lora.layout``) the bytes are checked against ComfyUI's and A1111's key rules before
    they replace ``path``: a module either client would skip or put on another layer raises ``LoraCheckError``
    naming it, and the previous file stays.
    """
    from safetensors.torch import save

    target = Path(path)
    if target.suffix != ".safetensors":
        raise ValueError(f"{target} must end in .safetensors: pass a file name like my_lora.safetensors.")
    texts = text_states_by_encoder(text_encoder_state)
    family = _family_for(family, texts)
    namer = kohya.KohyaNamer(family, unet_config)
    tensors = kohya.to_kohya_state(unet_state, texts, rank, alpha, namer)
    file_metadata = {**kohya.base_metadata(family), "ss_network_dim": str(rank), "ss_network_alpha": str(alpha)}
    file_metadata.update({str(k): str(v) for k, v in (metadata or {}).items()})
    model_hash, legacy_hash = hashes.addnet_hashes(tensors, file_metadata)
    file_metadata["sshs_model_hash"], file_metadata["sshs_legacy_hash"] = model_hash, legacy_hash
    data = save(tensors, file_metadata)
    if layout is not None:
        _check_before_replacing(target, data, layout, kohya.kohya_targets(unet_state, texts, namer))
    return atomic_write_bytes(target, data)


class LoraCheckError(ValueError):
    """A LoRA file that ComfyUI or A1111 (FLUX.1: Forge) would not load as trained; the message names the module."""


def _check_before_replacing(target: Path, data: bytes, layout, expected) -> None:
    from safetensors.torch import load

    from .check import check_tensors

    header = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + header]).get("__metadata__", {})
    report = check_tensors(load(data), metadata, layout, expected=expected)
    if not report.ok:
        raise LoraCheckError(f"{target.name} would not load as trained ({report.first_problem()}); "
                             f"{'the previous file is kept' if target.exists() else 'nothing was written'}.")


def _with_text_model_part(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Text-encoder keys as ``text_encoder[_2].text_model.encoder.…``: the module paths of transformers 4, which
    loads them as they are, while diffusers strips ``text_model.`` again for transformers 5's flattened CLIP (and
    ComfyUI maps only this form). transformers 5 writes them without that part."""
    renamed = {}
    for key, value in tensors.items():
        component, _, rest = key.partition(".")
        if component in ("text_encoder", "text_encoder_2") and not rest.startswith("text_model."):
            key = f"{component}.text_model.{rest}"
        renamed[key] = value
    return renamed


def _encoder_layers(state: dict[str, torch.Tensor]) -> list[int] | None:
    """The encoder layers a text encoder's LoRA covers (SDXL's first encoder has none in its last layer), so the
    loader puts adapters on exactly those; None when the keys name no layers."""
    found = sorted({int(m.group(1)) for key in state if (m := re.search(r"\.layers\.(\d+)\.", key))})
    return found or None


def _detached(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {key: value.detach().cpu().contiguous() for key, value in state.items()}


def _te_magnitudes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Name text-encoder DoRA magnitudes ``...lora_magnitude_vector.weight``.

    PEFT returns them without ``.weight``; diffusers' UNet loader accepts that, but the text-encoder path
    (transformers' PEFT integration) then silently drops them and the reloaded model differs.
    """
    return {(k + ".weight" if k.endswith(".lora_magnitude_vector") else k): v for k, v in state.items()}


def _check_rank(state: dict[str, torch.Tensor], rank: int) -> None:
    for key, value in state.items():
        if key.endswith("lora_A.weight") and value.shape[0] != rank:
            raise ValueError(f"{key} has rank {value.shape[0]}, not {rank}: pass the rank the adapter was trained with.")


def _read_metadata(path: Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return dict(handle.metadata() or {})


def detect_format(keys: Iterable[str]) -> str:
    """"kohya" or "diffusers" from a LoRA file's tensor names; ``LoraFormatError`` for anything else."""
    keys = list(keys)
    if keys and all(k.startswith(KOHYA_PREFIXES) for k in keys):
        return "kohya"
    lora_marks = (".lora_A.", ".lora_B.", ".lora.down.", ".lora.up.", ".lora_linear_layer.", "lora_magnitude_vector")
    if keys and all(k.startswith(DIFFUSERS_PREFIXES) for k in keys) and any(m in k for k in keys for m in lora_marks):
        return "diffusers"
    if any(k.startswith(("model.diffusion_model.", "first_stage_model.")) for k in keys):
        raise LoraFormatError(
            "this is a base-model checkpoint, not a LoRA: pass it as the base model and pick a LoRA file here."
        )
    raise LoraFormatError(
        "this file has no kohya (lora_unet_/lora_te_) or diffusers (unet./text_encoder.) LoRA weights: "
        "pass a LoRA .safetensors file."
    )


def lora_file_path(path: str | os.PathLike) -> Path:
    source = Path(path).expanduser()
    if source.is_dir():
        source = source / DIFFUSERS_WEIGHT_NAME
    if not source.is_file():
        raise LoraFormatError(
            f"{source} does not exist: pass a LoRA .safetensors file or a folder holding {DIFFUSERS_WEIGHT_NAME}."
        )
    if source.suffix.lower() != ".safetensors":
        raise LoraFormatError(
            f"{source.name} is not a .safetensors file (pickle files can run code): pass a .safetensors LoRA."
        )
    return source


def load_lora_file(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str], str]:
    """(tensors, metadata, format) of a LoRA file or diffusers LoRA folder; format is "kohya" or "diffusers"."""
    from safetensors.torch import load_file

    source = lora_file_path(path)
    state = load_file(str(source))
    try:
        fmt = detect_format(state)
    except LoraFormatError as error:
        raise LoraFormatError(f"{source.name}: {error}") from error
    return state, _read_metadata(source), fmt
