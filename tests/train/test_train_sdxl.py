"""Training on a tiny random SDXL model: both text encoders, time ids, both LoRA files, resume, incremental."""
from __future__ import annotations

import re

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from studio.config import load_config
from studio.train import run_training
from run_helpers import stop_after

RANK, ALPHA = 4, 8
# kohya's SDXL names: UNet modules by their original block names, one prefix per text encoder.
KOHYA_SDXL = re.compile(
    r"lora_unet_(input_blocks|middle_block|output_blocks)_\w+|"
    r"lora_te[12]_text_model_encoder_layers_\d+_(self_attn_(q|k|v|out)_proj|mlp_fc[12])"
)


@pytest.fixture
def sdxl_config(write_config, tiny_sdxl_dir, tmp_path):
    def write(**overrides):
        values = dict(base_model=str(tiny_sdxl_dir), lora_rank=RANK, lora_alpha=ALPHA, max_steps=4, save_steps=2,
                      output_dir=str(tmp_path / "sdxl"), output_name="tiny-xl")
        values.update(overrides)
        return load_config(write_config(**values))

    return write


def _pipe(model_dir):
    from diffusers import StableDiffusionXLPipeline

    return StableDiffusionXLPipeline.from_pretrained(str(model_dir))


def _deltas(pipe) -> dict[str, torch.Tensor]:
    """The weight change each loaded LoRA layer adds (B @ A x scale), per component and module path (without
    transformers' optional ``text_model.`` level)."""
    deltas = {}
    for part in ("unet", "text_encoder", "text_encoder_2"):
        for path, module in getattr(pipe, part).named_modules():
            if hasattr(module, "lora_A") and "default_0" in module.lora_A:
                down = module.lora_A["default_0"].weight.flatten(1)
                up = module.lora_B["default_0"].weight.flatten(1)
                deltas[f"{part}.{path}".replace("text_model.", "")] = (up @ down) * module.scaling["default_0"]
    return deltas


def _file_deltas(diffusers_file) -> dict[str, torch.Tensor]:
    """The same, computed from the diffusers file's own tensors and the alpha it stores (alpha / rank)."""
    tensors = load_file(str(diffusers_file))
    deltas = {}
    pairs = ((".lora_A.weight", ".lora_B.weight"), (".lora_linear_layer.down.weight", ".lora_linear_layer.up.weight"))
    for key, down in tensors.items():
        for down_suffix, up_suffix in pairs:
            if key.endswith(down_suffix):
                up = tensors[key[: -len(down_suffix)] + up_suffix]
                name = key[: -len(down_suffix)].replace("text_model.", "")
                deltas[name] = (up.flatten(1) @ down.flatten(1)) * (ALPHA / RANK)
    return deltas


