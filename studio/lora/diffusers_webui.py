"""The diffusers file as the file WebUIs load (FLUX.1): ComfyUI and Forge read ``transformer.…`` / ``text_encoder.…``
LoRA files as they are, so the file must carry its scale in a form they apply, and its keys are checked like a
WebUI file's.

ComfyUI and Forge take a module's scale only from a ``.alpha`` tensor (1.0 without one), and diffusers refuses a
file that holds both ``.alpha`` tensors and the adapter configs it rebuilds the LoRA from (``lora_adapter_metadata``,
which ``save_diffusers_lora`` writes so alpha survives). So a run whose alpha differs from its rank has the scale
alpha / rank folded into ``lora_B`` and its files say alpha = rank: every loader then computes the trained
update ``alpha / rank · B A``; ``studio.trained_alpha`` keeps the run's own alpha.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from studio.models.families import Family

TRAINED_ALPHA_KEY = "studio.trained_alpha"


def folds_alpha(family: Family, rank: int, alpha: float) -> bool:
    """Whether ``family``'s diffusers file is its WebUI file and needs alpha / rank folded into ``lora_B``."""
    return not family.lora_naming.webui_file and abs(float(alpha) - float(rank)) > 1e-9


def scale_for_webuis(family: Family, denoiser_state: dict[str, torch.Tensor],
                     text_states: dict[str, dict[str, torch.Tensor]], metadata: dict[str, str] | None, rank: int,
                     alpha: float) -> tuple[dict, dict, dict[str, str] | None, float]:
    """(denoiser state, text states, metadata, alpha) to write: as given, or with alpha / rank folded in."""
    if not folds_alpha(family, rank, alpha):
        return denoiser_state, text_states, metadata, alpha
    texts = {name: fold_alpha(state, rank, alpha) for name, state in text_states.items()}
    folded = folded_metadata(dict(metadata or {}), rank, alpha)
    return fold_alpha(denoiser_state, rank, alpha), texts, folded, float(rank)


def fold_alpha(state: dict[str, torch.Tensor], rank: int, alpha: float) -> dict[str, torch.Tensor]:
    """A PEFT state with every ``lora_B`` multiplied by alpha / rank (a LoRA of alpha = rank with the same update)."""
    scale = float(alpha) / float(rank)
    return {key: (value * scale if key.endswith("lora_B.weight") else value) for key, value in state.items()}


def folded_metadata(metadata: dict[str, str], rank: int, alpha: float) -> dict[str, str]:
    """``metadata`` saying what the file holds (alpha = rank) and, apart, the alpha the run trained with."""
    return {**metadata, "ss_network_alpha": str(float(rank)), TRAINED_ALPHA_KEY: f"{float(alpha):g}"}


def diffusers_targets(denoiser_state: dict[str, torch.Tensor], text_states: dict[str, dict[str, torch.Tensor]],
                      family: Family) -> dict[str, tuple[str, str]]:
    """``{module name in the diffusers file: (component, layer path)}``: the layer each module was trained on, as
    ``studio.lora.check`` compares it (FLUX.1's transformer as "transformer", text paths without ``text_model.``)."""
    from .kohya import split_peft_state

    component = "transformer" if family.denoiser_name == "transformer" else "unet"
    targets = {f"{family.denoiser_name}.{path}": (component, path) for path in split_peft_state(denoiser_state)}
    for encoder, state in text_states.items():
        for path in split_peft_state(state):
            layer = path.removeprefix("text_model.")
            targets[f"{encoder}.text_model.{layer}"] = (encoder, layer)
    return targets
