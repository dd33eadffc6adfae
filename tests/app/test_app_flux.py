"""What the tabs show for a FLUX.1 base model without a browser: the family line with the memory setting, and the
sampler and guidance the Evaluation tab starts a FLUX run's grid from (read from model_index.json, nothing loaded)."""
from __future__ import annotations

import json

import pytest


FLUX_INDEX = {"_class_name": "FluxPipeline", "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
              "text_encoder": ["transformers", "CLIPTextModel"], "text_encoder_2": ["transformers", "T5EncoderModel"],
              "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"],
              "transformer": ["diffusers", "FluxTransformer2DModel"], "vae": ["diffusers", "AutoencoderKL"]}


@pytest.fixture
def flux_folder(tmp_path):
    folder = tmp_path / "flux-model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(FLUX_INDEX))
    return folder


def test_family_line_names_flux_and_the_base_weights(studio, flux_folder):
    configs = studio.configs
    text = configs.yaml_with(configs.yaml(configs.default()), {"base_model": str(flux_folder)})
    assert configs.model_family_line(text).startswith("Model family: **FLUX.1**")
    assert configs.model_family_line(text).endswith("base weights: **auto** (fp32 on a GPU, fp32 on a CPU)")
    text = configs.yaml_with(text, {"base_weights": "nf4", "mixed_precision": "bf16"})
    assert configs.model_family_line(text).endswith(" · base weights: **nf4**")
    text = configs.yaml_with(text, {"base_weights": "auto"})
    assert configs.model_family_line(text).endswith("base weights: **auto** (bf16 on a GPU, fp32 on a CPU)")


def _run(studio, base_model: str):
    run = studio.output_dir / "lora" / "lora-20260101-120000"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(f"base_model: {json.dumps(base_model)}\n")
    (run / "pytorch_lora_weights.safetensors").write_bytes(b"")
    return run


def test_a_flux_run_is_drawn_with_flow_matching_euler_and_flux_guidance(studio, flux_folder):
    run = _run(studio, str(flux_folder))
    assert studio.evaluation.drawing_defaults(run.name) == (["euler"], "euler", 3.5)
    (flux_folder / "transformer").mkdir()
    (flux_folder / "transformer" / "config.json").write_text('{"guidance_embeds": false}')  # schnell-shaped
    assert studio.evaluation.drawing_defaults(run.name) == (["euler"], "euler", 1.0)


def test_a_unet_run_or_an_unreadable_base_model_keeps_every_sampler(studio, tmp_path):
    run = _run(studio, str(tmp_path / "gone"))
    samplers, sampler, guidance = studio.evaluation.drawing_defaults(run.name)
    assert (sampler, guidance) == ("ddim", 5.0) and {"ddim", "euler", "dpm++_2m_karras"} <= set(samplers)
