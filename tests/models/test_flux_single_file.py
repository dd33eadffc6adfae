"""Single-file FLUX.1 transformers as the community ships them (BFL layout, ComfyUI's prefix and all-in-one files,
fp8 copies): recognised from their keys, loaded with the CLIP, T5, VAE and tokenizers of ``base_model_config``,
and the same transformer as the diffusers model they were written from."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from studio.models import ModelLoadError, describe_model, load_components
from studio.models.checkpoint_kind import CheckpointKindError, checkpoint_family

from .flux_fixtures import diffusers_to_bfl, save_bfl_transformer, tiny_flux_pipeline, transformer_output


@pytest.fixture(scope="module")
def flux_dev(tmp_path_factory):
    """(pipeline, saved folder) of a tiny guidance-distilled FLUX.1 (dev-shaped)."""
    root = tmp_path_factory.mktemp("tiny-flux-dev")
    pipe = tiny_flux_pipeline(root / "work", guidance_embeds=True)
    pipe.save_pretrained(str(root / "model"))
    return pipe, root / "model"


def test_bfl_file_loads_with_the_base_folders_parts_and_equals_the_diffusers_model(flux_dev, tmp_path):
    pipe, folder = flux_dev
    for prefix in ("", "model.diffusion_model."):  # as BFL ships it, and as ComfyUI saves it
        path = save_bfl_transformer(pipe.transformer, tmp_path / f"flux1-dev{prefix[:5]}.safetensors", prefix)
        components = load_components(str(path), base_model_config=str(folder))
        assert (components.kind, components.family.name, components.source) == ("single_file", "flux", str(path))
        assert components.denoiser.config.guidance_embeds is True
        assert torch.equal(transformer_output(components.denoiser), transformer_output(pipe.transformer))
        assert components.noise_scheduler.config.use_dynamic_shifting is True  # the base's own (dev-like) schedule
        assert type(components.tokenizer_2).__name__ == type(pipe.tokenizer_2).__name__
        assert torch.equal(components.vae.decoder.conv_in.weight, pipe.vae.decoder.conv_in.weight)
    assert describe_model(str(path), str(folder)).line() == "Model family: **FLUX.1** · single file"
    assert describe_model(str(path), "black-forest-labs/FLUX.1-schnell").family.name == "flux"  # nothing downloaded


def test_a_schnell_file_on_a_dev_folder_gets_schnells_schedule_and_no_guidance_embedding(flux_dev, tmp_path):
    _, folder = flux_dev
    schnell = tiny_flux_pipeline(tmp_path / "work", guidance_embeds=False, double_layers=1, single_layers=3)
    path = save_bfl_transformer(schnell.transformer, tmp_path / "flux1-schnell.safetensors", "model.diffusion_model.",
                                dtype=torch.bfloat16)
    components = load_components(str(path), base_model_config=str(folder), dtype=torch.bfloat16)
    config = components.denoiser.config
    assert (config.guidance_embeds, config.num_layers, config.num_single_layers) == (False, 1, 3)
    assert components.denoiser.dtype == torch.bfloat16
    assert (components.noise_scheduler.config.shift, components.noise_scheduler.config.use_dynamic_shifting) == \
        (1.0, False)  # FLUX.1-schnell's shipped scheduler, not the dev folder's
    expected = transformer_output(schnell.transformer.to(torch.bfloat16).float())
    assert (transformer_output(components.denoiser.float()) - expected).abs().max().item() < 1e-5


def test_fp8_and_diffusers_layout_files_load_too(flux_dev, tmp_path):
    pipe, folder = flux_dev
    fp8 = save_bfl_transformer(pipe.transformer, tmp_path / "flux1-dev-fp8.safetensors", dtype=torch.float8_e4m3fn)
    rounded = tiny_flux_pipeline(tmp_path / "work", guidance_embeds=True).transformer
    rounded.load_state_dict({k: v.to(torch.float8_e4m3fn).float() for k, v in pipe.transformer.state_dict().items()})
    loaded = load_components(str(fp8), base_model_config=str(folder)).denoiser
    assert loaded.dtype == torch.float32
    assert torch.equal(transformer_output(loaded), transformer_output(rounded))
    plain = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(pipe.transformer.state_dict(), str(plain))
    loaded = load_components(str(plain), base_model_config=str(folder)).denoiser
    assert torch.equal(transformer_output(loaded), transformer_output(pipe.transformer))


def _configs_only(folder, target):
    """A copy of a diffusers folder without any weights: configs and tokenizer files."""
    import shutil

    shutil.copytree(folder, target, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    return target


def test_all_in_one_file_loads_every_part_with_only_configs_and_tokenizers_beside_it(flux_dev, tmp_path):
    """ComfyUI's layout: CLIP and T5 in transformers' names (CLIP as transformers 4 named it), the VAE in the
    original autoencoder's names; base_model_config holds no weights at all."""
    from studio.models import ldm_keys

    pipe, folder = flux_dev
    clip = {f"text_encoders.clip_l.transformer.text_model.{k}": v for k, v in pipe.text_encoder.state_dict().items()}
    t5 = {f"text_encoders.t5xxl.transformer.{k}": v for k, v in pipe.text_encoder_2.state_dict().items()
          if k != "encoder.embed_tokens.weight"}  # tied to shared.weight, which ComfyUI saves
    vae = {k.replace("first_stage_model.", "vae.", 1): v
           for k, v in ldm_keys.vae_to_ldm(pipe.vae.state_dict(), dict(pipe.vae.config)).items()}
    path = save_bfl_transformer(pipe.transformer, tmp_path / "flux1-dev-comfy.safetensors", "model.diffusion_model.",
                                {**clip, **t5, **vae})
    with pytest.raises(ModelLoadError) as error:
        load_components(str(path))
    assert str(error.value).startswith("flux1-dev-comfy.safetensors holds a FLUX.1-dev transformer with CLIP, T5 and "
                                       "a VAE (a ComfyUI checkpoint): set base_model_config to a FLUX.1 diffusers "
                                       "folder or hub id for their configs and the tokenizers")
    bare = _configs_only(folder, tmp_path / "configs-only")
    with pytest.raises(ModelLoadError, match="could not load the CLIP, T5 and VAE of base_model_config"):
        load_components(str(save_bfl_transformer(pipe.transformer, tmp_path / "alone.safetensors")),
                        base_model_config=str(bare))
    loaded = load_components(str(path), base_model_config=str(bare))
    assert torch.equal(transformer_output(loaded.denoiser), transformer_output(pipe.transformer))
    ids = pipe.tokenizer_2(["a red circle"], return_tensors="pt").input_ids
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for ours, theirs in ((loaded.text_encoder_2(ids)[0], pipe.text_encoder_2(ids)[0]),
                             (loaded.text_encoder(ids % 100).pooler_output, pipe.text_encoder(ids % 100).pooler_output),
                             (loaded.vae.decode(latents).sample, pipe.vae.decode(latents).sample)):
            assert torch.equal(ours, theirs)
    assert loaded.vae.config.shift_factor == pipe.vae.config.shift_factor


