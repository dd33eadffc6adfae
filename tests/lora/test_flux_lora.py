"""The FLUX.1 LoRA file: diffusers' ``FluxPipeline.load_lora_weights`` reads back the trained model, and every key
lands, under ComfyUI's and Forge's rules (``studio.lora.flux_keys``), on the rows of the Black Forest Labs-layout
weight it was trained as, where their formula computes the trained weight — for a LoRA on the attention and on
every Linear layer, with the CLIP text encoder, and an alpha other than the rank (folded into ``lora_B``: the
WebUIs read alpha only from ``.alpha`` tensors, which diffusers refuses beside its adapter configs).
"""
from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import pytest
import torch

from studio.lora import save_diffusers_lora
from studio.lora.check import check_file, check_tensors, group_modules
from studio.lora.clients import comfyui_key_map, comfyui_weight, forge_key_map
from studio.lora.diffusers_webui import TRAINED_ALPHA_KEY, diffusers_targets
from studio.lora.formats import LoraCheckError
from studio.lora.layout import layout_of, standard_layout
from studio.models.families import FLUX
from studio.train.adapters import adapter_state

from .flux_models import ALPHA, ATTENTION, EVERY_LINEAR, RANK, TEXT, adapted, load_flux, transformer_inputs


@pytest.fixture(scope="module", params=[ATTENTION, EVERY_LINEAR], ids=["attention", "every-linear"])
def written(request, tiny_flux_dir, tmp_path_factory):
    pipe = adapted(tiny_flux_dir, request.param)
    states = adapter_state(pipe.transformer), {"text_encoder": adapter_state(pipe.text_encoder)}
    layout = layout_of(FLUX, pipe.transformer, {"text_encoder": pipe.text_encoder})
    folder = tmp_path_factory.mktemp("flux-lora")
    path = save_diffusers_lora(folder, *states, rank=RANK, alpha=ALPHA, unet_targets=request.param, te_targets=TEXT,
                               family=FLUX, layout=layout, metadata={"ss_network_alpha": str(ALPHA)})
    return SimpleNamespace(pipe=pipe, layout=layout, folder=folder, path=path,
                           expected=diffusers_targets(*states, FLUX), targets=request.param)


def _file(path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), framework="pt") as handle:
        return load_file(str(path)), dict(handle.metadata())


def test_every_key_lands_on_its_trained_layer_in_comfyui_and_forge(written):
    tensors, metadata = _file(written.path)
    report = check_tensors(tensors, metadata, written.layout, fmt="diffusers", expected=written.expected)
    assert [check.client for check in report.clients] == ["ComfyUI", "Forge"]
    for check in report.clients:
        assert (check.loaded, check.ignored, check.problems) == (len(tensors), [], [])
    assert report.ok and report.summary().startswith(f"loads in ComfyUI and Forge: {len(tensors)}/{len(tensors)} keys")
    assert len(written.expected) == len(tensors) / 2  # a lora_A and a lora_B per trained layer, nothing else
    transformer_layers = [name for name in written.expected if name.startswith("transformer.")]
    assert len(transformer_layers) == (50 if written.targets is EVERY_LINEAR else 2 * 4 + 2 * 3)


def test_the_files_scale_is_the_trained_one_with_alpha_folded_into_lora_b(written):
    tensors, metadata = _file(written.path)
    assert not [key for key in tensors if key.endswith(".alpha")]
    config = json.loads(metadata["lora_adapter_metadata"])
    assert (config["transformer.lora_alpha"], config["text_encoder.lora_alpha"], config["transformer.r"]) == (
        RANK, RANK, RANK)
    assert (metadata["ss_network_alpha"], metadata[TRAINED_ALPHA_KEY]) == (str(float(RANK)), f"{ALPHA:g}")


def _swap_halves(weight: torch.Tensor) -> torch.Tensor:
    first, second = weight.chunk(2, dim=0)
    return torch.cat([second, first])


