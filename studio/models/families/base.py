"""What every model family provides, and the parts of a loaded model that training and sampling share.

A family (SD 1.x, SDXL, ...) owns everything that differs between architectures: how its models are recognised
and loaded, how a caption becomes the UNet's conditioning, the micro-conditioning numbers some families add,
which text-encoder layers a LoRA can change, the names and metadata of its LoRA files and the pipeline that
draws with it. Code outside ``studio/models/families`` asks the family and never names a pipeline class.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline, SchedulerMixin
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Components:
    """The parts of a base model that training needs.

    ``noise_scheduler`` is a ``DDPMScheduler`` built from the model's own scheduler config, so prediction_type,
    rescale_betas_zero_snr and timestep_spacing are the model's. ``kind`` is one of "embedded", "folder",
    "single_file", "hub"; ``source`` is the resolved path or hub id. ``text_encoder_2`` / ``tokenizer_2`` are
    the second encoder of two-encoder families (None otherwise); ``text_encoders`` lists every encoder.
    """

    tokenizer: Any
    text_encoder: Any
    vae: Any
    unet: Any
    noise_scheduler: Any
    source: str
    kind: str
    family: Any = None
    tokenizer_2: Any = None
    text_encoder_2: Any = None

    @property
    def text_encoders(self) -> dict[str, Any]:
        """Component name -> text encoder, for every text encoder this model has."""
        encoders = {"text_encoder": self.text_encoder}
        if self.text_encoder_2 is not None:
            encoders["text_encoder_2"] = self.text_encoder_2
        return encoders


@dataclass
class Conditioning:
    """What the UNet reads of a batch of captions: cross-attention states and, for some families, a pooled vector."""

    hidden: torch.Tensor
    pooled: torch.Tensor | None = None

    def __getitem__(self, index) -> Conditioning:
        return Conditioning(self.hidden[index], None if self.pooled is None else self.pooled[index])

    def rows(self) -> list[Conditioning]:
        """One ``Conditioning`` per caption (on the CPU, for a cache)."""
        pooled = [None] * len(self.hidden) if self.pooled is None else list(self.pooled.float().cpu())
        return [Conditioning(h, p) for h, p in zip(self.hidden.float().cpu(), pooled)]

    @staticmethod
    def stack(rows: list[Conditioning], device: torch.device | str) -> Conditioning:
        hidden = torch.stack([row.hidden for row in rows]).to(device)
        pooled = None if rows[0].pooled is None else torch.stack([row.pooled for row in rows]).to(device)
        return Conditioning(hidden, pooled)


@dataclass(frozen=True)
class LoraNaming:
    """How a family's LoRA files name things: kohya/WebUI prefixes per text encoder and the metadata that says
    which model the LoRA is for."""

    text_prefixes: dict[str, str]
    base_model_version: str
    architecture: str
    extra_metadata: dict[str, str] = field(default_factory=dict)
    # Layers a WebUI patches only together, per text encoder (A1111 applies SDXL's second encoder's q, k, v and
    # out_proj to one OpenCLIP attention weight, and skips a layer whose file lacks one of them).
    patched_together: dict[str, tuple[str, ...]] = field(default_factory=dict)


class Family(ABC):
    """One model family. Subclasses set the class attributes and implement the methods that differ."""

    name: ClassVar[str]
    label: ClassVar[str]
    default_resolution: ClassVar[int]
    config_dir: ClassVar[Path]
    lora_naming: ClassVar[LoraNaming]
    text_encoder_names: ClassVar[tuple[str, ...]] = ("text_encoder",)

    # -- recognising and loading ----------------------------------------------------------------------------
    @abstractmethod
    def pipeline_class(self) -> type[DiffusionPipeline]:
        """The diffusers text-to-image pipeline class of this family."""

    @abstractmethod
    def matches_index(self, index: dict) -> bool:
        """True when a diffusers ``model_index.json`` describes a model of this family."""

    def components(self, pipe: DiffusionPipeline, source: str, kind: str) -> Components:
        from diffusers import DDPMScheduler

        extra = {name: getattr(pipe, name) for name in ("tokenizer_2", "text_encoder_2") if hasattr(pipe, name)}
        return Components(
            tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae, unet=pipe.unet,
            noise_scheduler=DDPMScheduler.from_config(pipe.scheduler.config), source=source, kind=kind,
            family=self, **extra,
        )

    # -- conditioning -------------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, components: Components, captions: list[str], device: torch.device | str) -> Conditioning:
        """The UNet's text conditioning for ``captions``, as this family's pipelines compute it."""

    def text_encoder_layers(self, name: str, encoder: PreTrainedModel) -> list[int] | None:
        """The layers of text encoder ``name`` whose output reaches the UNet (None: all of them); a LoRA in any
        other layer would never change the picture."""
        return None

    def micro_conditioning(self, original_size: tuple[int, int], crop_top_left: tuple[int, int],
                           target_size: tuple[int, int]) -> list[float] | None:
        """Per-picture numbers the UNet is told besides the caption (sizes as (height, width)); None if none."""
        return None

    def unet_kwargs(self, conditioning: Conditioning, micro: torch.Tensor | None) -> dict:
        """Keyword arguments of the UNet call after (sample, timestep)."""
        return {"encoder_hidden_states": conditioning.hidden}

    # -- sampling -------------------------------------------------------------------------------------------
    @abstractmethod
    def assemble_pipeline(self, components: Components, scheduler: SchedulerMixin) -> DiffusionPipeline:
        """A pipeline around these very modules (nothing copied) drawing with ``scheduler``."""

    def __repr__(self) -> str:
        return f"<family {self.name}>"


def tokens(tokenizer: PreTrainedTokenizerBase, captions: list[str], device: torch.device | str) -> torch.Tensor:
    """Token ids padded/cut to the tokenizer's length, as the pipelines tokenize prompts."""
    return tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
