"""Model families: each module describes one architecture (see ``base.Family``); this registry picks one."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Components, Conditioning, Family, LoraNaming
from .flux import FAMILY as FLUX
from .sd1 import FAMILY as SD1
from .sdxl import FAMILY as SDXL

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

FAMILIES: dict[str, Family] = {family.name: family for family in (SD1, SDXL, FLUX)}


def family_named(name: str) -> Family:
    """The family called ``name`` ("sd1", "sdxl", "flux"); ``KeyError`` names the known ones."""
    try:
        return FAMILIES[name]
    except KeyError:
        raise KeyError(f"unknown model family {name!r}: choose one of {', '.join(FAMILIES)}") from None


def family_of_index(index: dict) -> Family:
    """The family a diffusers ``model_index.json`` describes (SD 1.x last: it accepts any other)."""
    for family in (FLUX, SDXL, SD1):
        if family.matches_index(index):
            return family
    return SD1


def family_of_pipeline(pipe: DiffusionPipeline) -> Family:
    """The family of a loaded pipeline object."""
    if getattr(pipe, "transformer", None) is not None:
        return FLUX
    return SDXL if getattr(pipe, "text_encoder_2", None) is not None else SD1


__all__ = ["Components", "Conditioning", "Family", "LoraNaming", "FAMILIES", "family_named", "family_of_index",
           "family_of_pipeline", "SD1", "SDXL", "FLUX"]
