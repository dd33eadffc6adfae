"""The diffusers file's text-encoder keys carry ``text_model.``: the layout transformers 4 loads as it is, that
diffusers strips again for transformers 5's flattened CLIP, and that ComfyUI maps. SDXL's WebUI names are checked
against both clients' rules on the real SDXL layout; the base model's hashes are written as kohya writes them."""
from __future__ import annotations

import hashlib
import os

import torch
from safetensors.torch import load_file, save_file

from studio.lora import build_kohya_metadata, save_diffusers_lora
from studio.lora.check import check_tensors
from studio.lora.layout import standard_layout

TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]


def _adapted_text_encoder(folder):
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from transformers import CLIPTextModel

    encoder = CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder")
    encoder.add_adapter(LoraConfig(r=4, lora_alpha=8, target_modules=TE_TARGETS, init_lora_weights="gaussian"))
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, param in encoder.named_parameters():
            if "lora_B" in name:
                param.add_(0.3 * torch.randn(param.shape, generator=generator))
    return encoder, get_peft_model_state_dict(encoder)


def _transformers4_layout(folder):
    """A CLIP text encoder whose modules sit under ``text_model.`` as in transformers 4.x."""
    from transformers import CLIPPreTrainedModel, CLIPTextModel

    class OldLayoutCLIP(CLIPPreTrainedModel):
        def __init__(self, config):
            super().__init__(config)
            self.text_model = CLIPTextModel(config)

        def forward(self, ids):
            return self.text_model(ids)

    base = CLIPTextModel.from_pretrained(str(folder), subfolder="text_encoder")
    old = OldLayoutCLIP(base.config)
    old.text_model.load_state_dict(base.state_dict())
    return old


def _load_text_lora(folder, encoder):
    from diffusers import StableDiffusionPipeline

    state, alphas, metadata = StableDiffusionPipeline.lora_state_dict(str(folder), return_lora_metadata=True)
    StableDiffusionPipeline.load_lora_into_text_encoder(state, alphas, text_encoder=encoder, prefix="text_encoder",
                                                        adapter_name="x", metadata=metadata)
    with torch.no_grad():
        return encoder(torch.arange(2, 9)[None])[0]


def test_text_encoder_keys_load_under_both_transformers_layouts_and_map_in_comfyui(tiny_sd_dir, tmp_path):
    from transformers import CLIPTextModel

    encoder, state = _adapted_text_encoder(tiny_sd_dir)
    with torch.no_grad():
        adapted = encoder(torch.arange(2, 9)[None])[0]
    save_diffusers_lora(tmp_path / "new", {}, state, rank=4, alpha=8, unet_targets=[], te_targets=TE_TARGETS)
    tensors = load_file(str(tmp_path / "new" / "pytorch_lora_weights.safetensors"))
    assert tensors and all(key.startswith("text_encoder.text_model.encoder.layers.") for key in tensors)
    base = CLIPTextModel.from_pretrained(str(tiny_sd_dir), subfolder="text_encoder")
    assert (_load_text_lora(tmp_path / "new", base) - adapted).abs().max() < 1e-5  # transformers 5 (installed)
    assert (_load_text_lora(tmp_path / "new", _transformers4_layout(tiny_sd_dir)) - adapted).abs().max() < 1e-5
    # The keys transformers 5 itself writes (no text_model.) leave a transformers 4 encoder unchanged.
    flat = tmp_path / "flat"
    flat.mkdir()
    written = tmp_path / "new" / "pytorch_lora_weights.safetensors"
    from studio.lora.formats import _read_metadata

    save_file({k.replace(".text_model.", ".", 1): v for k, v in tensors.items()},
              str(flat / "pytorch_lora_weights.safetensors"), _read_metadata(written))
    assert (_load_text_lora(flat, _transformers4_layout(tiny_sd_dir)) - adapted).abs().max() > 1e-3
    report = check_tensors(tensors, {}, standard_layout("sd1"), shapes=False)
    assert report.clients[0].loaded == len(tensors)  # ComfyUI: text_encoder.text_model.encoder.layers.{i}.{part}


def test_sdxl_webui_names_land_on_the_right_layer_in_both_clients():
    from studio.lora.kohya import KohyaNamer
    from studio.models.families import SDXL

    layout = standard_layout("sdxl")
    assert layout.standard and len(layout.text["text_encoder_2"]) > 6 * 32
    namer = KohyaNamer(SDXL, __import__("json").loads((SDXL.config_dir / "unet" / "config.json").read_text()))
    expected = {namer.unet(path): ("unet", path) for path in layout.unet}
    for component, paths in layout.text.items():
        expected.update({namer.text(component, path): (component, path) for path in paths
                         if ".layers." in path})
    tensors = {}
    for name in expected:
        tensors.update({f"{name}.lora_up.weight": torch.zeros(1, 1), f"{name}.lora_down.weight": torch.zeros(1, 1),
                        f"{name}.alpha": torch.tensor(1.0)})
    report = check_tensors(tensors, {}, layout, expected=expected, shapes=False)
    assert [(c.client, c.loaded, c.ignored[:1], c.problems[:1]) for c in report.clients] == [
        ("ComfyUI", len(tensors), [], []), ("A1111", len(tensors), [], [])]


def test_base_model_hashes_are_kohyas(tmp_path):
    model = tmp_path / "base.safetensors"
    model.write_bytes(os.urandom(0x100000 + 0x18000))
    data = model.read_bytes()
    metadata = build_kohya_metadata({"base_model_path": str(model), "base_model_name": str(model)})
    assert metadata["ss_sd_model_hash"] == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
    assert metadata["ss_new_sd_model_hash"] == hashlib.sha256(data).hexdigest()
    assert metadata["ss_sd_model_name"] == "base.safetensors"
    assert "ss_sd_model_hash" not in build_kohya_metadata({"base_model_path": str(tmp_path)})  # a diffusers folder
