"""TrainConfig itself: defaults, coercion, limits, module-name repair, derived values and path notes."""
from __future__ import annotations

import dataclasses

import pytest

from studio.config import ConfigError, TrainConfig, check_paths, field_help, fields_by_section
from studio.config.schema import SECTIONS


def problems_of(**values) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        TrainConfig(**values)
    return caught.value.problems


def test_defaults_are_valid_and_derived_values_follow_them():
    config = TrainConfig()
    assert config.effective_alpha() == 8.0
    assert config.effective_text_encoder_lr() == config.learning_rate
    assert config.resolved_metadata_path() == ""
    assert config.resolved_output_name() == "output"
    assert config.target_modules == ["to_q", "to_k", "to_v", "to_out.0"]
    assert config.notes == []


def test_every_field_has_help_and_belongs_to_exactly_one_section():
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    grouped = fields_by_section()
    assert list(grouped) == list(SECTIONS)
    assert sorted(sum(grouped.values(), [])) == sorted(names)
    assert all(field_help(name) for name in names)
    with pytest.raises(KeyError):
        field_help("lora_rnk")


def test_yaml_style_strings_become_numbers_and_ints_are_accepted_for_floats():
    config = TrainConfig(learning_rate="2e-4", lora_alpha=16, noise_offset="0.05", max_steps="1e3")
    assert config.learning_rate == pytest.approx(0.0002) and isinstance(config.learning_rate, float)
    assert config.lora_alpha == 16.0 and isinstance(config.lora_alpha, float)
    assert config.noise_offset == pytest.approx(0.05)
    assert config.max_steps == 1000 and isinstance(config.max_steps, int)


def test_yaml_no_for_mixed_precision_means_no():
    assert TrainConfig(mixed_precision=False).mixed_precision == "no"


@pytest.mark.parametrize(
    "values, key",
    [
        ({"lora_rank": 0}, "lora_rank"),
        ({"lora_rank": "abc"}, "lora_rank"),
        ({"learning_rate": -1e-4}, "learning_rate"),
        ({"learning_rate": 0}, "learning_rate"),
        ({"learning_rate": "abc"}, "learning_rate"),
        ({"mixed_precision": "fp8"}, "mixed_precision"),
        ({"epochs": 0}, "epochs"),
        ({"lr_scheduler": "cosine_annealing"}, "lr_scheduler"),
        ({"bucketing": "maybe"}, "bucketing"),
        ({"caption_dropout": 1.0}, "caption_dropout"),
        ({"batch_size": 2.5}, "batch_size"),
        ({"output_name": "my lora/v1"}, "output_name"),
        ({"target_modules": "to_q, banana"}, "target_modules"),
        ({"optimizer": "lion"}, "optimizer"),
    ],
)
def test_bad_values_are_refused_with_the_key_named(values, key):
    problems = problems_of(**values)
    assert len(problems) == 1
    assert key in problems[0]


def test_all_problems_are_reported_together():
    problems = problems_of(lora_rank=0, learning_rate=-1, mixed_precision="fp8", epochs=0, resolution=30)
    assert len(problems) == 5
    resolution = next(p for p in problems if p.startswith("resolution"))
    assert "24" in resolution and "32" in resolution  # the nearest valid values are suggested


def test_text_encoder_names_in_target_modules_are_mapped_with_a_note():
    config = TrainConfig(target_modules=["q_proj", "k_proj", "v_proj", "out_proj"])
    assert config.target_modules == ["to_q", "to_k", "to_v", "to_out.0"]
    assert len(config.notes) == 4 and "'q_proj'" in config.notes[0] and "'to_q'" in config.notes[0]


def test_unet_names_in_text_encoder_modules_are_mapped_and_duplicates_dropped():
    config = TrainConfig(text_encoder_target_modules=["to_q", "q_proj", "fc1"])
    assert config.text_encoder_target_modules == ["q_proj", "fc1"]
    assert any("twice" in note for note in config.notes)


def test_unknown_module_gets_the_nearest_valid_name():
    (problem,) = problems_of(target_modules=["to_qq"])
    assert "'to_qq'" in problem and "did you mean 'to_q'" in problem


def test_module_paths_and_comma_separated_text_are_accepted():
    config = TrainConfig(target_modules="attn2.to_k, ff.net.2,proj_in")
    assert config.target_modules == ["attn2.to_k", "ff.net.2", "proj_in"]
    assert problems_of(target_modules=["foo.to_k"])


def test_output_name_falls_back_to_a_safe_folder_name():
    assert TrainConfig(output_dir="./output/ink_painting_v1").resolved_output_name() == "ink_painting_v1"
    assert TrainConfig(output_dir="./output/my style/").resolved_output_name() == "my_style"
    assert TrainConfig(output_dir="./output/水墨").resolved_output_name() == "水墨"
    assert TrainConfig(output_dir=".").resolved_output_name() == "lora"
    assert TrainConfig(output_name="final-v2").resolved_output_name() == "final-v2"


def test_alpha_and_metadata_defaults_follow_other_settings():
    config = TrainConfig(lora_rank=16, train_data_dir="data/x", text_encoder_lr=5e-5)
    assert config.effective_alpha() == 16.0
    assert config.resolved_metadata_path().replace("\\", "/") == "data/x/metadata.csv"
    assert config.effective_text_encoder_lr() == 5e-5


def test_validate_catches_edits_made_after_construction():
    config = TrainConfig()
    config.lora_rank = 0
    with pytest.raises(ConfigError, match="lora_rank"):
        config.validate()


def test_resolve_paths_makes_local_paths_absolute_and_leaves_model_ids(tmp_path):
    config = TrainConfig(train_data_dir="data", base_model="org/model", resume="latest", output_dir="out")
    resolved = config.resolve_paths(tmp_path)
    assert resolved.train_data_dir == str((tmp_path / "data").resolve())
    assert resolved.output_dir == str((tmp_path / "out").resolve())
    assert resolved.base_model == "org/model" and resolved.resume == "latest"


def test_check_paths_lists_missing_paths_as_notes(tmp_path):
    (tmp_path / "imgs").mkdir()
    (tmp_path / "model.safetensors").write_bytes(b"")
    config = TrainConfig(train_data_dir="imgs", base_model="model.safetensors", init_lora="old.safetensors")
    notes = check_paths(config, relative_to=tmp_path)
    assert len(notes) == 2
    assert any("metadata" in note and "metadata.csv" in note for note in notes)
    assert any(note.startswith("missing path: init_lora") for note in notes)
    (tmp_path / "imgs" / "metadata.csv").write_text("file_name,text\n")
    (tmp_path / "old.safetensors").write_bytes(b"")
    assert check_paths(config, relative_to=tmp_path) == []


def test_a_hub_id_as_base_model_config_stays_a_hub_id(tmp_path):
    """A FLUX.1 transformer file takes its text encoders and VAE from a folder or a hub id."""
    from studio.config import check_paths

    config = TrainConfig(base_model="flux1-dev.safetensors", base_model_config="black-forest-labs/FLUX.1-schnell")
    resolved = config.resolve_paths(tmp_path)
    assert resolved.base_model_config == "black-forest-labs/FLUX.1-schnell"
    assert resolved.base_model == str(tmp_path / "flux1-dev.safetensors")
    assert not any("base_model_config" in note for note in check_paths(config, tmp_path))
    local = TrainConfig(base_model_config="./FLUX.1-schnell").resolve_paths(tmp_path)
    assert local.base_model_config == str(tmp_path / "FLUX.1-schnell")
    assert any("base_model_config" in note for note in check_paths(local, tmp_path))
