"""``base_weights``: the frozen base model stored in bf16 / fp16 / fp8 on a CPU while the LoRA stays fp32, and the
sentence (never a traceback) where nf4 cannot run."""
from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from studio.config import ConfigError, load_config
from studio.models import ModelLoadError
from studio.models.precision import plan_weights
from studio.train import run_training
from studio.train.run_folder import RunFolder
from run_helpers import stop_after

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def two_pictures(toy_dataset, tmp_path_factory):
    """The first two pictures of the toy dataset: a LoRA overfits them within a few dozen steps."""
    folder = tmp_path_factory.mktemp("two-pictures")
    with open(toy_dataset / "metadata.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))[:3]
    with open(folder / "metadata.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    for name, _ in rows[1:]:
        shutil.copy(toy_dataset / name, folder / name)
    return folder


def _frozen_and_trained(model: torch.nn.Module) -> tuple[set, set]:
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trained = {p.dtype for p in model.parameters() if p.requires_grad}
    return frozen, trained


def _losses(run_dir: Path) -> list[float]:
    return [row["loss"] for row in RunFolder(run_dir).loss_log()]


def test_plans_follow_the_setting_and_auto_keeps_the_old_rule():
    assert plan_weights("auto", "cpu", "bf16").storage == torch.float32
    assert plan_weights("auto", "cuda", "bf16").storage == torch.bfloat16
    assert plan_weights("auto", "cuda", "fp16").vae == torch.float32
    assert not plan_weights("auto", "cuda", "bf16").casts_inputs
    fp16 = plan_weights("fp16", "cpu", "no")
    assert (fp16.storage, fp16.compute, fp16.vae) == (torch.float16, torch.float16, torch.float32)
    fp8 = plan_weights("fp8", "cuda", "bf16")
    assert (fp8.storage, fp8.compute, fp8.vae) == (torch.float8_e4m3fn, torch.bfloat16, torch.bfloat16)
    assert plan_weights("fp8", "cpu", "no").compute == torch.float32


def test_unknown_base_weights_is_a_config_error(write_config):
    with pytest.raises(ConfigError, match="base_weights"):
        load_config(write_config(base_weights="int3"))


def test_bf16_base_on_cpu_keeps_the_lora_fp32_and_the_loss_falls(write_config, two_pictures, tmp_path):
    from studio.train.setup import build_setup

    settings = dict(train_data_dir=str(two_pictures), batch_size=2, learning_rate=5e-3, max_steps=30, save_steps=0,
                    base_weights="bf16", train_text_encoder=True, output_dir=str(tmp_path / "out"))
    setup = build_setup(load_config(write_config(**settings)))
    assert _frozen_and_trained(setup.components.denoiser) == ({torch.bfloat16}, {torch.float32})
    assert _frozen_and_trained(setup.components.text_encoder) == ({torch.bfloat16}, {torch.float32})
    assert {p.dtype for p in setup.components.vae.parameters()} == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in setup.params)

    result = run_training(load_config(write_config(**{**settings, "train_text_encoder": False})))
    losses = _losses(result.run_dir)
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    # Measured on this model: 0.564 -> 0.369 in bf16, 0.564 -> 0.369 with base_weights: fp32.
    assert last < 0.8 * first, losses


def test_fp16_base_on_cpu_trains_and_draws_its_samples_with_an_fp32_vae(write_config, tmp_path):
    from studio.train.setup import build_setup

    settings = dict(max_steps=3, save_steps=0, base_weights="fp16", sample_steps=3,
                    validation_prompts=["a red circle"], validation_steps=3, output_dir=str(tmp_path / "out"))
    setup = build_setup(load_config(write_config(**settings)))
    assert _frozen_and_trained(setup.components.denoiser) == ({torch.float16}, {torch.float32})
    assert {p.dtype for p in setup.components.vae.parameters()} == {torch.float32}
    result = run_training(load_config(write_config(**settings)))
    assert result.status == "finished"
    assert len(list((result.run_dir / "samples").rglob("*.png"))) == 1
    assert all(loss == loss for loss in _losses(result.run_dir))


def test_fp8_base_is_stored_in_float8_and_trains_on_cpu_with_peft_dora_too(write_config, tmp_path):
    from studio.train.setup import build_setup

    settings = dict(max_steps=4, save_steps=0, base_weights="fp8", output_dir=str(tmp_path / "out"))
    unet = build_setup(load_config(write_config(**settings))).components.denoiser
    layer = unet.down_blocks[1].attentions[0].transformer_blocks[0].attn1.to_q
    assert layer.base_layer.weight.dtype == torch.float8_e4m3fn
    assert layer.lora_A["default"].weight.dtype == torch.float32
    assert unet.conv_in.weight.dtype == torch.float32  # kept in the compute dtype, so unet.dtype stays fp32
    result = run_training(load_config(write_config(**settings, use_dora=True, dora_axis="diffusers")))
    assert result.status == "finished"
    assert all(0 < loss < 10 for loss in _losses(result.run_dir))


def test_fp8_layers_give_the_gradient_of_their_rounded_weights():
    from studio.models.fp8 import STORAGE, store_in_fp8

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(4 * 25, 2))
    model.requires_grad_(False)
    reference = torch.nn.Sequential(*[torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Flatten(), torch.nn.Linear(100, 2)])
    reference.load_state_dict({k: v.to(STORAGE).float() if k.endswith("weight") else v
                               for k, v in model.state_dict().items()})
    assert store_in_fp8(model, torch.float32) == 2
    grads = []
    for net in (model, reference):
        x = torch.randn(2, 3, 5, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
        net(x).square().sum().backward()
        grads.append(x.grad)
    assert model[0].weight.dtype == STORAGE
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_nf4_without_bitsandbytes_is_a_sentence_before_any_weights_load(write_config, monkeypatch):
    import importlib.util

    from studio.train import setup as setup_module

    if importlib.util.find_spec("bitsandbytes") is not None:
        pytest.skip("bitsandbytes is installed here")
    monkeypatch.setattr("studio.models.load_components", lambda *a, **k: pytest.fail("weights were loaded"))
    with pytest.raises(ModelLoadError, match=r"nf4 needs the bitsandbytes package.*pip install bitsandbytes"):
        setup_module.build_setup(load_config(write_config(base_weights="nf4")))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "bitsandbytes"
                        else real(name, *a))
    if not torch.cuda.is_available():
        with pytest.raises(ModelLoadError, match="nf4 needs a CUDA GPU"):
            setup_module.build_setup(load_config(write_config(base_weights="nf4")))