def _bfl_weights(transformer, layout, merged: bool) -> dict[str, torch.Tensor]:
    """The transformer's weights in BFL's layout, each diffusers weight in its rows (with its LoRA merged in)."""
    weights = {key: torch.zeros(shape) for key, shape in layout.bfl.items()}
    for path, place in layout.slices.items():
        if place.key not in weights:
            continue
        layer = transformer.get_submodule(path)
        base = layer.get_base_layer() if hasattr(layer, "get_base_layer") else layer
        weight = base.weight.detach().float()
        if merged and hasattr(layer, "get_delta_weight"):
            weight = weight + layer.get_delta_weight("default").float()
        weights[place.key].narrow(0, place.start, weight.shape[0]).copy_(
            _swap_halves(weight) if place.swapped else weight)
    return weights


@pytest.mark.parametrize("client_map", [comfyui_key_map, forge_key_map], ids=["ComfyUI", "Forge"])
def test_the_clients_patch_of_the_bfl_weights_is_the_trained_model(written, client_map):
    """ComfyUI's formula (Forge's is its copy) on each module's rows — the final norm's update swapped as
    ``swap_scale_shift`` swaps it — gives the BFL weights of the trained model; CLIP's layers likewise."""
    tensors, _ = _file(written.path)
    key_map, layout = client_map(written.layout), written.layout
    patched = _bfl_weights(written.pipe.transformer, layout, merged=False)
    for name, module in group_modules(tensors).items():
        component, path = key_map[name]
        if component == "text_encoder":
            encoder = written.pipe.text_encoder  # transformers 4 keeps the layers under text_model, 5 does not
            layer = encoder.get_submodule(path if hasattr(encoder, "encoder") else f"text_model.{path}")
            trained = layer.get_base_layer().weight.float() + layer.get_delta_weight("default").float()
            assert torch.allclose(comfyui_weight(layer.get_base_layer().weight, module.up, module.down, module.alpha),
                                  trained, atol=1e-5), name
            continue
        place = layout.slices[path]
        rows = patched[place.key].narrow(0, place.start, place.size or layout.bfl[place.key][0])
        diff = comfyui_weight(torch.zeros(rows.shape), module.up, module.down, module.alpha)
        rows += _swap_halves(diff) if place.swapped else diff
    expected = _bfl_weights(written.pipe.transformer, layout, merged=True)
    for key in expected:
        assert torch.allclose(patched[key], expected[key], atol=1e-5), key


def test_diffusers_loads_the_file_back_into_the_trained_model(written, tiny_flux_dir):
    reloaded = load_flux(tiny_flux_dir)
    reloaded.load_lora_weights(str(written.folder))
    inputs = transformer_inputs(written.pipe.transformer)
    with torch.no_grad():
        trained, loaded = written.pipe.transformer(**inputs)[0], reloaded.transformer(**inputs)[0]
        base = load_flux(tiny_flux_dir).transformer(**inputs)[0]
        ids = written.pipe.tokenizer(["a red zq circle"], padding="max_length", return_tensors="pt").input_ids
        text = [pipe.text_encoder(ids).pooler_output for pipe in (written.pipe, reloaded)]
    assert not torch.allclose(trained, base, atol=1e-3)  # the LoRA changes the model ...
    assert torch.allclose(loaded, trained, atol=1e-5)  # ... and the file carries exactly that change
    assert torch.allclose(text[1], text[0], atol=1e-5)


def test_a_key_no_client_maps_or_a_layer_the_model_lacks_is_reported(written, tmp_path):
    tensors, metadata = _file(written.path)
    renamed = dict(tensors)
    for suffix in ("lora_A.weight", "lora_B.weight"):
        renamed[f"transformer.transformer_blocks.0.attn.to_qq.{suffix}"] = renamed.pop(
            f"transformer.transformer_blocks.0.attn.to_q.{suffix}")
    report = check_tensors(renamed, metadata, written.layout)
    assert not report.ok and all(check.ignored == ["transformer.transformer_blocks.0.attn.to_qq.lora_A.weight",
                                                   "transformer.transformer_blocks.0.attn.to_qq.lora_B.weight"]
                                 for check in report.clients)
    schnell = replace(written.layout, bfl={k: v for k, v in written.layout.bfl.items()
                                           if not k.startswith("guidance_in.")})
    guided = {f"transformer.time_text_embed.guidance_embedder.linear_1.{part}": torch.zeros(shape)
              for part, shape in (("lora_A.weight", (RANK, 256)), ("lora_B.weight", (64, RANK)))}
    problems = check_tensors(guided, {}, schnell).clients[0].problems
    assert problems == ["transformer.time_text_embed.guidance_embedder.linear_1: guidance_in.in_layer is not a weight "
                        "of this FLUX model, so the patch is dropped"]


