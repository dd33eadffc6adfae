"""fp8 storage with per-layer upcast, for a frozen base model that a LoRA trains on.

Each Linear and Conv2d weight is stored in ``float8_e4m3fn`` and upcast to the compute dtype only while its layer
runs. The backward pass upcasts it again instead of keeping the upcast copy, so between forward and backward a
layer holds one byte per weight. Layers whose name has ``norm`` in it, embeddings, biases and the model's first
and last convolution (``conv_in``/``conv_out``: tiny, and where precision matters most) keep the compute dtype;
LoRA layers (trainable) are never touched.

diffusers' ``enable_layerwise_casting`` hooks were measured unfit for training here: they swap each weight's data
back to fp8 after the forward pass, and autograd saved the weight itself, so on a CPU the backward pass of an fp32
compute failed ("expected scalar type Float but found Float8_e4m3fn"); where it did run, the saved upcast views
kept every layer's compute-dtype copy alive until the backward pass, so training saved no memory.
"""
from __future__ import annotations

import types

import torch
import torch.nn.functional as F

STORAGE = torch.float8_e4m3fn
_KEEP = ("norm", "conv_in", "conv_out")


class _UpcastLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, dtype):
        ctx.save_for_backward(weight)
        ctx.dtype, ctx.x_dtype = dtype, x.dtype
        return F.linear(x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype))

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        return (grad.to(ctx.dtype) @ weight.to(ctx.dtype)).to(ctx.x_dtype), None, None, None


class _UpcastConv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, dtype, layer):
        ctx.save_for_backward(weight)
        ctx.dtype, ctx.x_dtype, ctx.shape, ctx.layer = dtype, x.dtype, x.shape, layer
        return F.conv2d(x.to(dtype), weight.to(dtype), None if bias is None else bias.to(dtype),
                        layer.stride, layer.padding, layer.dilation, layer.groups)

    @staticmethod
    def backward(ctx, grad):
        (weight,) = ctx.saved_tensors
        layer = ctx.layer
        grad_x = torch.nn.grad.conv2d_input(ctx.shape, weight.to(ctx.dtype), grad.to(ctx.dtype), layer.stride,
                                            layer.padding, layer.dilation, layer.groups)
        return grad_x.to(ctx.x_dtype), None, None, None, None


def _linear_forward(self, x):
    return _UpcastLinear.apply(x, self.weight, self.bias, self._studio_compute_dtype)


def _conv_forward(self, x):
    return _UpcastConv2d.apply(x, self.weight, self.bias, self._studio_compute_dtype, self)


def _convertible(name: str, module: torch.nn.Module) -> bool:
    if any(part in name for part in _KEEP) or module.weight.requires_grad:
        return False
    if type(module) is torch.nn.Linear:
        return True
    return (type(module) is torch.nn.Conv2d and module.padding_mode == "zeros"
            and not isinstance(module.padding, str))


def store_in_fp8(model: torch.nn.Module, compute: torch.dtype) -> int:
    """Store the frozen Linear/Conv2d weights of ``model`` in fp8, upcast to ``compute`` per layer as it runs;
    returns how many layers were converted."""
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and _convertible(name, module):
            module.weight.data = module.weight.data.to(STORAGE)
            module._studio_compute_dtype = compute
            forward = _linear_forward if isinstance(module, torch.nn.Linear) else _conv_forward
            module.forward = types.MethodType(forward, module)
            count += 1
    return count
