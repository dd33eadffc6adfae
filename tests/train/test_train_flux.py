"""Training on a tiny random FLUX.1-dev-shaped model: flow matching learns, files, resume, reduced base weights."""
from __future__ import annotations

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file

from studio.config import load_config
from studio.models.families import FLUX
from studio.models.families.flux import pack_latents, unpack_latents
from studio.models.families.objectives import FlowMatching
from studio.train import run_training
from studio.train.events import StepEvent, ValidationEvent
from run_helpers import stop_after

# The diffusers FLUX LoRA example's default targets: attention of both streams and both feed-forwards.
FLUX_TARGETS = ["to_q", "to_k", "to_v", "to_out.0", "add_q_proj", "add_k_proj", "add_v_proj", "to_add_out",
                "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2"]


@pytest.fixture
def flux_config(write_config, tiny_flux_dir, tmp_path):
    def write(**overrides):
        values = dict(base_model=str(tiny_flux_dir), lora_rank=4, lora_alpha=8, max_steps=4, save_steps=2,
                      target_modules=["to_q", "to_k", "to_v", "to_out.0"], output_dir=str(tmp_path / "flux"),
                      output_name="tiny-flux")
        values.update(overrides)
        return load_config(write_config(**values))

    return write


def test_flux_lora_overfits_a_few_pictures_and_writes_a_flux_file(flux_config, tmp_path):
    """120 steps on the eight pictures: the deterministic validation loss (fixed pictures, noise levels and noise)
    falls by more than a fifth, and the run leaves a transformer LoRA marked as FLUX.1-dev with samples drawn by the
    flow-matching sampler."""
    scores: dict[int, float] = {}

    def hear(event):
        if isinstance(event, ValidationEvent):
            scores[event.step] = event.val_loss
        elif isinstance(event, StepEvent) and event.val_loss is not None:
            scores[event.step] = event.val_loss

    config = flux_config(max_steps=120, save_steps=0, learning_rate=3e-3, lora_rank=8, lora_alpha=8,
                         validation_steps=120, sample_steps=120, trigger_word="zq",
                         validation_prompts=["a red zq star on a white background"])
    result = run_training(config, emit=hear)
    assert result.status == "finished"
    assert set(scores) == {0, 120}
    assert scores[120] < 0.8 * scores[0], scores
    lora = result.run_dir / "pytorch_lora_weights.safetensors"
    with safe_open(str(lora), framework="pt") as handle:
        keys, metadata = list(handle.keys()), handle.metadata()
    assert keys and all(key.startswith("transformer.") for key in keys)
    assert {k.split(".lora_")[0].rsplit(".", 1)[-1] for k in keys} >= {"to_q", "to_k", "to_v"}
    assert metadata["ss_base_model_version"] == "flux1"
    assert metadata["modelspec.architecture"] == "flux-1-dev/lora"
    samples = sorted((result.run_dir / "samples" / "step-000120").glob("*.png"))
    assert [p.name.split("-")[1] for p in samples] == ["trigger", "no"]
    assert all(Image.open(p).size == (32, 32) for p in samples)


def test_flux_resume_equals_a_straight_run(flux_config, tmp_path):
    straight = run_training(flux_config(output_dir=str(tmp_path / "a")))
    stopped = run_training(flux_config(output_dir=str(tmp_path / "b")), **stop_after(2))
    assert stopped.status == "stopped" and stopped.step == 2
    resumed = run_training(flux_config(output_dir=str(tmp_path / "b"), resume="latest"))
    assert resumed.status == "finished"
    first = load_file(str(straight.run_dir / "pytorch_lora_weights.safetensors"))
    second = load_file(str(resumed.run_dir / "pytorch_lora_weights.safetensors"))
    assert set(first) == set(second)
    assert max((first[k] - second[k]).abs().max().item() for k in first) <= 1e-6


def test_flux_trains_the_clip_encoder_only_and_loads_back_in_a_flux_pipeline(flux_config, tiny_flux_dir):
    """With train_text_encoder the CLIP encoder gets a LoRA (T5 stays frozen, as every FLUX trainer keeps it);
    FluxPipeline.load_lora_weights reads the file back into both parts, equal to what was trained."""
    from diffusers import FluxPipeline

    result = run_training(flux_config(train_text_encoder=True, weighting_scheme="logit_normal",
                                      guidance_scale=3.5))
    tensors = load_file(str(result.run_dir / "pytorch_lora_weights.safetensors"))
    assert {key.split(".")[0] for key in tensors} == {"transformer", "text_encoder"}
    pipe = FluxPipeline.from_pretrained(str(tiny_flux_dir))
    pipe.load_lora_weights(str(result.run_dir))
    loaded = {name for name, module in pipe.text_encoder_2.named_modules() if hasattr(module, "lora_A")}
    assert not loaded
    loaded_a = {f"{part}.{name}.lora_A.weight".replace("text_model.", ""): module.lora_A["default_0"].weight
                for part in ("transformer", "text_encoder") for name, module in getattr(pipe, part).named_modules()
                if hasattr(module, "lora_A") and "default_0" in module.lora_A}
    # The text-encoder part is in diffusers' own naming (``lora_linear_layer.down``), as for SD 1.x and SDXL.
    down = {key.replace("text_model.", "").replace("lora_linear_layer.down", "lora_A"): value
            for key, value in tensors.items()}
    saved_a = {key: value for key, value in down.items() if key.endswith("lora_A.weight")}
    assert set(loaded_a) == set(saved_a)
    assert all(torch.equal(loaded_a[key], saved_a[key]) for key in saved_a)


