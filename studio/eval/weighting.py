"""One LoRA at a different weight for each picture of a batch, so a row's weights are drawn in one call.

diffusers' ``set_adapters`` gives an adapter one weight for the whole batch. Here the adapter is set to weight 1
and a forward hook on each of its ``lora_B`` layers multiplies that layer's output, picture by picture, by the
weight asked for it: ``base(x) + weight_i * scale * B(A(x))``, which is what ``set_adapters(weight_i)`` computes
for a plain LoRA. A DoRA is not a plain sum (its magnitude normalises base plus LoRA together), so it cannot be
weighted this way; ``supports_per_picture_weights`` says which adapters can.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import torch

from .spec import EvalError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from peft.tuners.lora import LoraLayer

PARTS = ("unet", "transformer", "text_encoder", "text_encoder_2")  # the parts a LoRA may change (FLUX: transformer)


def lora_layers(pipe: DiffusionPipeline, adapter: str | None = None) -> list[LoraLayer]:
    """Every PEFT LoRA layer of the denoiser (UNet or transformer) and the text encoders (only those holding ``adapter`` when given)."""
    from peft.tuners.lora import LoraLayer

    layers = []
    for part in PARTS:
        model = getattr(pipe, part, None)
        if model is not None:
            layers += [m for m in model.modules()
                       if isinstance(m, LoraLayer) and (adapter is None or adapter in m.lora_B)]
    return layers


def supports_per_picture_weights(pipe: DiffusionPipeline, adapter: str) -> bool:
    """True for a plain LoRA (no DoRA or other variant anywhere), whose output can be scaled picture by picture."""
    layers = lora_layers(pipe, adapter)
    return bool(layers) and not any(adapter in getattr(layer, "lora_variant", {}) for layer in layers)


@contextmanager
def per_picture_weights(pipe: DiffusionPipeline, adapter: str, weights: list[float]) -> Iterator[None]:
    """While inside, picture ``i`` of every batch gets ``adapter`` at ``weights[i]`` (the adapter set to weight 1).

    A batch may hold the pictures once (the text encoder) or several times over (the UNet with classifier-free
    guidance stacks the unconditional and the conditional halves); any other batch size is an error.
    """
    factors = torch.tensor([float(w) for w in weights], dtype=torch.float32)
    ready: dict = {}  # (batch size, device, dtype) -> factors there: one copy to a GPU per call, not per layer

    def scale_output(module, args, output):
        count = output.shape[0]
        if count % len(factors):
            raise EvalError(f"a batch of {count} cannot carry {len(factors)} per-picture LoRA weights")
        key = (count, output.device, output.dtype)
        if key not in ready:
            ready[key] = factors.repeat(count // len(factors)).to(output.device, output.dtype)
        return output * ready[key].view(-1, *([1] * (output.ndim - 1)))

    handles = [layer.lora_B[adapter].register_forward_hook(scale_output) for layer in lora_layers(pipe, adapter)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