def test_cli_prints_the_nf4_sentence_and_exits_2(write_config):
    done = subprocess.run([sys.executable, "studio.py", "train", "--config", str(write_config()), "--quiet",
                           "--set", "base_weights=nf4"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: base_weights: nf4 needs" in done.stderr and "Traceback" not in done.stderr


def test_resumed_bf16_run_equals_a_straight_one(write_config, tmp_path):
    settings = dict(max_steps=10, save_steps=5, base_weights="bf16")
    straight = run_training(load_config(write_config(output_dir=str(tmp_path / "a"), **settings)))
    stopped = run_training(load_config(write_config(output_dir=str(tmp_path / "b"), **settings)), **stop_after(5))
    assert stopped.status == "stopped"
    resumed = run_training(load_config(write_config(output_dir=str(tmp_path / "b"), resume="latest", **settings)))
    assert resumed.status == "finished"
    a = load_file(str(straight.run_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(resumed.run_dir / "pytorch_lora_weights.safetensors"))
    # The resumed run re-casts the same fp32 base to bf16 and reloads the fp32 LoRA and optimizer state, so every
    # step computes on identical tensors: the same 1e-6 bound as the fp32 resume test (measured: 0.0).
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6


@pytest.mark.parametrize("choice, stored", [("bf16", torch.bfloat16), ("fp8", torch.float8_e4m3fn)])
def test_sdxl_base_in_reduced_precision_trains_both_encoders_and_samples(write_config, tiny_sdxl_dir, tmp_path,
                                                                         choice, stored):
    from studio.train.setup import build_setup

    settings = dict(base_model=str(tiny_sdxl_dir), max_steps=2, save_steps=0, base_weights=choice,
                    train_text_encoder=True, sample_steps=2, validation_prompts=["a red circle"],
                    output_dir=str(tmp_path / "out"))
    components = build_setup(load_config(write_config(**settings))).components
    to_q = components.denoiser.down_blocks[1].attentions[0].transformer_blocks[0].attn2.to_q
    assert to_q.base_layer.weight.dtype == stored
    q_proj = components.text_encoder_2.text_model.encoder.layers[0].self_attn.q_proj
    assert q_proj.base_layer.weight.dtype == stored and q_proj.lora_A["default"].weight.dtype == torch.float32
    result = run_training(load_config(write_config(**settings)))
    assert result.status == "finished" and all(0 < loss < 10 for loss in _losses(result.run_dir))
    assert list((result.run_dir / "samples").rglob("*.png"))


def test_reduced_base_weights_are_read_from_disk_in_their_compute_dtype(write_config, monkeypatch):
    """bf16 and fp8 (computing in bf16) read the model in bf16: no fp32 copy of the base is ever held; fp16 keeps
    the VAE in fp32 and so reads fp32, as auto does."""
    import studio.models as models
    from studio.train.setup import build_setup

    read: list[torch.dtype] = []
    real = models.load_components

    def spy(*args, **kwargs):
        read.append(kwargs["dtype"])
        return real(*args, **kwargs)

    monkeypatch.setattr(models, "load_components", spy)
    for choice, mixed in (("bf16", "no"), ("fp8", "bf16"), ("fp16", "no"), ("auto", "no")):
        build_setup(load_config(write_config(base_weights=choice, mixed_precision=mixed)))
    assert read == [torch.bfloat16, torch.bfloat16, torch.float32, torch.float32]
