"""Base-model sources and the one-sentence errors users get for everything else."""
from __future__ import annotations

import json

import pytest
import torch

from studio.models import ModelLoadError, default_model_path, load_components, load_pipeline


def test_shipped_tokenizer_is_clips():
    from transformers import CLIPTokenizer

    from studio.models.single_file import SD15_CONFIG_DIR

    tokenizer = CLIPTokenizer.from_pretrained(str(SD15_CONFIG_DIR / "tokenizer"))
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer.model_max_length == 77


def test_folder_gives_training_components(tiny_sd_dir):
    from diffusers import DDPMScheduler

    components = load_components(str(tiny_sd_dir))
    assert components.kind == "folder" and components.source == str(tiny_sd_dir)
    scheduler = components.noise_scheduler
    assert isinstance(scheduler, DDPMScheduler)
    assert scheduler.config.prediction_type == "v_prediction"
    assert scheduler.config.rescale_betas_zero_snr is True
    assert scheduler.config.timestep_spacing == "trailing"


def test_pipeline_has_no_safety_checker_and_runs(tiny_sd_dir):
    pipe = load_pipeline(str(tiny_sd_dir), dtype=torch.float32)
    assert pipe.safety_checker is None
    image = pipe("a red circle", num_inference_steps=2, height=32, width=32, output_type="np").images[0]
    assert image.shape == (32, 32, 3)


def test_default_model_path_is_in_assets():
    assert default_model_path().parts[-2:] == ("assets", "toy-world")


def test_missing_default_model_says_how_to_build_it(monkeypatch, tmp_path):
    import studio.models.loading as loading

    monkeypatch.setattr(loading, "default_model_path", lambda: tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="studio.toyworld.pretrain"):
        load_components("")


def test_missing_path(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        load_components(str(tmp_path / "missing.safetensors"))


def test_folder_without_model_index(tmp_path):
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_components(str(tmp_path))


def test_sdxl_folder_without_its_parts_is_refused(tmp_path):
    index = {"_class_name": "StableDiffusionXLPipeline", "unet": [], "vae": [], "text_encoder": [], "text_encoder_2": [], "tokenizer": []}
    (tmp_path / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelLoadError, match="StableDiffusionXLPipeline folder without unet, vae, text_encoder, "
                                             "text_encoder_2, tokenizer, tokenizer_2: pass an SD 1.x, SDXL or FLUX.1 model"):
        load_components(str(tmp_path))


def test_folder_saved_with_adapters_is_refused(tiny_sd_dir, tmp_path):
    from peft import LoraConfig

    pipe = load_pipeline(str(tiny_sd_dir))
    pipe.unet.add_adapter(LoraConfig(r=2, lora_alpha=2, target_modules=["to_q"]))
    pipe.save_pretrained(str(tmp_path / "adapted"))
    with pytest.raises(ModelLoadError, match="LoRA adapters inside"):
        load_components(str(tmp_path / "adapted"))


def test_wrong_suffix(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(ModelLoadError, match="not a model file"):
        load_components(str(path))


def _save(path, tensors):
    from safetensors.torch import save_file

    save_file({k: torch.zeros(2, 2) for k in tensors}, str(path))
    return str(path)


def test_lora_file_as_base_model(tmp_path):
    path = _save(tmp_path / "lora.safetensors", ["lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"])
    with pytest.raises(ModelLoadError, match="LoRA file"):
        load_components(path)
    path = _save(tmp_path / "lora2.safetensors", ["unet.down_blocks.0.attentions.0.proj_in.lora_A.weight"])
    with pytest.raises(ModelLoadError, match="LoRA file"):
        load_components(path)


def test_incomplete_sdxl_and_sd2_checkpoints_are_refused(tmp_path):
    sdxl = _save(tmp_path / "xl.safetensors", ["conditioner.embedders.1.model.ln_final.weight", "model.diffusion_model.label_emb.0.0.weight"])
    with pytest.raises(ModelLoadError, match="not a complete SDXL checkpoint"):
        load_components(sdxl)
    sd2 = _save(tmp_path / "v2.safetensors", ["cond_stage_model.model.ln_final.weight", "model.diffusion_model.out.2.weight"])
    with pytest.raises(ModelLoadError, match="SD 2"):
        load_components(sd2)


def test_component_file_and_partial_checkpoint(tmp_path):
    component = _save(tmp_path / "diffusion_pytorch_model.safetensors", ["down_blocks.0.resnets.0.conv1.weight"])
    with pytest.raises(ModelLoadError, match="model_index.json"):
        load_components(component)
    unet_only = _save(tmp_path / "unet.safetensors", ["model.diffusion_model.out.2.weight"])
    with pytest.raises(ModelLoadError, match="not a complete SD 1.x checkpoint"):
        load_components(unet_only)


def test_non_sd15_shapes_without_configs_ask_for_base_model_config(tiny_sd_dir, tmp_path):
    from safetensors.torch import load_file, save_file

    from studio.models import export_single_file

    exported = export_single_file(tiny_sd_dir, tmp_path / "tiny.safetensors")
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(str(exported)), str(bare))  # same weights, no embedded configs
    with pytest.raises(ModelLoadError, match="base_model_config"):
        load_components(str(bare))
    assert load_components(str(bare), base_model_config=str(tiny_sd_dir)).kind == "single_file"


def test_hub_id_offline_is_one_clear_sentence(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="could not download someone/some-model: the hub is not reachable"):
        load_components("someone/some-model")


def test_hub_id_without_network_reads_only_the_cache_instead_of_retrying(monkeypatch):
    """huggingface_hub alone retries every file for minutes when the hub does not answer."""
    from diffusers import DiffusionPipeline

    from studio.util import hub

    asked = []

    def load_config(repo_id, local_files_only=False, **kwargs):
        asked.append(local_files_only)
        raise OSError(f"{repo_id} is not in the cache")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(hub, "hub_offline", lambda: False)
    monkeypatch.setattr(hub, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.setattr(DiffusionPipeline, "load_config", load_config)
    with pytest.raises(ModelLoadError, match="not in the local cache"):
        load_components("someone/another-model")
    assert asked == [True]
