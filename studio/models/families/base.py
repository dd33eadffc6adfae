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

from .objectives import NoisePrediction, Objective

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline, SchedulerMixin
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass
class Components:
    """The parts of a base model that training needs.

    ``denoiser`` is the network that predicts noise or velocity: the UNet of SD 1.x and SDXL, the transformer of
    FLUX.1. ``noise_scheduler`` is the training schedule built from the model's own scheduler config (a
    ``DDPMScheduler`` for the UNet families, so prediction_type, rescale_betas_zero_snr and timestep_spacing are
    the model's; the model's flow-matching scheduler for FLUX). ``kind`` is one of "embedded", "folder",
    "single_file", "hub"; ``source`` is the resolved path or hub id. ``text_encoder_2`` / ``tokenizer_2`` are
    the second encoder of two-encoder families (None otherwise); ``text_encoders`` lists every encoder and
    ``lora_text_encoders`` those a LoRA may change.
    """

    tokenizer: Any
    text_encoder: Any
    vae: Any
    denoiser: Any
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

    @property
    def lora_text_encoders(self) -> dict[str, Any]:
        """Component name -> text encoder, for the encoders a LoRA may change (FLUX: CLIP, not T5)."""
        names = self.family.lora_text_encoder_names if self.family is not None else tuple(self.text_encoders)
        return {name: encoder for name, encoder in self.text_encoders.items() if name in names}


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
    # Whether runs also write the kohya/WebUI file (FLUX: the diffusers file is the one ComfyUI and Forge load).
    webui_file: bool = True


class Family(ABC):
    """One model family. Subclasses set the class attributes and implement the methods that differ."""

    name: ClassVar[str]
    label: ClassVar[str]
    default_resolution: ClassVar[int]
    config_dir: ClassVar[Path]
    lora_naming: ClassVar[LoraNaming]
    text_encoder_names: ClassVar[tuple[str, ...]] = ("text_encoder",)
    lora_text_encoder_names: ClassVar[tuple[str, ...]] = ("text_encoder",)  # those a LoRA may change
    default_guidance: ClassVar[float] = 7.5  # the pipeline's own default guidance scale
    denoiser_name: ClassVar[str] = "unet"  # the pipeline attribute and diffusers LoRA prefix of the denoiser
    flow_matching: ClassVar[bool] = False  # trained and drawn by flow matching (FLUX) instead of DDPM noise
    # Frozen text encoders whose outputs are cached leave the training device (FLUX's T5 is ~9 GB in bf16).
    offload_cached_text_encoders: ClassVar[bool] = False

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
            tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae, denoiser=pipe.unet,
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

    # -- training -------------------------------------------------------------------------------------------
    def objective(self, components: Components, config: Any) -> Objective:
        """What the denoiser learns to predict (``config``: the run's ``TrainConfig``)."""
        return NoisePrediction(components.noise_scheduler, config.min_snr_gamma)

    def ignored_settings(self, config: Any) -> list[str]:
        """Sentences naming the settings of ``config`` this family's training does not use (said before step 1)."""
        flow = [name for name, unset in (("weighting_scheme", "none"), ("flow_shift", 0.0), ("guidance_scale", 1.0))
                if getattr(config, name) != unset]
        if not flow:
            return []
        verb, pronoun = ("applies", "it") if len(flow) == 1 else ("apply", "them")
        return [f"{', '.join(flow)} {verb} only to flow-matching models (FLUX.1): this {self.label} model "
                f"trains without {pronoun}"]

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                conditioning: Conditioning, micro: torch.Tensor | None = None, guidance: float = 1.0) -> torch.Tensor:
        """The denoiser's prediction for ``noisy`` latents (batch, channels, height, width), in the same shape.
        ``guidance`` is the value a guidance-distilled model is told (FLUX.1-dev); others ignore it."""
        hidden = conditioning.hidden
        return denoiser(noisy.to(hidden.dtype), timesteps, **self.unet_kwargs(conditioning, micro)).sample

    def pixel_multiple(self, vae: torch.nn.Module) -> int:
        """Picture sides must be multiples of this many pixels (one latent pixel)."""
        return 2 ** (len(vae.config.block_out_channels) - 1)

    # -- sampling -------------------------------------------------------------------------------------------
    @abstractmethod
    def assemble_pipeline(self, components: Components, scheduler: SchedulerMixin) -> DiffusionPipeline:
        """A pipeline around these very modules (nothing copied) drawing with ``scheduler``."""

    def sampling_scheduler(self, components: Components) -> SchedulerMixin:
        """The scheduler samples during training are drawn with (DDIM for the UNet families)."""
        from diffusers import DDIMScheduler

        return DDIMScheduler.from_config(components.noise_scheduler.config)

    def denoiser_of(self, pipe: DiffusionPipeline) -> torch.nn.Module:
        return getattr(pipe, self.denoiser_name)

    def native_size(self, pipe: DiffusionPipeline) -> int:
        """The side in pixels the model draws by default."""
        return int(self.denoiser_of(pipe).config.sample_size) * int(pipe.vae_scale_factor)

    def initial_latents(self, pipe: DiffusionPipeline, seed: int, width: int, height: int) -> torch.Tensor:
        """The starting noise for ``seed`` in the form the pipeline's ``latents`` argument takes: drawn on the
        CPU in float32, so every device and weight gets the same."""
        shape = (1, self.denoiser_of(pipe).config.in_channels, height // pipe.vae_scale_factor,
                 width // pipe.vae_scale_factor)
        return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(seed)), dtype=torch.float32)

    def sample_guidance(self, pipe: DiffusionPipeline) -> float:
        """The guidance scale samples are drawn with when the config names none."""
        return self.default_guidance

    def call_kwargs(self, pipe: DiffusionPipeline, negatives: list[str] | None, guidance: float) -> dict:
        """The pipeline call's guidance and negative-prompt arguments (``negatives``: one per prompt, "" for none;
        all empty means the pipeline's own empty negative prompt)."""
        return {"negative_prompt": negatives if negatives and any(negatives) else None, "guidance_scale": guidance}

    def __repr__(self) -> str:
        return f"<family {self.name}>"


def scale_latents(vae: torch.nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """VAE latents as the denoiser sees them: shifted (FLUX's VAE has a shift factor, SD's none) and scaled."""
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    return (latents - shift) * float(vae.config.scaling_factor)


def tokens(tokenizer: PreTrainedTokenizerBase, captions: list[str], device: torch.device | str) -> torch.Tensor:
    """Token ids padded/cut to the tokenizer's length, as the pipelines tokenize prompts."""
    return tokenizer(
        captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
    ).input_ids.to(device)
