"""Single-file export and offline loading: our files round-trip, and the key mapping is diffusers' inverse."""
from __future__ import annotations

import pytest
import torch

from studio.models import export_single_file, load_components
from studio.models import ldm_keys
from studio.models.single_file import CONFIG_METADATA_KEY, SD15_CONFIG_DIR, read_header


def _outputs(components):
    torch.manual_seed(1)
    ids = components.tokenizer(["a red circle on a gray background"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    latents = torch.randn(1, 4, 16, 16)
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        hidden = components.text_encoder(ids)[0]
        return {
            "ids": ids,
            "text": hidden,
            "unet": components.denoiser(latents, 500, hidden).sample,
            "decode": components.vae.decode(latents).sample,
            "encode": components.vae.encode(image).latent_dist.mean,
        }


def _assert_same(a, b):
    assert torch.equal(a["ids"], b["ids"])
    for name in ("text", "unet", "decode", "encode"):
        assert (a[name] - b[name]).abs().max().item() < 1e-5, name


def test_export_then_load_offline_matches_folder(tiny_sd_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = export_single_file(tiny_sd_dir, tmp_path / "tiny.safetensors")
    keys, metadata = read_header(out)
    assert CONFIG_METADATA_KEY in metadata
    assert all(k.startswith(("model.diffusion_model.", "first_stage_model.", "cond_stage_model.transformer.text_model.")) for k in keys)

    from_file = load_components(str(out))
    from_folder = load_components(str(tiny_sd_dir))
    assert from_file.kind == "single_file" and from_folder.kind == "folder"
    assert from_file.noise_scheduler.config.prediction_type == from_folder.noise_scheduler.config.prediction_type
    assert from_file.vae.config.scaling_factor == from_folder.vae.config.scaling_factor
    _assert_same(_outputs(from_file), _outputs(from_folder))


def test_base_model_config_and_opt_in_ckpt(tiny_sd_dir, tmp_path):
    from safetensors.torch import load_file

    from studio.models import ModelLoadError

    exported = export_single_file(tiny_sd_dir, tmp_path / "tiny.safetensors")
    state = load_file(str(exported))
    ckpt = tmp_path / "tiny.ckpt"
    torch.save({"state_dict": state}, ckpt)
    with pytest.raises(ModelLoadError, match="allow_pickle=True"):
        load_components(str(ckpt))
    loaded = load_components(str(ckpt), base_model_config=str(tiny_sd_dir), allow_pickle=True)
    _assert_same(_outputs(loaded), _outputs(load_components(str(tiny_sd_dir))))


def test_vae_attention_exported_as_1x1_convs(tiny_sd_dir, tmp_path):
    """SD 1.5's VAE has a mid-block attention; LDM stores its projections as 1x1 convolutions."""
    from diffusers import AutoencoderKL, StableDiffusionPipeline

    from studio.toyworld import architecture

    pipe = StableDiffusionPipeline.from_pretrained(str(tiny_sd_dir), safety_checker=None, requires_safety_checker=False)
    torch.manual_seed(3)
    pipe.vae = AutoencoderKL(**{**architecture.vae_config(), "mid_block_add_attention": True})
    out = export_single_file(pipe, tmp_path / "attn.safetensors")
    keys, _ = read_header(out)
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in keys
    loaded = load_components(str(out))
    latents = torch.randn(1, 4, 16, 16)
    with torch.no_grad():
        diff = (loaded.vae.decode(latents).sample - pipe.vae.decode(latents).sample).abs().max().item()
    assert diff < 1e-5


def _meta_models():
    """SD 1.5-sized UNet, VAE and text encoder on the meta device, from the shipped configs (no memory used)."""
    import json

    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(json.loads((SD15_CONFIG_DIR / "unet" / "config.json").read_text()))
        vae = AutoencoderKL.from_config(json.loads((SD15_CONFIG_DIR / "vae" / "config.json").read_text()))
        text_encoder = CLIPTextModel(CLIPTextConfig.from_pretrained(str(SD15_CONFIG_DIR / "text_encoder")))
    return unet, vae, text_encoder


def test_shipped_sd15_configs_have_sd15_sizes():
    unet, vae, text_encoder = _meta_models()
    sizes = [sum(p.numel() for p in model.parameters()) for model in (unet, vae, text_encoder)]
    assert sizes == [859_520_964, 83_653_863, 123_060_480]


def test_ldm_mapping_is_the_inverse_of_diffusers_converters():
    """Our diffusers -> LDM names, fed to diffusers' own LDM -> diffusers converters, give back every key."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    unet, vae, text_encoder = _meta_models()
    for model, to_ldm, back in (
        (unet, lambda s: ldm_keys.unet_to_ldm(s, dict(unet.config)), lambda c: convert_ldm_unet_checkpoint(c, dict(unet.config))),
        (vae, lambda s: ldm_keys.vae_to_ldm(s, dict(vae.config)), lambda c: convert_ldm_vae_checkpoint(c, dict(vae.config))),
        (text_encoder, ldm_keys.text_encoder_to_ldm, convert_ldm_clip_checkpoint),
    ):
        state = model.state_dict()
        ldm = to_ldm(state)
        restored = {k.removeprefix("text_model."): v for k, v in back(ldm).items()}
        assert set(restored) == set(state) - {"embeddings.position_ids"}
        assert all(restored[k].shape == state[k].shape for k in restored)
    ldm_unet = ldm_keys.unet_to_ldm(unet.state_dict(), dict(unet.config))
    # Well-known SD 1.5 checkpoint names: upsamplers after attention sit at slot 2, without it at slot 1.
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in ldm_unet
    assert "model.diffusion_model.output_blocks.5.2.conv.weight" in ldm_unet
    assert "model.diffusion_model.input_blocks.3.0.op.weight" in ldm_unet
    assert ldm_keys.vae_to_ldm(vae.state_dict(), dict(vae.config))["first_stage_model.encoder.mid.attn_1.q.weight"].shape == (512, 512, 1, 1)
