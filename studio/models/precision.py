"""The precision the frozen base model is stored in (``base_weights``), for every family.

``auto`` is the long-standing rule: on a CUDA GPU with ``mixed_precision`` fp16/bf16 the UNet and text encoders
are stored in that dtype, otherwise in fp32. ``fp32``/``bf16``/``fp16`` store them in that dtype on any device.
``fp8`` stores the weights of their Linear and Conv2d layers in ``float8_e4m3fn`` and upcasts each one as it runs
(``studio.models.fp8``). ``nf4`` loads them as bitsandbytes 4-bit layers (QLoRA), which needs the bitsandbytes
package and a CUDA GPU. The VAE is never stored below 16 bits and never in fp16 (fp16 VAEs overflow to NaN).

The LoRA itself always stays fp32: the base is cast after the adapters are added, and only the frozen tensors.
Whatever cannot work on this machine is refused with a ``ModelLoadError`` sentence before any weights load.
"""
from __future__ import annotations

import importlib.util
import tempfile
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

    from .families import Family

CHOICES = ("auto", "fp32", "bf16", "fp16", "fp8", "nf4")
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
_MIXED = {"fp16": torch.float16, "bf16": torch.bfloat16}


@dataclass(frozen=True)
class WeightPlan:
    """Where each part of the base model lives for one run."""

    choice: str
    storage: torch.dtype  # UNet and text encoders (fp8: their Linear/Conv2d weights; nf4: the layers bnb skips)
    compute: torch.dtype  # what the UNet and text encoders compute in, and the dtype their inputs are given in
    vae: torch.dtype

    @property
    def casts_inputs(self) -> bool:
        """True when the UNet's inputs must be cast to ``compute`` (``auto`` relies on autocast, as before)."""
        return self.choice != "auto"


def plan_weights(choice: str, device_type: str, mixed_precision: str) -> WeightPlan:
    """The dtypes of ``base_weights: choice`` on a ``device_type`` device training with ``mixed_precision``."""
    mixed = _MIXED.get(mixed_precision)
    if choice == "auto":
        compute = mixed if device_type == "cuda" and mixed is not None else torch.float32
        storage = compute
    elif choice in _DTYPES:
        storage = compute = _DTYPES[choice]
    else:  # fp8 / nf4: compute in the mixed-precision dtype, else fp32
        compute = mixed or torch.float32
        storage = torch.float8_e4m3fn if choice == "fp8" else compute
    vae = torch.float32 if compute == torch.float16 else compute
    return WeightPlan(choice, storage, compute, vae)


def check_base_weights(choice: str, device_type: str) -> None:
    """Refuse, with a sentence saying what to install or change, a ``base_weights`` this machine cannot train
    with; called before any weights load."""
    from .loading import ModelLoadError

    if choice == "nf4":
        if importlib.util.find_spec("bitsandbytes") is None:
            raise ModelLoadError(
                "base_weights: nf4 needs the bitsandbytes package, which is not installed: install it with "
                "`pip install bitsandbytes` (or `pip install -e '.[nf4]'`) on a machine with a CUDA GPU, "
                "or choose base_weights: bf16 or fp8.")
        if device_type != "cuda":
            raise ModelLoadError(
                "base_weights: nf4 needs a CUDA GPU (bitsandbytes' 4-bit layers train only there) and this run has "
                "none: choose base_weights: bf16 or fp8.")


def nf4_quantize(pipe: DiffusionPipeline, family: Family, compute: torch.dtype) -> None:
    """Replace the pipeline's denoiser and text encoders with bitsandbytes 4-bit (NF4) copies, for any kind of
    source: each is saved to a scratch folder and loaded back with a quantization config."""
    from diffusers import BitsAndBytesConfig as DiffusersBnb
    from transformers import BitsAndBytesConfig as TransformersBnb

    settings = dict(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=compute,
                    bnb_4bit_use_double_quant=True)
    for name in (family.denoiser_name, *family.text_encoder_names):
        module = getattr(pipe, name)
        config = DiffusersBnb(**settings) if name == family.denoiser_name else TransformersBnb(**settings)
        with tempfile.TemporaryDirectory(prefix="studio-nf4-") as scratch:
            module.save_pretrained(scratch)
            quantized = type(module).from_pretrained(scratch, quantization_config=config, torch_dtype=compute)
        setattr(pipe, name, quantized)


def store_base_weights(models: list[torch.nn.Module], plan: WeightPlan) -> None:
    """Cast the frozen tensors of ``models`` (UNet, text encoders, adapters already added) to the plan's storage;
    trainable tensors (the LoRA) are left in fp32. nf4 models were quantized on load and are left alone."""
    if plan.choice == "nf4":
        return
    for model in models:
        for tensor in [*model.parameters(), *model.buffers()]:
            if tensor.is_floating_point() and not tensor.requires_grad and tensor.dtype != plan.compute:
                tensor.data = tensor.data.to(plan.compute)
        if plan.storage == torch.float8_e4m3fn:
            from .fp8 import store_in_fp8

            store_in_fp8(model, plan.compute)


def cast_vae_inputs(vae: torch.nn.Module) -> None:
    """Let the VAE decode latents of any dtype (the pipelines pass them on uncast: fp16/bf16 from the denoiser,
    fp32 starting noise); a no-op cast when they already match."""
    def to_vae_dtype(module, args):
        return (args[0].to(vae.dtype), *args[1:]) if args and torch.is_tensor(args[0]) else args

    for part in (getattr(vae, "post_quant_conv", None), vae.decoder):
        if part is not None and not getattr(part, "_studio_casts_input", False):
            part.register_forward_pre_hook(to_vae_dtype)
            part._studio_casts_input = True