def test_sdxl_run_trains_both_text_encoders_and_both_files_load_back_equal(sdxl_config, tiny_sdxl_dir):
    events = []
    result = run_training(sdxl_config(train_text_encoder=True, validation_steps=2, sample_steps=4,
                                      trigger_word="zq", validation_prompts=["a red zq circle on a white background"]),
                          emit=events.append)
    assert result.status == "finished"
    steps = [e for e in events if e.kind == "step"]
    assert [e.step for e in steps] == [1, 2, 3, 4] and all(torch.isfinite(torch.tensor(e.loss)) for e in steps)
    assert [e.val_loss is not None for e in steps] == [False, True, False, True]
    assert len(list((result.run_dir / "samples").glob("step-*/*.png"))) == 2  # with and without the trigger

    diffusers_file = result.run_dir / "pytorch_lora_weights.safetensors"
    kohya_file = result.run_dir / "tiny-xl.safetensors"
    from_diffusers, from_kohya = _pipe(tiny_sdxl_dir), _pipe(tiny_sdxl_dir)
    from_diffusers.load_lora_weights(str(result.run_dir))
    from_kohya.load_lora_weights(str(kohya_file))
    expected, loaded, loaded_kohya = _file_deltas(diffusers_file), _deltas(from_diffusers), _deltas(from_kohya)
    assert {k.split(".")[0] for k in loaded} == {"unet", "text_encoder", "text_encoder_2"}
    assert set(loaded) == set(expected) == set(loaded_kohya)
    # SDXL reads the first encoder's penultimate layer: its last layer would get no gradient, so it has no LoRA.
    assert not any(name.startswith("text_encoder.encoder.layers.4.") for name in expected)
    assert any(name.startswith("text_encoder_2.encoder.layers.4.") for name in expected)
    for name, delta in expected.items():
        assert delta.abs().max() > 0, name
        assert torch.allclose(loaded[name], delta, atol=1e-6), name
        assert torch.allclose(loaded_kohya[name].reshape(delta.shape), delta, atol=1e-6), name

    with safe_open(str(kohya_file), framework="pt") as handle:
        names = {key.split(".")[0] for key in handle.keys()}
        metadata = handle.metadata()
    assert all(KOHYA_SDXL.fullmatch(name) for name in names), sorted(n for n in names if not KOHYA_SDXL.fullmatch(n))
    assert {name[:9] for name in names} == {"lora_unet", "lora_te1_", "lora_te2_"}
    assert metadata["ss_base_model_version"] == "sdxl_base_v1-0"
    assert metadata["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert "ss_v2" not in metadata and metadata["ss_network_alpha"] == str(float(ALPHA))


def test_sdxl_unet_only_resume_equals_a_straight_run(sdxl_config, tmp_path):
    straight = run_training(sdxl_config(output_dir=str(tmp_path / "a")))
    stopped = run_training(sdxl_config(output_dir=str(tmp_path / "b")),
                           **stop_after(2))
    assert stopped.status == "stopped" and stopped.step == 2
    resumed = run_training(sdxl_config(output_dir=str(tmp_path / "b"), resume="latest"))
    assert resumed.status == "finished"
    first = load_file(str(straight.run_dir / "pytorch_lora_weights.safetensors"))
    second = load_file(str(resumed.run_dir / "pytorch_lora_weights.safetensors"))
    assert set(first) == set(second) and all(k.startswith("unet.") for k in first)
    assert max((first[k] - second[k]).abs().max().item() for k in first) <= 1e-6
    with safe_open(str(straight.run_dir / "tiny-xl.safetensors"), framework="pt") as handle:
        assert not any(key.startswith("lora_te") for key in handle.keys())
    from studio.lora import read_lora_info

    # A UNet-only diffusers file names the same modules for both families: its metadata says which it is.
    assert read_lora_info(straight.run_dir).family == "sdxl"
    assert read_lora_info(straight.run_dir / "tiny-xl.safetensors").family == "sdxl"


def test_sdxl_incremental_training_reads_its_own_kohya_file(sdxl_config, tmp_path):
    first = run_training(sdxl_config(output_dir=str(tmp_path / "first"), train_text_encoder=True))
    start = load_file(str(first.run_dir / "pytorch_lora_weights.safetensors"))
    more = run_training(sdxl_config(output_dir=str(tmp_path / "more"), train_text_encoder=True, max_steps=1,
                                    learning_rate=1e-9, init_lora=str(first.run_dir / "tiny-xl.safetensors")))
    again = load_file(str(more.run_dir / "pytorch_lora_weights.safetensors"))
    assert set(again) == set(start)
    assert max((start[k] - again[k]).abs().max().item() for k in start) < 1e-5


def test_sdxl_time_ids_follow_each_pictures_size_and_crop():
    from studio.data.buckets import crop_top_left
    from studio.models.families import SDXL

    # A 48 x 32 picture in a 32 x 32 bucket is resized to 48 x 32 and 8 px are cut on each side.
    assert crop_top_left((48, 32), (32, 32)) == (0, 8)
    assert SDXL.micro_conditioning((32, 48), crop_top_left((48, 32), (32, 32)), (32, 32)) == [32, 48, 0, 8, 32, 32]
    assert crop_top_left((32, 64), (32, 32)) == (16, 0)


def test_sdxl_bf16_with_gradient_checkpointing_trains_finite(sdxl_config, tmp_path):
    """bf16 autocast (a CPU runs it too) and checkpointing in the UNet and both text encoders."""
    events = []
    result = run_training(sdxl_config(output_dir=str(tmp_path / "bf16"), mixed_precision="bf16",
                                      gradient_checkpointing=True, train_text_encoder=True, max_steps=3,
                                      save_steps=0), emit=events.append)
    assert result.status == "finished"
    losses = [e.loss for e in events if e.kind == "step"]
    assert len(losses) == 3 and all(0 < loss < 10 for loss in losses)
    lora = load_file(str(result.run_dir / "pytorch_lora_weights.safetensors"))
    assert any(k.startswith("text_encoder_2.") for k in lora) and all(torch.isfinite(v).all() for v in lora.values())


def test_sdxl_frozen_text_encoders_run_once_per_caption_not_per_step(sdxl_config, toy_dataset, tmp_path,
                                                                       monkeypatch):
    from studio.data import read_metadata
    from studio.models.families import SDXL

    calls = []
    original = type(SDXL).encode

    def counting(self, components, captions, device):
        calls.append(len(captions))
        return original(self, components, captions, device)

    monkeypatch.setattr(type(SDXL), "encode", counting)
    result = run_training(sdxl_config(output_dir=str(tmp_path / "cached"), max_steps=6, save_steps=0,
                                      validation_steps=3, caption_dropout=0.3))
    assert result.status == "finished"
    captions = {record.prompt for record in read_metadata(toy_dataset / "metadata.csv").records}
    assert calls == [len(captions) + 1]  # each caption and the empty one (caption dropout), once, before step 1
