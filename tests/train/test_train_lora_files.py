"""What a run leaves for users' tools: a DoRA run lists its WebUI file, every final and checkpoint WebUI file is
checked against ComfyUI's and A1111's key rules as it is written, and the run says what the check found."""
from __future__ import annotations

import pytest
from safetensors import safe_open

from studio.config import load_config
from studio.train import run_training
from studio.train.run_folder import RunFolder


def _keys(path):
    with safe_open(str(path), framework="pt") as handle:
        return set(handle.keys()), dict(handle.metadata() or {})


def test_a_dora_run_lists_its_webui_file_with_dora_scales(write_config, tmp_path):
    logs = []
    result = run_training(load_config(write_config(output_dir=str(tmp_path / "d"), max_steps=4, save_steps=2,
                                                   use_dora=True, train_text_encoder=True)),
                          emit=lambda e: logs.append(e.message) if e.kind in ("log", "warning") else None)
    assert result.webui_lora == result.run_dir / "tiny.safetensors" and result.webui_lora.is_file()
    assert result.diffusers_lora is None
    keys, metadata = _keys(result.webui_lora)
    modules = {k.rsplit(".", 2)[0] for k in keys if k.endswith(".lora_down.weight")}
    assert {f"{m}.dora_scale" for m in modules} <= keys
    assert len(modules) == 64 and sum(m.startswith("lora_te_") for m in modules) == 8  # 2 CLIP layers x 4
    assert metadata["ss_network_args"] == '{"use_dora": "True"}'
    said = [m for m in logs if m.startswith("tiny.safetensors loads in ComfyUI")]
    assert said == [f"tiny.safetensors loads in ComfyUI: {len(keys)}/{len(keys)} keys, alpha 8 on every module "
                    "(A1111 not checked: A1111 builds only the released SD 1.x / SDXL block layouts, and this base "
                    "model has another)"]
    checkpoint = RunFolder(result.run_dir).checkpoints()[-1]
    assert (checkpoint / "tiny.safetensors").is_file()
    assert not (checkpoint / "pytorch_lora_weights.safetensors").exists()


def test_plain_runs_keep_both_files_and_checkpoints_get_the_webui_file_too(write_config, tmp_path):
    result = run_training(load_config(write_config(output_dir=str(tmp_path / "p"), max_steps=4, save_steps=2)))
    assert result.diffusers_lora.is_file() and result.webui_lora.is_file()
    checkpoint = RunFolder(result.run_dir).checkpoints()[-1]
    assert (checkpoint / "tiny.safetensors").is_file() and (checkpoint / "pytorch_lora_weights.safetensors").is_file()
    _, metadata = _keys(result.diffusers_lora)
    assert metadata["ss_output_name"] == "tiny" and metadata["modelspec.architecture"] == "stable-diffusion-v1/lora"
    assert metadata["ss_network_alpha"] == "8.0" and metadata["ss_steps"] == "4"


def test_a_file_a_client_would_not_load_fails_the_save_and_keeps_the_previous_one(tmp_path, monkeypatch):
    from studio.lora import kohya, save_kohya_lora
    from studio.lora.formats import LoraCheckError
    from studio.lora.layout import BaseLayout

    layout = BaseLayout("sd1", {"down_blocks.0.attentions.0.proj_in": ("input_blocks.1.1.proj_in",
                                                                       __import__("torch").Size([8, 8]))})
    import torch

    state = {"down_blocks.0.attentions.0.proj_in.lora_A.weight": torch.ones(2, 8),
             "down_blocks.0.attentions.0.proj_in.lora_B.weight": torch.ones(8, 2)}
    target = save_kohya_lora(tmp_path / "x.safetensors", state, None, 2, 2.0, layout=layout)
    before = target.read_bytes()
    # A namer bug that writes a name no client knows: the save must fail, name the module and keep the old file.
    monkeypatch.setattr(kohya.KohyaNamer, "unet", lambda self, path: "lora_unet_" + path.replace(".", "__"))
    with pytest.raises(LoraCheckError, match=r"ComfyUI: lora_unet_down_blocks__0__attentions__0__proj_in\..* is not "
                                             r"loaded\); the previous file is kept"):
        save_kohya_lora(target, state, None, 2, 2.0, layout=layout)
    assert target.read_bytes() == before


def test_a_run_from_a_single_file_model_records_its_hashes_as_kohya_does(write_config, tiny_sd_dir, tmp_path):
    import hashlib

    from studio.models import export_single_file

    base = export_single_file(tiny_sd_dir, tmp_path / "base.safetensors")
    result = run_training(load_config(write_config(output_dir=str(tmp_path / "h"), max_steps=2, save_steps=2,
                                                   base_model=str(base))))
    data = base.read_bytes()
    for written in (result.webui_lora, result.diffusers_lora):
        _, metadata = _keys(written)
        assert metadata["ss_sd_model_name"] == "base.safetensors"
        assert metadata["ss_sd_model_hash"] == hashlib.sha256(data[0x100000:0x110000]).hexdigest()[:8]
        assert metadata["ss_new_sd_model_hash"] == hashlib.sha256(data).hexdigest()


def test_a_dora_webui_file_can_start_another_dora_run(write_config, tmp_path):
    from safetensors.torch import load_file

    first = run_training(load_config(write_config(output_dir=str(tmp_path / "a"), max_steps=2, save_steps=2,
                                                  use_dora=True)))
    more = run_training(load_config(write_config(output_dir=str(tmp_path / "b"), max_steps=1, save_steps=1,
                                                 use_dora=True, learning_rate=1e-9, init_lora=str(first.webui_lora))))
    before, after = load_file(str(first.webui_lora)), load_file(str(more.webui_lora))
    assert set(before) == set(after) and any(k.endswith(".dora_scale") for k in before)
    assert max((before[k] - after[k]).abs().max().item() for k in before) < 1e-5
