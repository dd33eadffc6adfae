"""WebUI prompt syntax, LoRA names, several LoRAs at once, negative prompt and samplers."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from studio.eval import EvalError, parse_prompt, resolve_lora
from studio.eval.generate import generate_from_prompt
from studio.eval.prompts import LoraTag, prompt_rows
from studio.eval.samplers import make_scheduler, sampler_name

PROMPT = "a red zq star on a white background"


def test_eval_parse_prompt_takes_out_tags_and_reads_weights():
    parsed = parse_prompt("a cat <lora:ink:0.6>, sketch <LORA:water color:0.3:0.8> <lora:plain>")
    assert parsed.text == "a cat, sketch"
    assert parsed.loras == [LoraTag("ink", 0.6, 0.6), LoraTag("water color", 0.8, 0.3), LoraTag("plain", 1.0, 1.0)]
    assert parse_prompt("<lora:a:0.5> x <lora:a:0.25>").loras == [LoraTag("a", 0.75, 0.75)]
    assert parse_prompt("no tags here").loras == []
    with pytest.raises(EvalError, match="not a number"):
        parse_prompt("x <lora:ink:strong>")
    with pytest.raises(EvalError, match="no LoRA name"):
        parse_prompt("x <lora::0.5>")


def test_eval_trigger_rows_with_and_without():
    assert prompt_rows([PROMPT], "zq") == [(PROMPT, True), ("a red star on a white background", False)]
    assert prompt_rows(["a cat, sketch"], "mystyle") == [("mystyle, a cat, sketch", True), ("a cat, sketch", False)]
    assert prompt_rows(["mystyle, a cat"], "mystyle")[1] == ("a cat", False)
    assert prompt_rows(["a cat", "  "]) == [("a cat", None)]


def test_eval_resolve_lora_from_run_checkpoint_file_and_name(trained_run, tmp_path):
    final = trained_run / "pytorch_lora_weights.safetensors"
    assert resolve_lora(trained_run) == final
    checkpoint = trained_run / "checkpoints" / "step-000010"
    assert resolve_lora(checkpoint) == checkpoint / "pytorch_lora_weights.safetensors"
    assert resolve_lora(str(trained_run / "tiny.safetensors")) == trained_run / "tiny.safetensors"
    assert resolve_lora("tiny", [trained_run.parent]) == final  # newest run folder tiny-<timestamp>
    folder = tmp_path / "loras"
    folder.mkdir()
    shutil.copy(final, folder / "ink.safetensors")
    assert resolve_lora("ink", [tmp_path / "elsewhere", folder]) == folder / "ink.safetensors"
    with pytest.raises(EvalError, match="no LoRA 'missing'.*loras"):
        resolve_lora("missing", [folder])
    (folder / "old.ckpt").write_bytes(b"x")
    with pytest.raises(EvalError, match="not a .safetensors"):
        resolve_lora(folder / "old.ckpt")


def _lora_folder(run, folder):
    """a = the run's LoRA, a2 = a copy, neg = a with every up matrix negated (the opposite change)."""
    folder.mkdir()
    source = run / "pytorch_lora_weights.safetensors"
    shutil.copy(source, folder / "a.safetensors")
    shutil.copy(source, folder / "a2.safetensors")
    with safe_open(str(source), "pt") as handle:
        metadata = handle.metadata()
    state = load_file(str(source))
    save_file({k: -v if ".up." in k or "lora_B" in k else v for k, v in state.items()}, str(folder / "neg.safetensors"),
              metadata=metadata)
    return folder


def _pixels(prompt, sd, cache, folder, **kwargs):
    images = generate_from_prompt(prompt, base_model=str(sd), lora_dirs=[folder], steps=3, seeds=[0],
                                  pipeline_cache=cache, **kwargs)
    return np.asarray(images[0], dtype=np.int16)


