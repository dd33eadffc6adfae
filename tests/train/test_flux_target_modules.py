"""FLUX.1 layer names and ``all-linear`` in target_modules, and a run on a single-file FLUX.1 transformer (BFL layout)
whose diffusers LoRA file ``FluxPipeline.load_lora_weights`` reads back onto every Linear layer."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from studio.config import ConfigError, TrainConfig, load_config
from studio.config.modules import FLUX_DEFAULT_MODULES
from studio.train import run_training
from studio.train.adapters import add_lora_adapters, denoiser_targets

FLUX_FIXTURES = Path(__file__).parents[1] / "models"


def _fixtures():
    import importlib.util

    spec = importlib.util.spec_from_file_location("flux_fixtures", FLUX_FIXTURES / "flux_fixtures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _linear_names(model: torch.nn.Module) -> set[str]:
    return {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}


def _adapted_names(model: torch.nn.Module) -> set[str]:
    from peft.tuners.lora import LoraLayer

    return {name for name, module in model.named_modules() if isinstance(module, LoraLayer)}


def test_flux_layer_names_and_all_linear_are_valid_settings():
    config = TrainConfig(target_modules=list(FLUX_DEFAULT_MODULES) + ["transformer_blocks.0.norm1.linear",
                                                                       "single_transformer_blocks.3.proj_mlp"])
    assert config.target_modules[-2:] == ["transformer_blocks.0.norm1.linear", "single_transformer_blocks.3.proj_mlp"]
    assert TrainConfig(target_modules="all-linear").target_modules == ["all-linear"]
    both = TrainConfig(target_modules=["all-linear", "to_q"])
    assert both.target_modules == ["all-linear"] and "all-linear already covers to_q" in both.notes[0]
    with pytest.raises(ConfigError, match="'add_q' is not a layer of the UNet or FLUX.1 transformer — did you "
                                          "mean 'add_q_proj'"):
        TrainConfig(target_modules=["add_q"])


def _adapt(model: torch.nn.Module, targets: list[str]) -> None:
    config = SimpleNamespace(effective_alpha=lambda: 4.0, target_modules=targets, lora_rank=2, lora_dropout=0.0,
                             use_dora=False, seed=0, train_text_encoder=False)
    add_lora_adapters(model, {}, config)


def test_all_linear_adapts_every_linear_layer_of_a_flux_transformer_and_a_unet(tiny_sd_dir, tmp_path):
    from diffusers import UNet2DConditionModel

    transformer = _fixtures().tiny_flux_pipeline(tmp_path, guidance_embeds=True).transformer
    targets = denoiser_targets(transformer, ["all-linear"])
    assert {"attn.to_q", "attn.add_q_proj", "attn.to_add_out", "norm1.linear", "proj_mlp", "x_embedder",
            "time_text_embed.guidance_embedder.linear_1", "norm_out.linear", "proj_out"} <= set(targets)
    unet = UNet2DConditionModel.from_pretrained(str(tiny_sd_dir), subfolder="unet")
    for model in (transformer, unet):
        linear = _linear_names(model)
        _adapt(model, ["all-linear"])
        assert _adapted_names(model) == linear
    assert denoiser_targets(unet, ["to_q", "to_v"]) == ["to_q", "to_v"]


@pytest.fixture(scope="module")
def flux_files(tmp_path_factory):
    """A tiny dev-shaped FLUX.1 folder and its transformer alone in BFL layout under ComfyUI's prefix."""
    fixtures = _fixtures()
    root = tmp_path_factory.mktemp("flux-run")
    pipe = fixtures.tiny_flux_pipeline(root / "work", guidance_embeds=True)
    pipe.save_pretrained(str(root / "model"))
    path = fixtures.save_bfl_transformer(pipe.transformer, root / "flux1-dev-tiny.safetensors", "model.diffusion_model.")
    return root / "model", path


def test_a_run_on_a_bfl_file_with_all_linear_writes_a_lora_diffusers_loads_onto_every_linear_layer(
        flux_files, write_config, monkeypatch):
    """The run also draws its samples with the sample settings (steps, guidance) the flux-schnell preset sets."""
    from diffusers import FluxPipeline
    from safetensors.torch import load_file

    calls = []
    draw = FluxPipeline.__call__
    monkeypatch.setattr(FluxPipeline, "__call__", lambda pipe, *a, **kw: calls.append(kw) or draw(pipe, *a, **kw))
    folder, path = flux_files
    config = load_config(write_config(base_model=str(path), base_model_config=str(folder), target_modules="all-linear",
                                      max_steps=2, save_steps=0, batch_size=2, learning_rate=1e-2,
                                      validation_prompts=["a red circle"], sample_steps=2, sample_inference_steps=2,
                                      sample_guidance_scale=1.0))
    result = run_training(config)
    lora = result.diffusers_lora
    assert result.status == "finished" and lora.is_file()
    assert [(kw["num_inference_steps"], kw["guidance_scale"]) for kw in calls] == [(2, 1.0)]
    trained = {key.split(".lora_")[0].removeprefix("transformer.") for key in load_file(str(lora))}
    pipe = FluxPipeline.from_pretrained(str(folder))
    linear = _linear_names(pipe.transformer)
    assert trained == linear
    before = _fixtures().transformer_output(pipe.transformer)
    pipe.load_lora_weights(str(lora.parent))
    assert _adapted_names(pipe.transformer) == linear
    assert not torch.allclose(_fixtures().transformer_output(pipe.transformer), before)



def test_all_linear_on_an_sd_unet_writes_both_files(write_config):
    """The WebUI file carries every Linear layer of the UNet too (time embedding, ResNet time projections, FF)."""
    from safetensors.torch import load_file

    result = run_training(load_config(write_config(target_modules="all-linear", max_steps=1, save_steps=0)))
    assert result.status == "finished" and result.webui_lora.is_file()
    kohya = {key.split(".")[0] for key in load_file(str(result.webui_lora)) if key.startswith("lora_unet_")}
    diffusers = {key.split(".lora_")[0] for key in load_file(str(result.diffusers_lora)) if key.startswith("unet.")}
    assert len(kohya) == len(diffusers) > 0
    assert any(name.endswith("time_emb_proj") for name in diffusers)
