"""``studio.py inspect FILE``: format, family, rank and alpha per part, which keys each client loads, metadata —
and on a broken file (a renamed key, a missing alpha) the problem by name."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from studio.cli import main
from studio.lora import build_kohya_metadata, save_kohya_lora
from studio.lora.formats import _read_metadata
from studio.train.adapters import adapter_state

from .lora_models import ALPHA, ATTENTION, RANK, trained

RENAMED = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"


@pytest.fixture(scope="module")
def webui_file(tmp_path_factory):
    unet, texts = trained(ATTENTION, use_dora=False)
    metadata = build_kohya_metadata({"output_name": "star", "base_model_name": "v1-5-pruned.safetensors"})
    return save_kohya_lora(tmp_path_factory.mktemp("inspect") / "star.safetensors", adapter_state(unet),
                           {"text_encoder": adapter_state(texts["text_encoder"])}, RANK, ALPHA, metadata)


def test_inspect_reports_a_good_file(webui_file, capsys):
    assert main(["inspect", str(webui_file)]) == 0
    out = capsys.readouterr().out
    total = len(load_file(str(webui_file)))
    assert f"ComfyUI: ✓ loads {total}/{total} keys" in out and f"A1111: ✓ loads {total}/{total} keys" in out
    assert "format: kohya   family: sd1 (keys checked against the SD 1.5 layout)" in out
    assert "unet: 128 modules, rank 4, alpha 2" in out and "text_encoder: 12 modules, rank 4, alpha 2" in out
    assert "ss_output_name: star" in out and "ss_sd_model_name: v1-5-pruned.safetensors" in out


def test_inspect_names_a_renamed_key_and_a_missing_alpha(webui_file, tmp_path, capsys):
    tensors, metadata = load_file(str(webui_file)), _read_metadata(webui_file)
    broken = {}
    for key, value in tensors.items():
        if key.startswith(RENAMED + "."):
            key = key.replace("lora_unet_down_blocks_0", "lora_unet_down_block_0")  # a converter's typo
        if key == "lora_te_text_model_encoder_layers_1_mlp_fc2.alpha" or key.endswith("layers_0_self_attn_q_proj.alpha"):
            continue
        broken[key] = value
    path = tmp_path / "broken.safetensors"
    save_file(broken, str(path), metadata)
    assert main(["inspect", str(path)]) == 1
    out = capsys.readouterr().out
    typo = RENAMED.replace("down_blocks_0", "down_block_0")
    assert out.count(f"      {typo}.lora_up.weight") == 2  # listed as not loaded under both clients
    assert f"ComfyUI: ✗ loads {len(broken) - 3}/{len(broken)} keys" in out
    assert "text_encoder: 12 modules, rank 4, alpha 2 (2 without)" in out
    assert "has no .alpha tensor: ComfyUI and A1111 apply scale 1.0, not the trained alpha/rank = 2/4" in out


def test_inspect_a_diffusers_file_says_which_keys_comfyui_skips(tmp_path, capsys):
    from studio.lora import save_diffusers_lora

    unet, texts = trained(ATTENTION, use_dora=False)
    save_diffusers_lora(tmp_path, adapter_state(unet), adapter_state(texts["text_encoder"]), rank=RANK, alpha=ALPHA,
                        unet_targets=ATTENTION, te_targets=["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"])
    assert main(["inspect", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    # ComfyUI maps the text encoder's diffusers keys (with text_model.), not the UNet's attention ones.
    text_keys = 2 * 12
    assert f"ComfyUI: ✗ loads {text_keys}/{text_keys + 2 * 128} keys" in out
    assert "unet.down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_k.lora_A.weight" in out
    assert "A1111: ✗ loads 0/" in out
    assert "has no .alpha tensor: ComfyUI and A1111 apply scale 1.0, not the trained alpha/rank = 2/4" in out


def test_inspect_refuses_what_is_not_a_lora(tmp_path, capsys):
    path = tmp_path / "model.safetensors"
    save_file({"model.diffusion_model.out.2.weight": torch.zeros(2, 2)}, str(path))
    assert main(["inspect", str(path)]) == 2
    assert "base-model checkpoint" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.safetensors")]) == 2
    assert "does not exist" in capsys.readouterr().err
