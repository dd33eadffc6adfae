"""Single-file SDXL checkpoints (the SGM layout of SDXL base, Pony, Illustrious, NoobAI): recognised, exported in a
form diffusers reads back weight for weight, v-prediction markers detected, other kinds refused in one sentence."""
from __future__ import annotations

import json

import pytest
import torch

from studio.models import ldm_keys, ldm_keys_sdxl
from studio.models.single_file import (
    CONFIG_METADATA_KEY,
    SDXL_CONFIG_DIR,
    CheckpointKindError,
    check_sd1_keys,
    checkpoint_family,
    export_single_file,
    has_zero_terminal_snr,
    is_v_prediction,
    read_header,
    write_config_folder,
)

from .sdxl_fixtures import tiny_sdxl_pipeline

SGM_PREFIXES = ("model.diffusion_model.", "first_stage_model.", "conditioner.embedders.0.transformer.text_model.",
                "conditioner.embedders.1.model.")
COMPONENTS = ("unet", "vae", "text_encoder", "text_encoder_2")


@pytest.fixture(scope="module")
def tiny_sdxl():
    return tiny_sdxl_pipeline()


def _assert_same_weights(source, loaded):
    for name in COMPONENTS:
        want, got = getattr(source, name).state_dict(), getattr(loaded, name).state_dict()
        assert set(got) == set(want), name
        differing = [key for key in want if not torch.equal(want[key], got[key])]
        assert not differing, (name, differing[:5])


def test_export_reads_back_weight_for_weight_with_diffusers(tiny_sdxl, tmp_path):
    from diffusers import StableDiffusionXLPipeline

    out = export_single_file(tiny_sdxl, tmp_path / "xl.safetensors")
    keys, metadata = read_header(out)
    assert all(key.startswith(SGM_PREFIXES) for key in keys)
    assert "conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight" in keys
    assert checkpoint_family(keys, out.name) == "sdxl"
    assert not is_v_prediction(keys, metadata) and not has_zero_terminal_snr(keys, metadata)

    config = write_config_folder(json.loads(metadata[CONFIG_METADATA_KEY]), tmp_path / "config")
    loaded = StableDiffusionXLPipeline.from_single_file(str(out), config=str(config), local_files_only=True)
    _assert_same_weights(tiny_sdxl, loaded)
    assert loaded.tokenizer_2.pad_token == "!" and loaded.tokenizer.pad_token == "<|endoftext|>"
    assert loaded.vae.config.scaling_factor == 0.13025
    assert loaded.scheduler.config.prediction_type == "epsilon"


def test_export_from_a_folder_equals_export_from_the_object(tiny_sdxl, tmp_path):
    from safetensors.torch import load_file

    tiny_sdxl.save_pretrained(str(tmp_path / "folder"))
    from_folder = load_file(str(export_single_file(tmp_path / "folder", tmp_path / "a.safetensors")))
    from_object = load_file(str(export_single_file(tiny_sdxl, tmp_path / "b.safetensors")))
    assert set(from_folder) == set(from_object)
    assert all(torch.equal(from_folder[key], from_object[key]) for key in from_object)


def test_v_prediction_markers_are_written_and_detected(tiny_sdxl, tmp_path):
    from studio.models import load_pipeline

    out = export_single_file(tiny_sdxl, tmp_path / "vpred.safetensors", v_pred=True, zero_terminal_snr=True)
    keys, metadata = read_header(out)
    assert {"v_pred", "ztsnr"} <= set(keys) and metadata["modelspec.prediction_type"] == "v"
    assert is_v_prediction(keys, metadata) and has_zero_terminal_snr(keys, metadata)
    assert checkpoint_family(keys, out.name) == "sdxl"
    # The markers alone are enough: NoobAI-style files carry the tensors and no metadata.
    assert is_v_prediction(keys, {}) and has_zero_terminal_snr(keys, {})
    assert is_v_prediction(["model.diffusion_model.out.2.weight"], {"modelspec.prediction_type": "v"})

    pipe = load_pipeline(str(out))
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert pipe.scheduler.config.rescale_betas_zero_snr is True
    _assert_same_weights(tiny_sdxl, pipe)
    with pytest.raises(ValueError, match="pass v_pred=True"):
        export_single_file(tiny_sdxl, tmp_path / "z.safetensors", zero_terminal_snr=True)


def test_plain_file_loads_as_epsilon_through_load_pipeline(tiny_sdxl, tmp_path):
    from studio.models import load_pipeline

    pipe = load_pipeline(str(export_single_file(tiny_sdxl, tmp_path / "plain.safetensors")))
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert pipe.scheduler.config.prediction_type == "epsilon"


