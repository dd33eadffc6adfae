"""Both LoRA formats reload in diffusers with the trained effect, at the trained scale (alpha != rank)."""
from __future__ import annotations

import hashlib
import json
import re
from io import BytesIO

import pytest
import torch

from studio.lora import (
    LoraFormatError,
    build_kohya_metadata,
    kohya_module_map,
    load_lora_file,
    read_lora_info,
    save_diffusers_lora,
    save_kohya_lora,
)

RANK, ALPHA = 4, 8
UNET_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]
TE_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj"]
TRAINING_VALUES = {
    "output_name": "star_lora", "session_id": 12345, "started_at": 1_700_000_000.5, "finished_at": 1_700_000_090.0,
    "seed": 0, "learning_rate": 1e-4, "unet_lr": 1e-4, "text_encoder_lr": 5e-5, "lr_scheduler": "cosine",
    "optimizer": "AdamW", "num_train_images": 20, "num_epochs": 10, "epoch": 10, "steps": 500,
    "network_dim": RANK, "network_alpha": ALPHA, "use_dora": False, "mixed_precision": "no", "resolution": 32,
    "base_model_name": "assets/toy-world", "noise_offset": 0.05, "min_snr_gamma": 5.0,
    "tag_frequency": {"1_star": {"star": 20, "red": 7}}, "dataset_dirs": {"1_star": {"n_repeats": 1, "img_count": 20}},
    "prediction_type": "v_prediction",
}


def _pipe(folder):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(str(folder), safety_checker=None, requires_safety_checker=False)


def _outputs(pipe):
    torch.manual_seed(7)
    ids = pipe.tokenizer(["a star"], padding="max_length", max_length=77, return_tensors="pt").input_ids
    latents = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        hidden = pipe.text_encoder(ids)[0]
        return {"text": hidden, "unet": pipe.unet(latents, 300, hidden.expand(2, -1, -1)).sample}


def _max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in a)