def test_eval_two_lora_tags_apply_both(trained_run, tiny_sd_dir, tmp_path, pipeline_cache):
    folder = _lora_folder(trained_run, tmp_path / "loras")
    run = lambda text: _pixels(text, tiny_sd_dir, pipeline_cache, folder)  # noqa: E731
    base = run(PROMPT)
    half = run(PROMPT + " <lora:a:0.5>")
    full = run(PROMPT + " <lora:a:1.0>")
    both = run(PROMPT + " <lora:a:0.5> <lora:a2:0.5>")
    opposite = run(PROMPT + " <lora:a:0.5> <lora:neg:0.5>")
    assert np.abs(half - base).max() > 3 and np.abs(full - half).max() > 3
    assert np.abs(both - full).max() <= 1, "two LoRAs at 0.5 each should add up to one at 1.0"
    assert np.abs(opposite - base).max() <= 1, "a LoRA and its negation at 0.5 each should cancel out"
    with pytest.raises(EvalError, match="no LoRA 'b'"):
        run(PROMPT + " <lora:a:0.5> <lora:b:0.5>")


def test_eval_negative_prompt_and_samplers_change_the_picture(tiny_sd_dir, tmp_path, pipeline_cache):
    run = lambda **k: _pixels(PROMPT, tiny_sd_dir, pipeline_cache, tmp_path, **k)  # noqa: E731
    ddim = run(sampler="ddim")
    assert np.array_equal(ddim, run(sampler="DDIM")), "same seed, same picture"
    assert np.abs(run(sampler="ddim", negative_prompt="a blue circle") - ddim).max() > 0
    euler, dpm = run(sampler="Euler"), run(sampler="DPM++ 2M")
    assert np.abs(euler - ddim).max() > 0 and np.abs(dpm - ddim).max() > 0
    assert np.array_equal(run(sampler="euler_a"), run(sampler="Euler a")), "ancestral noise comes from the seed"


def test_eval_sampler_names_and_model_schedule_kept(tiny_sd_dir):
    from diffusers import DDIMScheduler

    assert sampler_name("DPM++ 2M Karras") == "dpm++_2m_karras"
    assert sampler_name("dpmpp_2m") == "dpm++_2m"
    assert sampler_name("Euler a") == "euler_a"
    config = DDIMScheduler.from_pretrained(str(tiny_sd_dir / "scheduler")).config
    scheduler = make_scheduler("dpm++ 2m", config)
    assert type(scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert scheduler.config.prediction_type == "v_prediction" and scheduler.config.rescale_betas_zero_snr
    with pytest.raises(EvalError, match="DPM\\+\\+ 2M"):
        sampler_name("k_dpm_3m")


def test_a_flow_matching_model_is_drawn_with_flow_euler_and_refuses_unet_samplers():
    from diffusers import FlowMatchEulerDiscreteScheduler

    config = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True).config
    scheduler = make_scheduler("Euler", config, flow_matching=True)
    assert type(scheduler).__name__ == "FlowMatchEulerDiscreteScheduler" and scheduler.config.use_dynamic_shifting
    with pytest.raises(EvalError, match="sampler DDIM draws UNet models; this flow-matching model .* Euler"):
        make_scheduler("ddim", config, flow_matching=True)


def test_the_auto_sampler_is_ddim_for_unet_models_and_flow_euler_for_flux():
    """``studio.py grid`` starts from ``--sampler auto``: a FLUX LoRA draws without naming a sampler."""
    from diffusers import DDIMScheduler, FlowMatchEulerDiscreteScheduler

    from studio.eval.samplers import make_scheduler, sampler_name

    assert sampler_name("Auto") == "auto"
    ddpm = DDIMScheduler().config
    flow = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True).config
    assert type(make_scheduler("auto", ddpm)) is DDIMScheduler
    made = make_scheduler("auto", flow, flow_matching=True)
    assert type(made) is FlowMatchEulerDiscreteScheduler and made.config.use_dynamic_shifting