def test_without_a_usable_base_model_config_one_sentence_says_what_to_get(flux_dev, tiny_sd_dir, tmp_path,
                                                                          monkeypatch):
    pipe, _ = flux_dev
    path = save_bfl_transformer(pipe.transformer, tmp_path / "flux1-dev.safetensors")
    sentence = ("flux1-dev.safetensors holds a FLUX.1-dev transformer only: set base_model_config to a FLUX.1 "
                "diffusers folder or hub id for the tokenizers, CLIP and T5 text encoders and VAE, e.g. "
                "black-forest-labs/FLUX.1-schnell (not gated; FLUX.1-dev has the same ones), downloaded without "
                "its transformer/ folder and flux1-schnell.safetensors.")
    for attempt in (lambda: load_components(str(path)), lambda: describe_model(str(path))):
        with pytest.raises(ModelLoadError) as error:
            attempt()
        assert str(error.value) == sentence
    with pytest.raises(ModelLoadError, match="base_model_config .* is an SD 1.x folder, but flux1-dev.safetensors is "
                                             "a FLUX.1 transformer: set base_model_config to a FLUX.1 diffusers"):
        load_components(str(path), base_model_config=str(tiny_sd_dir))
    with pytest.raises(ModelLoadError, match="is neither a folder nor a hub id"):
        load_components(str(path), base_model_config=str(tmp_path / "missing" / "FLUX.1-dev"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not download someone/FLUX.1-dev: the hub is not reachable"):
        load_components(str(path), base_model_config="someone/FLUX.1-dev")


def test_a_fill_shaped_transformer_is_refused_in_one_sentence(flux_dev, tmp_path):
    from diffusers import FluxTransformer2DModel

    from studio.toyworld import architecture

    _, folder = flux_dev
    fill = FluxTransformer2DModel(**{**architecture.flux_transformer_config(True), "in_channels": 48,
                                     "out_channels": 16})
    path = save_bfl_transformer(fill, tmp_path / "flux1-fill.safetensors")
    with pytest.raises(ModelLoadError, match="flux1-fill.safetensors takes 48 input channels where a text-to-image "
                                             "FLUX.1 transformer takes 16"):
        load_components(str(path), base_model_config=str(folder))


def test_our_key_conversion_matches_diffusers_at_flux1_width():
    """diffusers' converter (FLUX.1's 3072 channels built in) and ours give the same tensors from a BFL state made by
    the test helper: every FLUX.1-dev key and row count, with two columns per weight to keep it small."""
    import json

    from accelerate import init_empty_weights
    from diffusers import FluxTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    from studio.models import flux_keys
    from studio.models.families import FLUX

    config = json.loads((FLUX.config_dir / "dev" / "transformer" / "config.json").read_text())
    with init_empty_weights():
        model = FluxTransformer2DModel.from_config({**config, "num_layers": 1, "num_single_layers": 1})
    generator = torch.Generator().manual_seed(0)
    state = {key: torch.randn(value.shape[0], *([2] if value.dim() > 1 else []), generator=generator)
             for key, value in model.state_dict().items()}
    bfl = diffusers_to_bfl(state, "model.diffusion_model.")
    theirs = convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))
    ours = flux_keys.bfl_to_diffusers({k.removeprefix("model.diffusion_model."): v for k, v in bfl.items()})
    assert set(theirs) == set(ours) == set(state)
    assert all(torch.equal(theirs[key], state[key]) and torch.equal(ours[key], state[key]) for key in state)
    derived = flux_keys.transformer_config(
        {k: torch.empty(model.state_dict()[k].shape, device="meta") for k in ours}, config)
    assert {k: derived[k] for k in config if not k.startswith("_")} == \
        {**{k: v for k, v in config.items() if not k.startswith("_")}, "num_layers": 1, "num_single_layers": 1}


