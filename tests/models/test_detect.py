"""The family of a base model, read from its files before anything loads (the studio shows it), and the
prediction type a user sets."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from studio.models import ModelLoadError, describe_model, load_components
from studio.models.single_file import export_single_file

from .sdxl_fixtures import tiny_sdxl_pipeline


def test_family_of_folders_single_files_and_hub_ids(tiny_sd_dir, tiny_sdxl_dir, tmp_path, monkeypatch):
    assert describe_model("").line() == "Model family: **SD 1.x** · built-in toy world · v-prediction"
    assert describe_model(str(tiny_sd_dir)).family.name == "sd1"
    sdxl = describe_model(str(tiny_sdxl_dir))
    assert (sdxl.family.name, sdxl.kind, sdxl.v_prediction) == ("sdxl", "folder", False)
    vpred = export_single_file(tiny_sdxl_pipeline(), tmp_path / "noob-vpred.safetensors", v_pred=True)
    described = describe_model(str(vpred))
    assert described.line() == "Model family: **SDXL** · single file · v-prediction"
    sd1_file = export_single_file(str(tiny_sd_dir), tmp_path / "sd1.safetensors")
    assert describe_model(str(sd1_file)).family.name == "sd1"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    hub = describe_model("someone/not-cached")
    assert hub.family is None and "known once someone/not-cached is downloaded" in hub.line()


def test_what_is_not_a_model_is_said_before_loading(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(ModelLoadError, match="notes.txt is not a model file"):
        describe_model(str(notes))
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(1)}, str(lora))
    with pytest.raises(ModelLoadError, match="LoRA file, not a base model"):
        describe_model(str(lora))


def test_prediction_type_setting_overrides_the_model(tiny_sdxl_dir):
    assert load_components(str(tiny_sdxl_dir)).noise_scheduler.config.prediction_type == "epsilon"
    components = load_components(str(tiny_sdxl_dir), prediction_type="v_prediction")
    assert components.noise_scheduler.config.prediction_type == "v_prediction"
    assert components.family.name == "sdxl" and components.text_encoder_2 is not None
