"""kohya/WebUI names of SDXL LoRAs checked against a real SDXL-shaped UNet and both real text encoders.

ComfyUI (``comfy/lora.py``) and A1111 (``extensions-builtin/Lora/networks.py``) look a ``lora_unet_X`` module up as
the original-layout UNet weight ``diffusion_model.X`` with ``.`` -> ``_``, and SDXL's text encoders as
``lora_te1_text_model_encoder_layers_{i}_{part}`` (CLIP-L) and ``lora_te2_…`` (OpenCLIP bigG). The original
names are checked independently of our own table: diffusers' converter (the one ``from_single_file`` uses) must
turn the original-layout names we derive back into exactly the UNet's own parameters.
"""
from __future__ import annotations

import json
import re

import torch
from torch import nn

from studio.lora.kohya import KohyaNamer
from studio.models.families import SDXL

TEXT_NAME = re.compile(r"lora_te[12]_text_model_encoder_layers_(\d+)_(self_attn_(q|k|v|out)_proj|mlp_fc[12])")


def _meta(build):
    from accelerate import init_empty_weights

    with init_empty_weights():
        return build()


def _shipped_config(part: str) -> dict:
    return json.loads((SDXL.config_dir / part / "config.json").read_text())


def test_every_unet_module_has_the_original_sdxl_name_that_diffusers_reads_back():
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint

    unet = _meta(lambda: UNet2DConditionModel.from_config(_shipped_config("unet")))
    assert sum(p.numel() for p in unet.parameters()) == 2_567_463_684  # SDXL base 1.0
    namer = KohyaNamer(SDXL, unet.config)
    original = {}
    for key, tensor in unet.state_dict().items():
        module, _, leaf = key.rpartition(".")
        original[f"model.diffusion_model.{namer.unet_module(module)}.{leaf}"] = tensor
    converted = convert_ldm_unet_checkpoint(original, dict(unet.config))
    assert set(converted) == set(unet.state_dict())
    for key in unet.state_dict():  # the same tensor comes back under the same name
        module, _, leaf = key.rpartition(".")
        assert converted[key] is original[f"model.diffusion_model.{namer.unet_module(module)}.{leaf}"], key
    lora_layers = [path for path, m in unet.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    names = {namer.unet(path) for path in lora_layers}
    assert len(names) == len(lora_layers)  # no two layers share a WebUI name
    assert "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q" in names
    assert "lora_unet_output_blocks_0_1_transformer_blocks_9_ff_net_2" in names
    assert "lora_unet_middle_block_1_proj_in" in names and "lora_unet_input_blocks_7_0_in_layers_2" in names


def test_every_text_encoder_name_is_the_form_comfyui_and_a1111_map():
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    encoders = {
        "text_encoder": _meta(lambda: CLIPTextModel(CLIPTextConfig(**_shipped_config("text_encoder")))),
        "text_encoder_2": _meta(lambda: CLIPTextModelWithProjection(
            CLIPTextConfig(**_shipped_config("text_encoder_2")))),
    }
    namer = KohyaNamer(SDXL, _shipped_config("unet"))
    for component, model in encoders.items():
        layers = [path for path, m in model.named_modules() if isinstance(m, nn.Linear) and ".layers." in path]
        depth = model.config.num_hidden_layers
        assert len(layers) == 6 * depth  # q, k, v, out, fc1, fc2 in every layer
        for path in layers:
            name = namer.text(component, path)
            match = TEXT_NAME.fullmatch(name)
            assert match and name.startswith({"text_encoder": "lora_te1_", "text_encoder_2": "lora_te2_"}[component])
            assert int(match.group(1)) < depth
    assert torch.Size([1280, 1280]) == encoders["text_encoder_2"].text_projection.weight.shape
