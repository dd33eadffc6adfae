"""The WebUI file loads in ComfyUI and A1111 as trained: every key maps to the layer it was trained on, with the
trained alpha, and the weight their formulas (``studio.lora.clients``, read from their code) compute from the file
equals what the layer computes in training — for plain LoRA, WebUI-axis DoRA and a LoRA on every layer type.

The base model has SD 1.5's block layout (four levels, two layers per block) at toy widths, so A1111's fixed
SD 1.5 block arithmetic applies to it as to the real model.
"""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from studio.lora import save_kohya_lora
from studio.lora.check import check_tensors
from studio.lora.clients import a1111_weight, comfyui_weight
from studio.lora.kohya import KohyaNamer, kohya_targets
from studio.lora.layout import layout_of
from studio.models.families import SD1
from studio.train.adapters import adapter_state

from .lora_models import ALPHA, ATTENTION, EVERY_LAYER, RANK, trained as _trained


def _layer_output(layer, x):
    with torch.no_grad():
        return layer(x)


def _client_output(layer, x, weight):
    base = layer.get_base_layer()
    if isinstance(base, nn.Conv2d):
        return F.conv2d(x, weight, base.bias, base.stride, base.padding)
    return F.linear(x, weight, base.bias)


@pytest.fixture(scope="module", params=[("lora", ATTENTION, False), ("dora", ATTENTION, True),
                                        ("every-layer", EVERY_LAYER, False)], ids=lambda p: p[0])
def written(request, tmp_path_factory):
    _, targets, use_dora = request.param
    unet, text = _trained(targets, use_dora)
    states = {"unet": adapter_state(unet), "text_encoder": adapter_state(text)}
    layout = layout_of(SD1, unet, {"text_encoder": text})
    path = save_kohya_lora(tmp_path_factory.mktemp("webui") / "x.safetensors", states["unet"],
                           {"text_encoder": states["text_encoder"]}, RANK, ALPHA, layout=layout)
    namer = KohyaNamer(SD1)
    expected = kohya_targets(states["unet"], {"text_encoder": states["text_encoder"]}, namer)
    return SimpleNamespace(unet=unet, text=text, layout=layout, path=path, expected=expected, use_dora=use_dora)


def test_every_key_maps_to_the_trained_layer_with_the_trained_alpha(written):
    from safetensors.torch import load_file

    tensors = load_file(str(written.path))
    report = check_tensors(tensors, {}, written.layout, expected=written.expected)
    assert written.layout.standard
    for check in report.clients:
        assert (check.client, check.loaded, check.ignored, check.problems) == (check.client, len(tensors), [], [])
    assert report.ok and report.summary().startswith(f"loads in ComfyUI and A1111: {len(tensors)}/{len(tensors)} keys")
    assert "alpha 2 on every module" in report.summary()
    per_module = 4 if written.use_dora else 3
    assert len(tensors) == per_module * len(written.expected)
    assert {float(v) for k, v in tensors.items() if k.endswith(".alpha")} == {ALPHA}


@pytest.mark.parametrize("client_weight", [comfyui_weight, a1111_weight], ids=["ComfyUI", "A1111"])
def test_the_clients_formula_on_the_file_equals_the_trained_layer(written, client_weight):
    from safetensors.torch import load_file

    tensors = load_file(str(written.path))
    models = {"unet": written.unet, "text_encoder": written.text}
    generator = torch.Generator().manual_seed(9)
    worst = 0.0
    for name, (component, path) in written.expected.items():
        modules = dict(models[component].named_modules())
        layer = modules[path]
        base = layer.get_base_layer()
        weight = client_weight(base.weight.detach(), tensors[f"{name}.lora_up.weight"],
                               tensors[f"{name}.lora_down.weight"], tensors[f"{name}.alpha"].item(),
                               tensors.get(f"{name}.dora_scale"))
        shape = (2, base.in_channels, 6, 6) if isinstance(base, nn.Conv2d) else (3, base.in_features)
        x = torch.randn(shape, generator=generator)
        trained, applied = _layer_output(layer, x), _client_output(layer, x, weight)
        worst = max(worst, ((trained - applied).abs().max() / trained.abs().max().clamp_min(1e-6)).item())
        assert not torch.allclose(applied, _client_output(layer, x, base.weight)), name  # the LoRA changes it
    assert worst < 1e-5