def test_forge_loads_nothing_of_a_file_with_more_than_12_unmatched_keys(written):
    tensors, metadata = _file(written.path)
    stray = {f"transformer.unknown_{i}.lora_A.weight": torch.zeros(RANK, 4) for i in range(13)}
    report = check_tensors({**tensors, **stray}, metadata, written.layout)
    comfy, forge = report.clients
    assert len(comfy.ignored) == len(forge.ignored) == 13 and comfy.problems == []
    assert forge.problems == ["13 keys match no layer, more than the 12 Forge tolerates: it loads nothing of this file"]


def test_a_file_for_another_width_is_refused_before_it_replaces_the_old_one(written, tmp_path):
    from studio.toyworld.flux_parts import build_flux_pipeline

    wider = build_flux_pipeline(tmp_path / "parts", guidance_embeds=True, head_dim=8)
    layout = layout_of(FLUX, wider.transformer, {"text_encoder": wider.text_encoder})
    states = adapter_state(written.pipe.transformer), {"text_encoder": adapter_state(written.pipe.text_encoder)}
    (tmp_path / "pytorch_lora_weights.safetensors").write_bytes(b"previous")
    with pytest.raises(LoraCheckError, match="would not load as trained .*does not fit the layer's weight.*"
                                             "the previous file is kept"):
        save_diffusers_lora(tmp_path, *states, rank=RANK, alpha=ALPHA, unet_targets=written.targets, te_targets=TEXT,
                            family=FLUX, layout=layout)
    assert (tmp_path / "pytorch_lora_weights.safetensors").read_bytes() == b"previous"


def test_inspect_reads_a_flux_file_against_the_released_layout(written):
    from studio.lora import read_lora_info
    from studio.lora.info import lora_family

    report = check_file(written.path)
    assert (report.family, report.format, report.layout) == ("flux", "diffusers", "the FLUX.1-dev layout")
    assert report.ok and [check.client for check in report.clients] == ["ComfyUI", "Forge"]
    info = read_lora_info(written.path)
    assert (info.family, info.rank, info.alpha, info.has_unet, info.has_text_encoder) == ("flux", RANK, RANK, True,
                                                                                           True)
    assert {"to_q", "to_k", "to_v", "to_out.0", "q_proj", "mlp.fc1"} <= set(info.targets)
    assert lora_family(written.path) == "flux"


def test_a_kohya_flux_file_in_bfl_names_maps_to_the_whole_fused_weights(tmp_path):
    """sd-scripts' FLUX files name BFL's weights (q, k, v fused): ComfyUI and Forge patch the whole weight."""
    from safetensors.torch import save_file

    hidden, tensors = 3072, {}
    for name, rows in (("lora_unet_double_blocks_0_img_attn_qkv", 3 * hidden), ("lora_unet_single_blocks_5_linear1",
                                                                                  7 * hidden)):
        tensors.update({f"{name}.lora_down.weight": torch.zeros(RANK, hidden),
                        f"{name}.lora_up.weight": torch.zeros(rows, RANK), f"{name}.alpha": torch.tensor(2.0)})
    save_file(tensors, tmp_path / "kohya_flux.safetensors", {"ss_base_model_version": "flux1"})
    report = check_file(tmp_path / "kohya_flux.safetensors")
    assert (report.family, report.format) == ("flux", "kohya") and report.ok
    key_map = comfyui_key_map(standard_layout("flux"))
    assert key_map["lora_unet_double_blocks_0_img_attn_qkv"] == ("bfl", "double_blocks.0.img_attn.qkv")
    assert key_map["lora_unet_single_blocks_5_linear1"] == ("bfl", "single_blocks.5.linear1")
