"""Evaluation on a tiny random SDXL: checkpoint x weight grids, weight 0 is the base model, <lora:…> prompts, verdict."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from studio.eval import make_verdict
from studio.eval.generate import generate_from_prompt

from .family_runs import PROMPT, checkpoint_grid_against_the_base, train_run


@pytest.fixture(scope="module")
def sdxl_run(tmp_path_factory, tiny_sdxl_dir, eval_dataset):
    """A 20-step SDXL run (UNet and both text encoders) with checkpoints at steps 10 and 20."""
    return train_run(tiny_sdxl_dir, eval_dataset, tmp_path_factory.mktemp("sdxl-runs"), output_name="xl")


def test_sdxl_grid_checkpoints_by_weight_with_the_base_at_weight_zero(sdxl_run, tiny_sdxl_dir, tmp_path):
    result, _ = checkpoint_grid_against_the_base(sdxl_run, tiny_sdxl_dir, tmp_path / "grid", {})
    verdict = make_verdict(result.metrics)
    assert verdict.weight_reasons and verdict.best_checkpoint in ("step 10", "final")


def test_sdxl_lora_tag_in_a_prompt_applies_the_lora_at_its_weight(sdxl_run, tiny_sdxl_dir, tmp_path):
    folder = tmp_path / "loras"
    folder.mkdir()
    shutil.copy(sdxl_run / "xl.safetensors", folder / "xl.safetensors")
    cache: dict = {}

    def pixels(prompt: str) -> np.ndarray:
        images = generate_from_prompt(prompt, base_model=str(tiny_sdxl_dir), lora_dirs=[folder], steps=3, seeds=[0],
                                      pipeline_cache=cache)
        return np.asarray(images[0], dtype=np.int16)

    base, half, full = pixels(PROMPT), pixels(PROMPT + " <lora:xl:0.5>"), pixels(PROMPT + " <lora:xl:1>")
    assert np.abs(half - base).max() > 3 and np.abs(full - half).max() > 3
    assert np.array_equal(pixels(PROMPT + " <lora:xl:0>"), base)


def test_a_lora_of_the_other_family_is_refused_with_a_sentence(sdxl_run, trained_run, tiny_sdxl_dir, tiny_sd_dir,
                                                               tmp_path):
    from studio.eval import EvalError

    folder = tmp_path / "loras"
    folder.mkdir()
    shutil.copy(sdxl_run / "xl.safetensors", folder / "xl.safetensors")
    shutil.copy(trained_run / "tiny.safetensors", folder / "sd.safetensors")
    cache: dict = {}
    with pytest.raises(EvalError, match="is an SD 1.x LoRA and the base model is SDXL"):
        generate_from_prompt(PROMPT + " <lora:sd:0.5>", base_model=str(tiny_sdxl_dir), lora_dirs=[folder], steps=1,
                             pipeline_cache=cache)
    with pytest.raises(EvalError, match="is an SDXL LoRA and the base model is SD 1.x"):
        generate_from_prompt(PROMPT + " <lora:xl:0.5>", base_model=str(tiny_sd_dir), lora_dirs=[folder], steps=1,
                             pipeline_cache=cache)