@pytest.mark.parametrize("choice, stored", [("bf16", torch.bfloat16), ("fp8", torch.float8_e4m3fn)])
def test_flux_reduced_base_weights_on_the_cpu_train_with_fp32_lora(flux_config, tmp_path, choice, stored):
    """bf16 stores every frozen tensor in bf16; fp8 stores the frozen Linear weights in float8 (each upcast while
    its layer runs). The LoRA stays fp32 and training stays finite."""
    from studio.train.setup import build_setup

    setup = build_setup(flux_config(base_weights=choice, max_steps=2))
    attention = setup.components.denoiser.transformer_blocks[0].attn
    assert attention.to_q.base_layer.weight.dtype == stored and attention.add_q_proj.weight.dtype == stored
    assert {p.dtype for p in setup.components.denoiser.parameters() if p.requires_grad} == {torch.float32}
    result = run_training(flux_config(base_weights=choice, max_steps=2, output_dir=str(tmp_path / choice)))
    assert result.status == "finished"
    tensors = load_file(str(result.run_dir / "pytorch_lora_weights.safetensors"))
    assert all(torch.isfinite(t).all() for t in tensors.values())


def test_flux_nf4_on_a_machine_without_cuda_is_one_sentence_before_loading(flux_config):
    from studio.models.loading import ModelLoadError
    from studio.train.setup import build_setup

    with pytest.raises(ModelLoadError) as caught:
        build_setup(flux_config(base_weights="nf4"))
    text = str(caught.value)
    assert "nf4" in text and "\n" not in text and ("CUDA" in text or "bitsandbytes" in text)


def test_pack_and_unpack_are_inverse_and_match_flux_pipeline():
    from diffusers import FluxPipeline

    latents = torch.randn(2, 4, 6, 8)
    packed = pack_latents(latents)
    assert torch.equal(packed, FluxPipeline._pack_latents(latents, 2, 4, 6, 8))
    assert torch.equal(unpack_latents(packed, 4, 6, 8), latents)


def test_flow_matching_noises_toward_pure_noise_and_targets_the_velocity():
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True)
    objective = FlowMatching(scheduler)
    latents, noise = torch.randn(3, 4, 4, 4), torch.randn(3, 4, 4, 4)
    timesteps = torch.tensor([0.0, 500.0, 1000.0])
    noisy, target = objective.noisy_and_target(latents, noise, timesteps)
    assert torch.allclose(noisy[0], latents[0]) and torch.allclose(noisy[2], noise[2])
    assert torch.allclose(noisy[1], 0.5 * latents[1] + 0.5 * noise[1])
    assert torch.equal(target, noise - latents)
    drawn = objective.timesteps(4000, torch.Generator().manual_seed(0))
    assert 0 < drawn.min() and drawn.max() <= 1000 and abs(drawn.mean().item() - 500) < 25  # uniform
    shifted = FlowMatching(scheduler, shift=3.0).timesteps(4000, torch.Generator().manual_seed(0))
    assert shifted.mean() > drawn.mean() + 100  # a shift of 3 spends more steps at high noise
    logit = FlowMatching(scheduler, "logit_normal").timesteps(4000, torch.Generator().manual_seed(0))
    assert ((logit > 250) & (logit < 750)).float().mean() > 0.6  # mid noise levels favoured
    weights = FlowMatching(scheduler, "cosmap").loss_weights(torch.tensor([0.0, 500.0, 1000.0]))
    assert weights[1] > weights[0] and torch.allclose(weights[0], weights[2])
    assert FlowMatching(scheduler).loss_weights(timesteps) is None


def test_flux_encode_matches_the_pipelines_own_prompt_encoding(tiny_flux_dir):
    from diffusers import FluxPipeline

    from studio.models import load_components

    components = load_components(str(tiny_flux_dir))
    pipe = FluxPipeline.from_pretrained(str(tiny_flux_dir))
    captions = ["a red circle on a white background", ""]
    ours = FLUX.encode(components, captions, "cpu")
    hidden, pooled, _ = pipe.encode_prompt(captions, captions, max_sequence_length=FLUX.text_length(pipe.tokenizer_2))
    assert torch.allclose(ours.hidden, hidden) and torch.allclose(ours.pooled, pooled)


def test_settings_of_the_other_objective_are_named_before_training(flux_config, write_config):
    """Min-SNR is a DDPM weighting and weighting_scheme a flow-matching one: each family says which it ignores."""
    from studio.train.setup import build_setup

    said: list[str] = []
    build_setup(flux_config(min_snr_gamma=5.0), warn=said.append)
    assert any("min_snr_gamma applies only to the UNet families" in s for s in said), said
    said.clear()
    build_setup(load_config(write_config(weighting_scheme="logit_normal", flow_shift=3.0)), warn=said.append)
    assert any("weighting_scheme, flow_shift apply only to flow-matching models" in s for s in said), said