FLUX_BFL = ["double_blocks.0.img_attn.qkv.weight", "single_blocks.0.linear1.weight", "img_in.weight",
            "final_layer.linear.weight"]


@pytest.mark.parametrize("keys, family_or_sentence", [
    (FLUX_BFL, "flux"),
    (["model.diffusion_model." + k for k in FLUX_BFL] + ["vae.decoder.conv_in.weight"], "flux"),
    (["x_embedder.weight", "transformer_blocks.0.attn.to_q.weight", "single_transformer_blocks.0.proj_mlp.weight",
      "proj_out.weight"], "flux"),
    (FLUX_BFL[:2], "flux.safetensors is not a complete FLUX.1 transformer (no input layer, final layer weights "
                   "found): pass a full FLUX.1 .safetensors transformer or a diffusers folder."),
    ([k + ".absmax" for k in FLUX_BFL], "is a FLUX.1 transformer quantized with bitsandbytes (NF4), which cannot be "
                                        "trained on: pass the bf16 or fp8 FLUX.1 file and set base_weights: nf4"),
    (FLUX_BFL + ["scaled_fp8", "img_in.scale_weight"], "is a scaled-fp8 FLUX.1 file"),
    (FLUX_BFL + ["distilled_guidance_layer.in_proj.weight"], "is a Chroma checkpoint"),
    (["transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight"],
     "is a LoRA file, not a base model: pass it as a LoRA and pass an SD 1.x, SDXL or FLUX.1"),
    (["lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight"], "is a LoRA file"),
    (["diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight"], "is a LoRA file"),
    (["encoder.block.0.layer.0.SelfAttention.k.weight", "shared.weight"], "holds a text encoder (T5) or VAE alone"),
    (["decoder.conv_in.weight", "encoder.conv_in.weight"], "holds a text encoder (T5) or VAE alone"),
])
def test_what_a_flux_shaped_file_is(keys, family_or_sentence):
    if family_or_sentence == "flux":
        assert checkpoint_family(keys, "flux.safetensors") == "flux"
        return
    with pytest.raises(CheckpointKindError) as error:
        checkpoint_family(keys, "flux.safetensors")
    assert family_or_sentence in str(error.value) and "\n" not in str(error.value)


def test_gguf_files_are_refused_before_reading(tmp_path):
    path = tmp_path / "flux1-dev-Q4_K_S.gguf"
    path.write_bytes(b"GGUF")
    with pytest.raises(ModelLoadError, match="is a GGUF file .* pass the .safetensors model"):
        load_components(str(path))