def _adapt(pipe, use_dora=False):
    """Add trainer-style adapters with random, non-zero lora_B; return the PEFT state dicts."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    for model, targets in ((pipe.unet, UNET_TARGETS), (pipe.text_encoder, TE_TARGETS)):
        model.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets, init_lora_weights="gaussian", use_dora=use_dora))
    generator = torch.Generator().manual_seed(11)
    with torch.no_grad():
        for name, param in list(pipe.unet.named_parameters()) + list(pipe.text_encoder.named_parameters()):
            if "lora_B" in name or "lora_magnitude_vector" in name:
                param.add_(0.2 * torch.randn(param.shape, generator=generator))
    return get_peft_model_state_dict(pipe.unet), get_peft_model_state_dict(pipe.text_encoder)


@pytest.fixture(scope="module")
def saved(tiny_sd_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("loras")
    pipe = _pipe(tiny_sd_dir)
    base = _outputs(pipe)
    unet_state, te_state = _adapt(pipe)
    adapted = _outputs(pipe)
    metadata = build_kohya_metadata(TRAINING_VALUES)
    diffusers_dir = root / "diffusers"
    save_diffusers_lora(diffusers_dir, unet_state, te_state, rank=RANK, alpha=ALPHA, unet_targets=UNET_TARGETS, te_targets=TE_TARGETS, metadata=metadata)
    kohya_file = save_kohya_lora(root / "star_lora.safetensors", unet_state, te_state, RANK, ALPHA, metadata)
    return {"base": base, "adapted": adapted, "diffusers": diffusers_dir, "kohya": kohya_file, "root": root}


def _loaded(tiny_sd_dir, source, weight=1.0):
    pipe = _pipe(tiny_sd_dir)
    pipe.load_lora_weights(str(source), adapter_name="lora")
    pipe.set_adapters(["lora"], [weight])
    return _outputs(pipe)


def test_diffusers_round_trip_keeps_alpha(saved, tiny_sd_dir):
    assert _max_diff(_loaded(tiny_sd_dir, saved["diffusers"]), saved["adapted"]) < 1e-5


def test_kohya_file_has_the_same_effect(saved, tiny_sd_dir):
    kohya_out = _loaded(tiny_sd_dir, saved["kohya"])
    assert (kohya_out["text"] - saved["adapted"]["text"]).abs().max().item() < 1e-5
    assert (kohya_out["unet"] - saved["adapted"]["unet"]).abs().max().item() < 1e-5
    assert _max_diff(kohya_out, _loaded(tiny_sd_dir, saved["diffusers"])) < 1e-5


@pytest.mark.parametrize("fmt", ["diffusers", "kohya"])
def test_weight_zero_is_the_base_and_one_is_not(saved, tiny_sd_dir, fmt):
    assert _max_diff(_loaded(tiny_sd_dir, saved[fmt], 0.0), saved["base"]) < 1e-5
    assert _max_diff(_loaded(tiny_sd_dir, saved[fmt], 1.0), saved["base"]) > 1e-3


def test_every_kohya_key_maps_to_a_real_module(saved, tiny_sd_dir):
    from safetensors.torch import load_file

    pipe = _pipe(tiny_sd_dir)
    mapping = kohya_module_map(pipe.unet, pipe.text_encoder)
    modules = {"lora_unet_": dict(pipe.unet.named_modules()), "lora_te_": dict(pipe.text_encoder.named_modules())}
    tensors = load_file(str(saved["kohya"]))
    names = {key.split(".", 1)[0] for key in tensors}
    targeted = [n for n in modules["lora_unet_"] if n.endswith(tuple("." + t for t in UNET_TARGETS))]
    targeted += [n for n in modules["lora_te_"] if n.endswith(tuple("." + t for t in TE_TARGETS))]
    assert len(names) == len(targeted) == 64  # 7 transformer blocks x 2 attentions x 4 + 2 CLIP layers x 4
    for name in names:
        prefix = "lora_unet_" if name.startswith("lora_unet_") else "lora_te_"
        assert name in mapping and mapping[name][1] in modules[prefix], name
        assert {f"{name}.lora_down.weight", f"{name}.lora_up.weight", f"{name}.alpha"} <= set(tensors)
        assert tensors[f"{name}.alpha"].item() == ALPHA
        if prefix == "lora_te_":  # the only SD 1.x text-encoder form ComfyUI maps
            assert re.fullmatch(r"lora_te_text_model_encoder_layers_\d+_(self_attn_(q|k|v|out)_proj|mlp_fc[12])", name)


def test_kohya_metadata_and_hashes_match_kohyas_algorithm(saved):
    from safetensors.torch import load_file, save

    _, metadata, _ = load_lora_file(saved["kohya"])
    assert all(isinstance(v, str) for v in metadata.values())
    assert metadata["ss_network_dim"] == "4" and metadata["ss_network_alpha"] == "8"
    assert metadata["ss_output_name"] == "star_lora" and metadata["ss_base_model_version"] == "sd_v1"
    assert metadata["ss_training_started_at"] == "1700000000.5" and metadata["ss_resolution"] == "(32, 32)"
    assert metadata["ss_sd_model_name"] == "toy-world" and metadata["modelspec.prediction_type"] == "v"
    assert json.loads(metadata["ss_tag_frequency"]) == TRAINING_VALUES["tag_frequency"]
    assert json.loads(metadata["ss_dataset_dirs"]) == TRAINING_VALUES["dataset_dirs"]
    assert metadata["modelspec.architecture"] == "stable-diffusion-v1/lora" and metadata["modelspec.resolution"] == "32x32"
    # kohya sd-scripts: serialise with only ss_* metadata, hash after the header / 64 KiB at 1 MiB.
    ss_only = {k: v for k, v in metadata.items() if k.startswith("ss_")}
    stream = BytesIO(save(load_file(str(saved["kohya"])), ss_only))
    header = int.from_bytes(stream.read(8), "little")
    stream.seek(header + 8)
    assert metadata["sshs_model_hash"] == hashlib.sha256(stream.read()).hexdigest()
    stream.seek(0x100000)
    assert metadata["sshs_legacy_hash"] == hashlib.sha256(stream.read(0x10000)).hexdigest()[:8]
    # The tensor bytes of the file itself are what A1111's additional-networks hash covers.
    raw = saved["kohya"].read_bytes()
    assert metadata["sshs_model_hash"] == hashlib.sha256(raw[8 + int.from_bytes(raw[:8], "little") :]).hexdigest()


def test_build_kohya_metadata_refuses_unknown_values():
    with pytest.raises(ValueError, match="unknown training value"):
        build_kohya_metadata({"learnig_rate": 1e-4})


def test_read_lora_info_for_both_formats(saved):
    for fmt in ("diffusers", "kohya"):
        info = read_lora_info(saved[fmt])
        assert info.format == fmt
        assert (info.rank, info.alpha) == (RANK, ALPHA)
        assert info.has_unet and info.has_text_encoder and not info.use_dora
        assert set(info.targets) == set(UNET_TARGETS + TE_TARGETS)
        assert info.output_name == "star_lora"
        assert info.metadata["ss_network_alpha"] == "8"
    state, metadata, fmt = load_lora_file(saved["diffusers"])
    assert fmt == "diffusers" and "lora_adapter_metadata" in metadata and state


def test_dora_saves_for_diffusers_and_is_refused_for_kohya(tiny_sd_dir, tmp_path):
    pipe = _pipe(tiny_sd_dir)
    unet_state, te_state = _adapt(pipe, use_dora=True)
    adapted = _outputs(pipe)
    save_diffusers_lora(tmp_path / "dora", unet_state, te_state, rank=RANK, alpha=ALPHA, use_dora=True, unet_targets=UNET_TARGETS, te_targets=TE_TARGETS)
    assert _max_diff(_loaded(tiny_sd_dir, tmp_path / "dora"), adapted) < 1e-5
    assert read_lora_info(tmp_path / "dora").use_dora
    with pytest.raises(ValueError, match="DoRA"):
        save_kohya_lora(tmp_path / "dora.safetensors", unet_state, te_state, RANK, ALPHA)


def test_unreadable_lora_files(tiny_sd_dir, tmp_path):
    from studio.models import export_single_file

    with pytest.raises(LoraFormatError, match="does not exist"):
        load_lora_file(tmp_path / "missing.safetensors")
    pickle_file = tmp_path / "old.pt"
    pickle_file.write_bytes(b"not read")
    with pytest.raises(LoraFormatError, match="safetensors"):
        load_lora_file(pickle_file)
    checkpoint = export_single_file(tiny_sd_dir, tmp_path / "base.safetensors")
    with pytest.raises(LoraFormatError, match="base-model checkpoint"):
        read_lora_info(checkpoint)
