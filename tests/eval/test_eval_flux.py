"""Evaluation of a FLUX.1 LoRA on a tiny random FLUX.1-dev: the grid loads it into a FluxPipeline at several
weights (a weight per picture through the transformer's and CLIP's lora_B hooks, or merged), weight 0 is the base
model, the cached pipeline is left as the base, and a LoRA of another family is refused with a sentence."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from studio.eval import EvalError, GridSpec, render_grid
from studio.eval.generate import generate_from_prompt

from .family_runs import PROMPT, checkpoint_grid_against_the_base, train_run


@pytest.fixture(scope="module")
def flux_run(tmp_path_factory, tiny_flux_dir, eval_dataset):
    """A 20-step FLUX.1 run (transformer and CLIP, alpha 8 on rank 4) with checkpoints at steps 10 and 20."""
    return train_run(tiny_flux_dir, eval_dataset, tmp_path_factory.mktemp("flux-runs"), output_name="fx")


def test_flux_grid_draws_checkpoints_by_weight_with_the_base_at_weight_zero(flux_run, tiny_flux_dir, tmp_path):
    cache: dict = {}
    _, base = checkpoint_grid_against_the_base(flux_run, tiny_flux_dir, tmp_path / "grid", cache)
    (pipe,) = cache.values()
    assert type(pipe).__name__ == "FluxPipeline"
    for part in ("transformer", "text_encoder"):  # the cached pipeline is the base model again, bit for bit
        left = {name.replace(".base_layer", ""): tensor for name, tensor in getattr(pipe, part).state_dict().items()
                if "lora_" not in name}
        assert left.keys() == getattr(base, part).state_dict().keys()
        assert [name for name, tensor in getattr(base, part).state_dict().items()
                if not torch.equal(left[name], tensor)] == []


def test_weights_drawn_per_picture_match_the_lora_merged_at_that_weight(flux_run, tiny_flux_dir, tmp_path):
    cache: dict = {}
    spec = GridSpec(lora=str(flux_run), prompts=[PROMPT], seeds=[0, 1], weights=[0.3, 0.9], steps=3)
    result = render_grid(spec, tmp_path / "grid", pipeline_cache=cache)
    for cell in result.cells:
        prompt = f"{PROMPT} <lora:pytorch_lora_weights:{cell.weight}>"
        (alone,) = generate_from_prompt(prompt, base_model=str(tiny_flux_dir), lora_dirs=[flux_run], steps=3,
                                        seeds=[cell.seed], pipeline_cache=cache)
        drawn = np.asarray(Image.open(cell.path), dtype=np.int16)
        assert np.abs(drawn - np.asarray(alone, dtype=np.int16)).max() <= 2, (cell.seed, cell.weight)


def test_an_sd_lora_on_flux_and_a_flux_lora_on_sd_are_refused_with_a_sentence(flux_run, tiny_flux_dir, tiny_sd_dir,
                                                                               tmp_path):
    import shutil

    from safetensors.torch import save_file

    folder = tmp_path / "loras"
    folder.mkdir()
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 8),
               "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": torch.zeros(8, 4)},
              folder / "sd.safetensors", {"ss_base_model_version": "sd_v1"})
    shutil.copy(flux_run / "pytorch_lora_weights.safetensors", folder / "fx.safetensors")
    cache: dict = {}
    with pytest.raises(EvalError, match="is an SD 1.x LoRA and the base model is FLUX.1: pick a LoRA trained on a "
                                        "FLUX.1 model, or an SD 1.x base model"):
        generate_from_prompt(PROMPT + " <lora:sd:0.5>", base_model=str(tiny_flux_dir), lora_dirs=[folder], steps=1,
                             pipeline_cache=cache)
    with pytest.raises(EvalError, match="is a FLUX.1 LoRA and the base model is SD 1.x: pick a LoRA trained on an "
                                        "SD 1.x model, or a FLUX.1 base model"):
        generate_from_prompt(PROMPT + " <lora:fx:0.5>", base_model=str(tiny_sd_dir), lora_dirs=[folder], steps=1,
                             pipeline_cache=cache)


def test_a_sampler_flux_cannot_use_is_refused_with_a_sentence(flux_run, tmp_path):
    spec = GridSpec(lora=str(flux_run), prompts=[PROMPT], weights=[1.0], steps=1, sampler="dpm++_2m")
    with pytest.raises(EvalError, match="sampler DPM\\+\\+ 2M draws UNet models; this flow-matching model "
                                        "\\(FLUX.1\\) is drawn with Euler: choose it instead"):
        render_grid(spec, tmp_path / "grid", pipeline_cache={})
