"""LoRA adapters on the UNet and (optionally) the text encoder, through peft — the way diffusers' scripts do it."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from peft import LoraConfig

    from studio.config import TrainConfig
    from studio.models.families import Family

ADAPTER = "default"


class AdapterError(ValueError):
    """A LoRA setting or file that does not fit the model; the message says what to change."""


def lora_config(rank: int, alpha: float, targets: list[str], dropout: float, use_dora: bool,
                layers: list[int] | None = None) -> LoraConfig:
    """peft's LoraConfig; ``layers`` limits a text encoder's LoRA to those encoder layers (None: all)."""
    from peft import LoraConfig

    return LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=dropout,
        init_lora_weights="gaussian",
        target_modules=list(targets),
        use_dora=use_dora,
        layers_to_transform=layers,
        layers_pattern="layers" if layers is not None else None,
    )


def denoiser_targets(denoiser: torch.nn.Module, targets: list[str]) -> list[str]:
    """``targets`` as peft gets them: ``all-linear`` (``studio.config.modules``) becomes every Linear layer of the
    denoiser, named by the path below its first block index (``attn.to_q`` for every block's ``…0.attn.to_q``) when
    those names pick exactly the Linear layers, else by full path. Other lists are returned as they are."""
    from studio.config.modules import ALL_LINEAR

    if ALL_LINEAR not in targets:
        return list(targets)
    names = [name for name, _ in denoiser.named_modules()]
    linear = [name for name, module in denoiser.named_modules() if isinstance(module, torch.nn.Linear)]
    if not linear:
        raise AdapterError(f"target_modules {ALL_LINEAR}: the denoiser has no Linear layer; name its layers instead")
    short = sorted({_below_first_index(name) for name in linear})
    picked = {name for name in names if any(name == s or name.endswith("." + s) for s in short)}
    return short if picked == set(linear) else linear


def _below_first_index(name: str) -> str:
    parts = name.split(".")
    first = next((i for i, part in enumerate(parts[:-1]) if part.isdigit()), -1)
    return ".".join(parts[first + 1:])


def _check_targets(model: torch.nn.Module, targets: list[str], where: str) -> None:
    names = [name for name, _ in model.named_modules()]
    missing = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise AdapterError(
            f"target_modules {missing} match no layer of the {where}; "
            f"use names such as to_q, to_k, to_v, to_out.0 (UNet, FLUX transformer) or q_proj, k_proj, v_proj, "
            f"out_proj (text encoder)"
        )


def _check_patched_together(family: Family | None, encoder: str, targets: list[str]) -> None:
    """Refuse, before training, a text-encoder target set the WebUI file could not carry: layers a client patches
    only together must all be targets or none (the WebUI file would otherwise fail its save-time check)."""
    together = family.lora_naming.patched_together.get(encoder, ()) if family is not None else ()
    chosen = [name for name in together if name in targets]
    if chosen and len(chosen) < len(together):
        missing = [name for name in together if name not in targets]
        raise AdapterError(
            f"text_encoder_target_modules has {', '.join(chosen)} but not {', '.join(missing)}: A1111 patches "
            f"{family.label}'s {encoder.replace('_', ' ')} attention only with {', '.join(together)} together; "
            f"add {', '.join(missing)} or leave all of them out")


def add_lora_adapters(unet: torch.nn.Module, text_encoders: dict[str, torch.nn.Module], config: TrainConfig,
                      family: Family | None = None) -> list[torch.nn.Parameter]:
    """Freeze the base, add seeded LoRA adapters, and return the trainable parameters (kept in fp32).

    ``text_encoders``: ``{component: module}`` (one for SD 1.x, two for SDXL); with ``train_text_encoder`` every
    one of them gets a LoRA on ``text_encoder_target_modules``, in the layers whose output the UNet reads
    (``family.text_encoder_layers``: SDXL reads its first encoder's penultimate layer, so its last gets none)."""
    if config.use_dora and family is not None and not family.lora_naming.webui_file:
        raise AdapterError(f"use_dora: {family.label} LoRAs reach ComfyUI and Forge as the diffusers file, whose DoRA "
                           "magnitudes they do not apply; train a plain LoRA (use_dora: false)")
    unet.requires_grad_(False)
    for encoder in text_encoders.values():
        encoder.requires_grad_(False)
    alpha = config.effective_alpha()
    targets = denoiser_targets(unet, config.target_modules)
    denoiser = "transformer" if family is not None and family.denoiser_name == "transformer" else "UNet"
    _check_targets(unet, targets, denoiser)
    torch.manual_seed(config.seed)
    peft_dora = config.use_dora and getattr(config, "dora_axis", "webui") == "diffusers"
    unet.add_adapter(lora_config(config.lora_rank, alpha, targets, config.lora_dropout, peft_dora))
    models = [unet]
    if config.train_text_encoder:
        for name, encoder in text_encoders.items():
            _check_targets(encoder, config.text_encoder_target_modules, name.replace("_", " "))
            _check_patched_together(family, name, config.text_encoder_target_modules)
            layers = family.text_encoder_layers(name, encoder) if family is not None else None
            encoder.add_adapter(lora_config(config.lora_rank, alpha, config.text_encoder_target_modules,
                                            config.lora_dropout, peft_dora, layers))
            models.append(encoder)
    if config.use_dora and not peft_dora:  # the decomposition ComfyUI, A1111 and Forge apply (studio.lora.dora)
        from studio.lora.dora import add_input_axis_dora

        for model in models:
            add_input_axis_dora(model, ADAPTER)
    from diffusers.training_utils import cast_training_params

    cast_training_params(models, dtype=torch.float32)
    return [p for model in models for p in model.parameters() if p.requires_grad]


def adapter_targets(model: torch.nn.Module, configured: list[str]) -> list[str]:
    """The target_modules the model's adapter was created with (``all-linear`` expanded), else ``configured``."""
    config = getattr(model, "peft_config", {}).get(ADAPTER)
    targets = getattr(config, "target_modules", None)
    return sorted(targets) if isinstance(targets, (set, list, tuple)) else list(configured)


def adapter_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors in peft's naming (``…to_q.lora_A.weight``) and WebUI-axis DoRA magnitudes
    (``…to_q.dora_scale``), detached, fp32, on the CPU."""
    from peft.utils import get_peft_model_state_dict

    from studio.lora.dora import magnitudes

    state = get_peft_model_state_dict(model, adapter_name=ADAPTER)
    return {**{k: v.detach().float().cpu().contiguous() for k, v in state.items()}, **magnitudes(model)}


def load_adapter_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy saved adapter tensors into the live adapter; every tensor must fit exactly."""
    from peft.utils import set_peft_model_state_dict

    own = adapter_state(model)
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    unknown = [k for k in state if k not in own]
    missing = [k for k in own if k not in state]
    if wrong or unknown or missing:
        detail = (wrong or unknown or missing)[:3]
        raise AdapterError(
            f"{source} does not fit this LoRA (rank {_rank_of(own)} vs {_rank_of(state)}, "
            f"{len(wrong)} shape mismatches, {len(unknown)} unknown and {len(missing)} missing tensors, e.g. {detail}); "
            "use the same lora_rank, target_modules and train_text_encoder as the run that wrote it"
        )
    from studio.lora.dora import SUFFIX, load_magnitudes

    load_magnitudes(model, {k: v for k, v in state.items() if k.endswith(SUFFIX)})
    state = {k: v for k, v in state.items() if not k.endswith(SUFFIX)}
    result = set_peft_model_state_dict(model, state, adapter_name=ADAPTER)
    if getattr(result, "unexpected_keys", None):
        raise AdapterError(f"{source}: tensors not used by the model: {result.unexpected_keys[:3]}")


def _rank_of(state: dict[str, torch.Tensor]) -> int | None:
    for key, value in state.items():
        if key.endswith("lora_A.weight"):
            return int(value.shape[0])
    return None


def split_diffusers_lora(state: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    """Split a diffusers-format LoRA (``unet.…`` or ``transformer.…`` / ``text_encoder.…`` / ``text_encoder_2.…``
    keys) into the denoiser's state and ``{text component: state}``."""
    unet, texts = {}, {}
    for key, value in state.items():
        component, _, rest = key.partition(".")
        if component in ("unet", "transformer"):
            unet[rest] = value
        elif component in ("text_encoder", "text_encoder_2"):
            texts.setdefault(component, {})[rest] = value
    return unet, texts


def _kohya_to_peft(tensors: dict, unet, text_encoders: dict, family, source: Path) -> tuple[dict, dict]:
    from studio.lora import kohya_module_map

    modules = kohya_module_map(unet, text_encoders, family)
    suffixes = {"lora_down.weight": "lora_A.weight", "lora_up.weight": "lora_B.weight", "dora_scale": "dora_scale"}
    unet_state, texts = {}, {}
    for key, value in tensors.items():
        module, _, suffix = key.partition(".")
        if suffix == "alpha":
            continue
        if module not in modules or suffix not in suffixes:
            raise AdapterError(f"init_lora {source}: tensor {key} fits no layer of this model (or is not a LoRA / "
                               "WebUI DoRA)")
        component, path = modules[module]
        target = unet_state if component == "unet" else texts.setdefault(component, {})
        target[f"{path}.{suffixes[suffix]}"] = value.reshape(-1) if suffix == "dora_scale" else value
    return unet_state, texts


def read_lora_file(path: str | Path, unet: torch.nn.Module, text_encoders: dict[str, torch.nn.Module],
                   family: Family | None = None) -> tuple[dict, dict, float | None]:
    """A diffusers or kohya/WebUI LoRA file as peft state dicts: (UNet, {text component: state}, the file's alpha)."""
    from diffusers.utils import convert_state_dict_to_peft, convert_unet_state_dict_to_peft

    from studio.lora import LoraFormatError, load_lora_file, read_lora_info

    file = Path(path)
    try:
        tensors, _metadata, fmt = load_lora_file(file)
        alpha = read_lora_info(file).alpha
    except (LoraFormatError, OSError) as error:
        raise AdapterError(f"init_lora {file}: {error}") from error
    if fmt == "kohya":
        return (*_kohya_to_peft(tensors, unet, text_encoders, family, file), alpha)
    unet_part, text_parts = split_diffusers_lora(tensors)
    texts = {name: _as_encoder_names(convert_state_dict_to_peft(part), text_encoders.get(name))
             for name, part in text_parts.items() if part}
    return convert_unet_state_dict_to_peft(unet_part), texts, alpha


def _as_encoder_names(state: dict, encoder: torch.nn.Module | None) -> dict:
    """Text-encoder keys as the live encoder names its layers: diffusers files keep transformers 4's ``text_model.``
    part, which transformers 5's CLIP no longer has."""
    if encoder is None or hasattr(encoder, "text_model"):
        return state
    return {key.removeprefix("text_model."): value for key, value in state.items()}


def load_initial_lora(unet: torch.nn.Module, text_encoders: dict[str, torch.nn.Module], path: str | Path,
                      config: TrainConfig, family: Family | None = None) -> None:
    """Start from an existing LoRA file (diffusers or kohya format): incremental training.

    When the file's alpha differs from this run's, ``lora_B`` is rescaled so the LoRA's effect is unchanged.
    """
    file = Path(path)
    if not file.is_file():
        raise AdapterError(f"init_lora: {file} does not exist; pass a .safetensors LoRA file")
    unet_state, texts, alpha = read_lora_file(file, unet, text_encoders, family)
    if not unet_state:
        raise AdapterError(f"init_lora: {file} holds no UNet LoRA tensors")
    factor = (alpha / config.effective_alpha()) if alpha else 1.0
    for state in (unet_state, *texts.values()):
        for key in state:
            if key.endswith("lora_B.weight"):
                state[key] = state[key] * factor
    load_adapter_state(unet, unet_state, f"init_lora {file}")
    if config.train_text_encoder:
        for name, state in texts.items():
            load_adapter_state(text_encoders[name], state, f"init_lora {file}")
