"""The WebUI file loads in ComfyUI and A1111 as trained: every key maps to the layer it was trained on, with the
trained alpha, and the weight their formulas (``studio.lora.clients``, read from their code) compute from the file
equals what the layer computes in training — for plain LoRA, WebUI-axis DoRA and a LoRA on every layer type, on
each family.

The base models have SD 1.5's block layout (four levels, two layers per block) and SDXL base's (three levels, 1/2/10
transformer layers, two text encoders) at toy widths, so the clients' fixed block arithmetic applies to them as to
the released models; SDXL's second encoder is patched through A1111's OpenCLIP attention (q, k, v as slices of one
weight).
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
from studio.models.families import SD1, SDXL
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


VARIANTS = [("lora", ATTENTION, False), ("dora", ATTENTION, True), ("every-layer", EVERY_LAYER, False)]


@pytest.fixture(scope="module", params=[(family, *variant) for family in (SD1, SDXL) for variant in VARIANTS],
                ids=lambda p: f"{p[0].name}-{p[1]}")
def written(request, tmp_path_factory):
    family, _, targets, use_dora = request.param
    unet, texts = _trained(targets, use_dora, family)
    unet_state = adapter_state(unet)
    text_states = {component: adapter_state(model) for component, model in texts.items()}
    layout = layout_of(family, unet, texts)
    path = save_kohya_lora(tmp_path_factory.mktemp("webui") / "x.safetensors", unet_state, text_states, RANK,
                           ALPHA, family=family, unet_config=dict(unet.config), layout=layout)
    namer = KohyaNamer(family, dict(unet.config))
    expected = kohya_targets(unet_state, text_states, namer)
    return SimpleNamespace(unet=unet, texts=texts, layout=layout, path=path, expected=expected, use_dora=use_dora,
                           family=family)


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
    """Each client's patch formula, applied to the file's tensors, reproduces the trained layer (one layer of every
    kind and shape)."""
    from safetensors.torch import load_file

    tensors = load_file(str(written.path))
    models = {"unet": written.unet, **written.texts}
    generator = torch.Generator().manual_seed(9)
    worst, seen = 0.0, set()
    named = {component: dict(model.named_modules()) for component, model in models.items()}
    for name, (component, path) in written.expected.items():
        modules = named[component]
        layer = modules.get(path) or modules[f"text_model.{path}"]  # CLIPTextModelWithProjection keeps text_model.
        base = layer.get_base_layer()
        # One layer per kind and shape: the formula depends on nothing else, and every key's mapping is checked
        # by the test above (SDXL's every-layer file has hundreds of large convolutions).
        kind = (component, type(base).__name__, tuple(base.weight.shape))
        if kind in seen:
            continue
        seen.add(kind)
        weight = client_weight(base.weight.detach(), tensors[f"{name}.lora_up.weight"],
                               tensors[f"{name}.lora_down.weight"], tensors[f"{name}.alpha"].item(),
                               tensors.get(f"{name}.dora_scale"))
        shape = (2, base.in_channels, 6, 6) if isinstance(base, nn.Conv2d) else (3, base.in_features)
        x = torch.randn(shape, generator=generator)
        trained, applied = _layer_output(layer, x), _client_output(layer, x, weight)
        worst = max(worst, ((trained - applied).abs().max() / trained.abs().max().clamp_min(1e-6)).item())
        assert not torch.allclose(applied, _client_output(layer, x, base.weight)), name  # the LoRA changes it
    assert worst < 1e-5


def test_a1111_skips_an_attention_layer_of_sdxl_s_second_encoder_that_lacks_one_projection(tmp_path):
    """A1111 patches OpenCLIP's fused attention only when q, k, v and out_proj of the layer are all present;
    ComfyUI patches each projection on its own and loads the rest."""
    from safetensors.torch import load_file

    unet, texts = _trained(ATTENTION, False, SDXL)
    layout = layout_of(SDXL, unet, texts)
    path = save_kohya_lora(tmp_path / "x.safetensors", adapter_state(unet),
                           {c: adapter_state(m) for c, m in texts.items()}, RANK, ALPHA, family=SDXL,
                           unet_config=dict(unet.config))
    layer = "lora_te2_text_model_encoder_layers_0_self_attn_"
    tensors = {k: v for k, v in load_file(str(path)).items() if not k.startswith(layer + "k_proj.")}
    report = check_tensors(tensors, {}, layout)
    comfyui, a1111 = report.clients
    assert comfyui.ok and comfyui.loaded == len(tensors)
    assert sorted(a1111.ignored) == sorted(k for k in tensors if k.startswith(layer))  # q, v, out: 9 keys
    assert len(a1111.ignored) == 9 and a1111.loaded == len(tensors) - 9
    assert sorted(a1111.problems) == [f"{layer}{part}_proj is skipped: A1111 patches this attention layer of the second "
                              f"text encoder only with its q, k, v and out_proj together, and the file lacks k_proj"
                              for part in ("out", "q", "v")]


def test_a_run_that_would_target_part_of_that_attention_is_refused_before_training():
    from studio.train.adapters import AdapterError, add_lora_adapters

    from .lora_models import sd15_layout_model, sdxl_layout_model

    unet, texts = sdxl_layout_model()
    config = SimpleNamespace(
        effective_alpha=lambda: ALPHA, target_modules=ATTENTION, text_encoder_target_modules=["q_proj", "v_proj"],
        lora_rank=RANK, lora_dropout=0.0, use_dora=False, dora_axis="webui", seed=3, train_text_encoder=True)
    with pytest.raises(AdapterError) as refused:
        add_lora_adapters(unet, texts, config, SDXL)
    assert str(refused.value) == (
        "text_encoder_target_modules has q_proj, v_proj but not k_proj, out_proj: A1111 patches SDXL's text encoder 2 "
        "attention only with q_proj, k_proj, v_proj, out_proj together; add k_proj, out_proj or leave all of them out")
    unet, text = sd15_layout_model()  # SD 1.x's encoder has no such layer: the same targets train
    add_lora_adapters(unet, {"text_encoder": text}, config, SD1)