def test_file_without_configs_asks_for_base_model_config(tiny_sdxl, tmp_path):
    """A non-standard SDXL shape without embedded configs does not fit the shipped SDXL configs: one sentence."""
    from safetensors.torch import load_file, save_file

    from studio.models import ModelLoadError, load_components

    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(export_single_file(tiny_sdxl, tmp_path / "xl.safetensors"))), str(bare))
    with pytest.raises(ModelLoadError, match="does not match the SDXL configs .*pass base_model_config="):
        load_components(str(bare))
    tiny_sdxl.save_pretrained(str(tmp_path / "folder"))
    assert load_components(str(bare), base_model_config=str(tmp_path / "folder")).kind == "single_file"


XL_PARTS = ["model.diffusion_model.label_emb.0.0.weight", "first_stage_model.decoder.conv_in.weight",
            "conditioner.embedders.0.transformer.text_model.final_layer_norm.weight",
            "conditioner.embedders.1.model.ln_final.weight"]


@pytest.mark.parametrize("keys, sentence", [
    (["model.diffusion_model.double_blocks.0.img_attn.qkv.weight", "model.diffusion_model.single_blocks.0.linear1.bias"],
     "flux.safetensors is not a complete FLUX.1 transformer (no input layer, final layer weights found): pass a full "
     "FLUX.1 .safetensors transformer or a diffusers folder."),
    (["double_blocks.0.img_attn.qkv.weight", "vae.decoder.conv_in.weight"], "is not a complete FLUX.1 transformer"),
    (["model.diffusion_model.joint_blocks.0.x_block.attn.qkv.weight"], "is a Stable Diffusion 3 checkpoint"),
    (["cond_stage_model.model.ln_final.weight", "model.diffusion_model.out.2.weight", "first_stage_model.conv.weight"],
     "is an SD 2.x checkpoint (OpenCLIP text encoder), which is not supported yet: pass an SD 1.x, SDXL or FLUX.1 "
     "checkpoint"),
    (["lora_unet_input_blocks_4_1_proj_in.lora_down.weight", "lora_te2_text_model_encoder_layers_0_mlp_fc1.alpha"],
     "is a LoRA file, not a base model: pass it as a LoRA and pass an SD 1.x, SDXL or FLUX.1 checkpoint"),
    (XL_PARTS[:2], "is not a complete SDXL checkpoint (no text encoder 1 (CLIP ViT-L), text encoder 2 (OpenCLIP "
                   "ViT-bigG) weights found): pass a full SDXL .safetensors checkpoint or a diffusers folder."),
    (XL_PARTS[1:], "is not a complete SDXL checkpoint (no UNet weights found)"),
    (["conditioner.embedders.0.model.ln_final.weight", "model.diffusion_model.label_emb.0.0.weight"],
     "is an SDXL refiner checkpoint"),
    (["down_blocks.0.resnets.0.conv1.weight", "add_embedding.linear_1.weight"],
     "pass the folder that contains model_index.json"),
])
def test_other_kinds_are_refused_in_one_sentence(keys, sentence):
    with pytest.raises(CheckpointKindError) as error:
        checkpoint_family(keys, "flux.safetensors")
    message = str(error.value)
    assert sentence in message and message.startswith("flux.safetensors ") and "\n" not in message


def test_sd1_checks_keep_their_sentences():
    sd1 = ["model.diffusion_model.out.2.weight", "first_stage_model.quant_conv.weight",
           "cond_stage_model.transformer.text_model.final_layer_norm.weight"]
    assert checkpoint_family(sd1, "v1.safetensors") == "sd1"
    check_sd1_keys(sd1, "v1.safetensors")
    with pytest.raises(CheckpointKindError, match="is an SDXL checkpoint, not an SD 1.x one: pass an SD 1.x checkpoint"):
        check_sd1_keys(XL_PARTS, "xl.safetensors")
    with pytest.raises(CheckpointKindError, match="which is not supported yet: pass an SD 1.x checkpoint or diffusers"):
        check_sd1_keys(["cond_stage_model.model.ln_final.weight"], "v2.safetensors")
    with pytest.raises(CheckpointKindError, match=r"not a complete SD 1.x checkpoint \(no VAE, text encoder weights"):
        checkpoint_family(sd1[:1], "unet.safetensors")


