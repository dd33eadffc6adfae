"""FLUX.1 (dev and schnell): a flow-matching transformer read by a CLIP and a T5 text encoder.

A caption becomes CLIP's pooled output (the transformer's ``pooled_projections``) and T5's last hidden state
(its ``encoder_hidden_states``), as ``FluxPipeline.encode_prompt`` computes them. Latents are packed into 2 × 2
patches before the transformer and unpacked after it; text and image tokens carry position ids. dev is
guidance-distilled: its transformer is told a guidance value (``guidance_embeds``) instead of running
classifier-free guidance; a model without that embedding (schnell, the toy world) is drawn with true
classifier-free guidance when the guidance asked for is above 1.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from .base import Components, Conditioning, Family, LoraNaming, tokens
from .objectives import FlowMatching

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline, SchedulerMixin

# Pipelines that share the FLUX.1 transformer but are not text-to-image: they need inputs training cannot give.
_OTHER_TASKS = ("Img2Img", "Inpaint", "Fill", "Control", "Kontext", "Prior", "Redux")
T5_MAX_LENGTH = 512  # FluxPipeline refuses longer prompts


class Flux(Family):
    name = "flux"
    label = "FLUX.1"
    default_resolution = 1024
    config_dir = Path(__file__).resolve().parents[1] / "flux"
    text_encoder_names = ("text_encoder", "text_encoder_2")
    lora_text_encoder_names = ("text_encoder",)  # T5 stays frozen (as in every FLUX trainer)
    denoiser_name = "transformer"
    flow_matching = True
    offload_cached_text_encoders = True
    default_guidance = 3.5
    # The diffusers file is the one ComfyUI and Forge load (studio.lora.flux_keys); A1111 has no FLUX.1.
    # architecture: dev's; a schnell run's files say flux-1-schnell/lora (architecture_of).
    lora_naming = LoraNaming(
        text_prefixes={"text_encoder": "lora_te1_"},
        base_model_version="flux1",
        architecture="flux-1-dev/lora",
        extra_metadata={"modelspec.implementation": "https://github.com/black-forest-labs/flux"},
        webui_file=False,
    )

    def pipeline_class(self) -> type[DiffusionPipeline]:
        from diffusers import FluxPipeline

        return FluxPipeline

    def matches_index(self, index: dict) -> bool:
        name = str(index.get("_class_name", ""))
        return "transformer" in index and name.startswith("Flux") and not any(t in name for t in _OTHER_TASKS)

    def components(self, pipe: DiffusionPipeline, source: str, kind: str) -> Components:
        from diffusers import FlowMatchEulerDiscreteScheduler

        return Components(
            tokenizer=pipe.tokenizer, text_encoder=pipe.text_encoder, vae=pipe.vae, denoiser=pipe.transformer,
            noise_scheduler=FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config), source=source,
            kind=kind, family=self, tokenizer_2=pipe.tokenizer_2, text_encoder_2=pipe.text_encoder_2,
        )

    @staticmethod
    def is_schnell(transformer: torch.nn.Module) -> bool:
        """schnell has no guidance embedding; dev has."""
        return not bool(_config(transformer).guidance_embeds)

    def architecture_of(self, transformer: torch.nn.Module) -> str:
        """``modelspec.architecture`` for a LoRA of this transformer."""
        return "flux-1-schnell/lora" if self.is_schnell(transformer) else "flux-1-dev/lora"

    # -- conditioning -------------------------------------------------------------------------------------
    @staticmethod
    def text_length(tokenizer_2: Any) -> int:
        """T5 tokens per caption: the tokenizer's length, at most the 512 FluxPipeline accepts."""
        return min(int(tokenizer_2.model_max_length), T5_MAX_LENGTH)

    def encode(self, components: Components, captions: list[str], device: torch.device | str) -> Conditioning:
        clip = components.text_encoder
        pooled = clip(tokens(components.tokenizer, captions, _device_of(clip)), output_hidden_states=False)
        t5 = components.text_encoder_2
        ids = components.tokenizer_2(captions, padding="max_length", max_length=self.text_length(components.tokenizer_2),
                                     truncation=True, return_tensors="pt").input_ids
        hidden = t5(ids.to(_device_of(t5)), output_hidden_states=False)[0]
        return Conditioning(hidden.to(device), pooled.pooler_output.to(device))

    # -- training -------------------------------------------------------------------------------------------
    def objective(self, components: Components, config: Any) -> FlowMatching:
        return FlowMatching(components.noise_scheduler, config.weighting_scheme, config.logit_mean, config.logit_std,
                            config.mode_scale, config.flow_shift)

    def ignored_settings(self, config: Any) -> list[str]:
        unused = [name for name, unset in (("min_snr_gamma", None), ("prediction_type", "auto"))
                  if getattr(config, name) != unset]
        if not unused:
            return []
        verb = "applies" if len(unused) == 1 else "apply"
        return [f"{', '.join(unused)} {verb} only to the UNet families (SD 1.x, SDXL): FLUX.1 trains by flow "
                "matching; choose its noise levels with weighting_scheme and flow_shift"]

    def predict(self, denoiser: torch.nn.Module, noisy: torch.Tensor, timesteps: torch.Tensor,
                conditioning: Conditioning, micro: torch.Tensor | None = None, guidance: float = 1.0) -> torch.Tensor:
        """Pack ``noisy``, run the transformer as ``FluxPipeline`` does (timestep / 1000, position ids, the guidance
        value for dev) and unpack its velocity back to the latents' shape."""
        batch, channels, height, width = noisy.shape
        hidden = conditioning.hidden
        dtype, device = hidden.dtype, hidden.device
        packed = pack_latents(noisy).to(dtype)
        image_ids = image_position_ids(height, width, device, dtype)
        text_ids = torch.zeros(hidden.shape[1], 3, device=device, dtype=dtype)
        embedded = None
        if _config(denoiser).guidance_embeds:
            embedded = torch.full((batch,), float(guidance), device=device, dtype=torch.float32)
        output = denoiser(hidden_states=packed, timestep=timesteps.to(device, dtype) / 1000, guidance=embedded,
                          pooled_projections=conditioning.pooled.to(dtype), encoder_hidden_states=hidden,
                          txt_ids=text_ids, img_ids=image_ids, return_dict=False)[0]
        return unpack_latents(output, channels, height, width)

    def pixel_multiple(self, vae: torch.nn.Module) -> int:
        """Two latent pixels: latents are packed in 2 × 2 patches (16 px for FLUX.1's VAE)."""
        return 2 * super().pixel_multiple(vae)

    # -- sampling -------------------------------------------------------------------------------------------
    def assemble_pipeline(self, components: Components, scheduler: SchedulerMixin) -> DiffusionPipeline:
        return self.pipeline_class()(
            scheduler=scheduler, vae=components.vae, text_encoder=components.text_encoder,
            tokenizer=components.tokenizer, text_encoder_2=components.text_encoder_2,
            tokenizer_2=components.tokenizer_2, transformer=components.denoiser,
        )

    def sampling_scheduler(self, components: Components) -> SchedulerMixin:
        from diffusers import FlowMatchEulerDiscreteScheduler

        return FlowMatchEulerDiscreteScheduler.from_config(components.noise_scheduler.config)

    def native_size(self, pipe: DiffusionPipeline) -> int:
        return int(pipe.vae.config.sample_size)

    def initial_latents(self, pipe: DiffusionPipeline, seed: int, width: int, height: int) -> torch.Tensor:
        """Packed starting noise (FluxPipeline takes ``latents`` packed)."""
        channels = _config(pipe.transformer).in_channels // 4
        latent_h = 2 * (int(height) // (pipe.vae_scale_factor * 2))
        latent_w = 2 * (int(width) // (pipe.vae_scale_factor * 2))
        noise = torch.randn((1, channels, latent_h, latent_w), generator=torch.Generator("cpu").manual_seed(int(seed)),
                            dtype=torch.float32)
        return pack_latents(noise)

    def sample_guidance(self, pipe: DiffusionPipeline) -> float:
        """dev: its distilled guidance 3.5; a model without a guidance embedding (schnell) draws without
        classifier-free guidance, as schnell is meant to (a guidance above 1 would run true CFG)."""
        return self.default_guidance if _config(pipe.transformer).guidance_embeds else 1.0

    def call_kwargs(self, pipe: DiffusionPipeline, negatives: list[str] | None, guidance: float) -> dict:
        kwargs: dict = {"max_sequence_length": self.text_length(pipe.tokenizer_2)}
        if _config(pipe.transformer).guidance_embeds:
            kwargs["guidance_scale"] = guidance
        elif guidance > 1 and negatives is not None:
            kwargs.update(true_cfg_scale=guidance, negative_prompt=list(negatives))
        return kwargs


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(batch, channels, h, w) -> (batch, h/2 · w/2, channels · 4): 2 × 2 patches, as ``FluxPipeline`` packs."""
    batch, channels, height, width = latents.shape
    patches = latents.view(batch, channels, height // 2, 2, width // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return patches.reshape(batch, (height // 2) * (width // 2), channels * 4)


def unpack_latents(packed: torch.Tensor, channels: int, height: int, width: int) -> torch.Tensor:
    """The inverse of ``pack_latents``."""
    batch = packed.shape[0]
    patches = packed.view(batch, height // 2, width // 2, channels, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return patches.reshape(batch, channels, height, width)


def image_position_ids(height: int, width: int, device: torch.device | str, dtype: torch.dtype) -> torch.Tensor:
    """(h/2 · w/2, 3) position ids of the packed image tokens: (0, row, column)."""
    ids = torch.zeros(height // 2, width // 2, 3)
    ids[..., 1] = torch.arange(height // 2)[:, None]
    ids[..., 2] = torch.arange(width // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


def _config(module: torch.nn.Module):
    """The diffusers config of a module, through accelerate's DistributedDataParallel wrapper when there is one."""
    return getattr(module, "module", module).config


def _device_of(module: torch.nn.Module) -> torch.device:
    return next(module.parameters()).device


FAMILY = Flux()
