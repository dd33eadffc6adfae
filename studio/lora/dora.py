"""DoRA decomposed along the input axis: the convention ComfyUI, A1111 and Forge apply to a ``dora_scale`` tensor.

Both WebUIs compute, for a LoRA module with ``dora_scale`` (read from ComfyUI ``weight_adapter/base.py``
``weight_decompose`` and A1111 ``network.py`` ``apply_weight_decompose``)::

    W_calc = W + (alpha / rank) * up @ down
    W'     = W_calc * dora_scale / ||W_calc||        norm of each input column, over output rows and kernel

with ``dora_scale`` shaped ``[1, in]`` (``[1, in, 1, 1]`` for a convolution). PEFT's DoRA (what diffusers loads)
normalises each output row instead, so a PEFT-trained magnitude cannot be written as ``dora_scale``.

Training here uses the WebUI decomposition: scaling the columns of ``W_calc`` by ``d = m / ||W_calc||`` is the
same as scaling the layer's input channels by ``d``, so a plain PEFT LoRA layer gets a learnable magnitude ``m``
(initialised to the column norms of ``W``, so training starts at the base model) and a forward pre-hook that
multiplies its input by ``d``. As in PEFT and the DoRA paper (section 4.3), the norm is detached from the graph.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from peft.tuners.lora import LoraLayer

MAGNITUDE = "dora_scale"  # the parameter's name on a LoRA layer, and the tensor suffix in saved states
SUFFIX = "." + MAGNITUDE


def column_norm(weight: torch.Tensor) -> torch.Tensor:
    """Norm of each input column of a Linear / Conv weight (over output rows and kernel positions): ``[in]``."""
    return weight.transpose(0, 1).reshape(weight.shape[1], -1).norm(dim=1)


def lora_delta(layer: LoraLayer, adapter: str) -> torch.Tensor:
    """``scaling * B @ A`` of one PEFT LoRA layer, shaped like its base weight, in float32."""
    base = layer.get_base_layer().weight
    down = layer.lora_A[adapter].weight.float()
    up = layer.lora_B[adapter].weight.float()
    return (layer.scaling[adapter] * (up.flatten(1) @ down.flatten(1))).reshape(base.shape)


def input_scale(layer: LoraLayer, adapter: str) -> torch.Tensor:
    """``d = m / ||W + scaling * B @ A||`` per input channel (the norm detached)."""
    combined = layer.get_base_layer().weight.float() + lora_delta(layer, adapter)
    return getattr(layer, MAGNITUDE) / column_norm(combined).detach()


def _scale_input_hook(adapter: str):
    def hook(layer, args):
        if layer.disable_adapters or layer.merged or adapter not in layer.active_adapters:
            return None
        x = args[0]
        scale = input_scale(layer, adapter).to(x.dtype)
        shape = (1, -1) + (1,) * (x.dim() - 2) if isinstance(layer.get_base_layer(), nn.Conv2d) else (-1,)
        return (x * scale.view(shape), *args[1:])

    return hook


def _lora_layers(model: nn.Module, adapter: str):
    from peft.tuners.lora import LoraLayer

    for path, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.lora_A:
            yield path, module


def add_input_axis_dora(model: nn.Module, adapter: str) -> int:
    """Give every LoRA layer of ``adapter`` a trainable magnitude and the input-scaling hook; returns their
    number. The magnitude starts at the base weight's column norms, so the model is unchanged at step 0."""
    count = 0
    for _path, layer in _lora_layers(model, adapter):
        if isinstance(layer.get_base_layer(), nn.Conv2d) and layer.get_base_layer().groups != 1:
            raise ValueError("DoRA along the input axis needs convolutions without groups.")
        magnitude = column_norm(layer.get_base_layer().weight.detach().float())
        layer.register_parameter(MAGNITUDE, nn.Parameter(magnitude))
        layer.register_forward_pre_hook(_scale_input_hook(adapter))
        count += 1
    return count


def magnitudes(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{"<layer path>.dora_scale": m}`` (1-D, float32, on the CPU) of every layer that has one."""
    found = {}
    for path, module in model.named_modules():
        value = module._parameters.get(MAGNITUDE) if hasattr(module, "_parameters") else None
        if value is not None:
            found[path + SUFFIX] = value.detach().float().cpu().contiguous()
    return found


def load_magnitudes(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Copy saved magnitudes (``magnitudes`` names) into the model's layers."""
    modules = dict(model.named_modules())
    with torch.no_grad():
        for key, value in state.items():
            parameter = getattr(modules[key[: -len(SUFFIX)]], MAGNITUDE)
            parameter.copy_(value.to(parameter.dtype))


def webui_weight(weight: torch.Tensor, delta: torch.Tensor, dora_scale: torch.Tensor) -> torch.Tensor:
    """The weight a WebUI-axis DoRA layer computes with: ``(W + delta) * m / ||W + delta||`` per input column."""
    combined = weight.float() + delta.float()
    shape = (1, -1) + (1,) * (combined.dim() - 2)
    return combined * (dora_scale.reshape(shape).float() / column_norm(combined).reshape(shape))


def file_shape(magnitude: torch.Tensor, down: torch.Tensor) -> torch.Tensor:
    """A magnitude as a ``dora_scale`` tensor is stored: ``[1, in]``, or ``[1, in, 1, 1]`` for a convolution."""
    return magnitude.reshape((1, -1) + (1,) * (down.dim() - 2))