def _meta_sdxl():
    """SDXL base-sized UNet, VAE and both text encoders on the meta device, from the shipped configs."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    def config(part):
        return json.loads((SDXL_CONFIG_DIR / part / "config.json").read_text())

    with init_empty_weights():
        return {
            "unet": UNet2DConditionModel.from_config(config("unet")),
            "vae": AutoencoderKL.from_config(config("vae")),
            "text_encoder": CLIPTextModel(CLIPTextConfig.from_pretrained(str(SDXL_CONFIG_DIR / "text_encoder"))),
            "text_encoder_2": CLIPTextModelWithProjection(
                CLIPTextConfig.from_pretrained(str(SDXL_CONFIG_DIR / "text_encoder_2"))),
        }


@pytest.fixture(scope="module")
def meta_sdxl():
    return _meta_sdxl()


def test_shipped_sdxl_configs_have_sdxl_sizes(meta_sdxl):
    from diffusers import DiffusionPipeline, EulerDiscreteScheduler
    from transformers import CLIPTokenizer

    sizes = {name: sum(p.numel() for p in model.parameters()) for name, model in meta_sdxl.items()}
    assert sizes == {"unet": 2_567_463_684, "vae": 83_653_863, "text_encoder": 123_060_480,
                     "text_encoder_2": 694_659_840}
    assert meta_sdxl["vae"].config.scaling_factor == 0.13025 and meta_sdxl["vae"].config.force_upcast
    scheduler = EulerDiscreteScheduler.from_pretrained(str(SDXL_CONFIG_DIR / "scheduler"))
    settings = scheduler.config
    assert (settings.timestep_spacing, settings.steps_offset, settings.beta_end) == ("leading", 1, 0.012)
    assert DiffusionPipeline.load_config(str(SDXL_CONFIG_DIR))["_class_name"] == "StableDiffusionXLPipeline"
    first = CLIPTokenizer.from_pretrained(str(SDXL_CONFIG_DIR / "tokenizer"))
    second = CLIPTokenizer.from_pretrained(str(SDXL_CONFIG_DIR / "tokenizer_2"))
    padded = [tokenizer("a cat", padding="max_length", max_length=6).input_ids for tokenizer in (first, second)]
    assert padded == [[49406, 320, 2368, 49407, 49407, 49407], [49406, 320, 2368, 49407, 0, 0]]


def test_sdxl_key_tables_are_the_inverse_of_diffusers_converters(meta_sdxl):
    """Our names, fed to diffusers' own SGM -> diffusers converters, give back every key with its shape."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        convert_open_clip_checkpoint,
        infer_diffusers_model_type,
    )

    unet, vae, clip_l, open_clip = (meta_sdxl[name] for name in COMPONENTS)
    sgm = {
        "unet": ldm_keys.unet_to_ldm(unet.state_dict(), dict(unet.config)),
        "vae": ldm_keys.vae_to_ldm(vae.state_dict(), dict(vae.config)),
        "text_encoder": ldm_keys.text_encoder_to_ldm(clip_l.state_dict(), ldm_keys_sdxl.CLIP_L_PREFIX),
        "text_encoder_2": ldm_keys_sdxl.open_clip_to_sgm(open_clip.state_dict()),
    }
    back = {
        "unet": convert_ldm_unet_checkpoint(sgm["unet"], dict(unet.config)),
        "vae": convert_ldm_vae_checkpoint(sgm["vae"], dict(vae.config)),
        "text_encoder": convert_ldm_clip_checkpoint(sgm["text_encoder"]),
        "text_encoder_2": convert_open_clip_checkpoint(
            open_clip, sgm["text_encoder_2"], prefix=ldm_keys_sdxl.OPEN_CLIP_PREFIX),
    }
    for name in COMPONENTS:
        state = meta_sdxl[name].state_dict()
        restored = {key.removeprefix("text_model.") if name == "text_encoder" else key: value
                    for key, value in back[name].items()}
        expected = {key.removeprefix("text_model.") if name == "text_encoder" else key for key in state}
        assert set(restored) == expected - {"embeddings.position_ids", "text_model.embeddings.position_ids"}, name
        assert all(restored[k].shape == state[k if k in state else "text_model." + k].shape for k in restored), name

    everything = {key: value for part in sgm.values() for key, value in part.items()}
    assert infer_diffusers_model_type(everything) == "xl_base"
    # Names and shapes as they are in SDXL base 1.0 and its fine-tunes.
    shapes = {
        "model.diffusion_model.label_emb.0.0.weight": (1280, 2816),
        "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": (1280, 2048),
        "model.diffusion_model.output_blocks.2.2.conv.weight": (1280, 1280, 3, 3),
        "model.diffusion_model.output_blocks.5.2.conv.weight": (640, 640, 3, 3),
        "first_stage_model.decoder.mid.attn_1.q.weight": (512, 512, 1, 1),
        "conditioner.embedders.0.transformer.text_model.embeddings.token_embedding.weight": (49408, 768),
        "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": (3840, 1280),
        "conditioner.embedders.1.model.positional_embedding": (77, 1280),
        "conditioner.embedders.1.model.text_projection": (1280, 1280),
        "conditioner.embedders.1.model.logit_scale": (),
    }
    assert {key: tuple(everything[key].shape) for key in shapes} == shapes
