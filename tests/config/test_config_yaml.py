"""YAML in and out: the seed configs, error messages with file and line, overrides, round trips, atomic saves."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from studio.config import (
    ConfigError, TrainConfig, check_paths, config_from_dict, config_to_dict, dump_config, list_presets, load_config,
    save_config,
)

SEEDS = Path(__file__).parent / "seed_configs"
SEED_FILES = sorted(SEEDS.glob("*.yaml"))


def write(tmp_path: Path, text: str, name: str = "my.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(source, overrides=()) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(source, overrides)
    return caught.value


def test_all_six_seed_configs_are_present():
    assert {p.stem for p in SEED_FILES} == {
        "seed000_nested", "seed001_style", "seed001_ink", "seed002_cyberpunk", "seed003_nested", "seed004_flat"}


@pytest.mark.parametrize("path", SEED_FILES, ids=lambda p: p.stem)
def test_seed_config_loads_and_its_missing_paths_are_notes(path, tmp_path):
    config = load_config(path)
    notes = check_paths(config, relative_to=tmp_path)
    assert any(note.startswith("missing path: base_model") for note in notes)
    if config.train_data_dir:
        assert any(note.startswith("missing path: train_data_dir") for note in notes)


def test_seed000_nested_values_and_yaml_float_string():
    config = load_config(SEEDS / "seed000_nested.yaml")
    assert config.base_model == "./models/Stable-diffusion/v1-5-pruned.safetensors"
    assert (config.lora_rank, config.use_dora, config.batch_size, config.epochs) == (8, False, 4, 10)
    assert config.learning_rate == 0.0002  # PyYAML reads 2e-4 as the string "2e-4"
    assert (config.save_steps, config.mixed_precision) == (100, "fp16")


def test_seed003_maps_text_encoder_module_names_for_the_unet():
    config = load_config(SEEDS / "seed003_nested.yaml")
    assert config.target_modules == ["to_q", "to_v"]
    assert config.lora_alpha == 16.0
    assert any("line 6" in note and "q_proj" in note for note in config.notes)


def test_unknown_key_names_key_line_and_suggestion(tmp_path):
    path = write(tmp_path, "train_data_dir: data\nbatch_size: 2\nepochs: 5\nlora_rnk: 8\n")
    error = error_of(path)
    assert error.problems == [f"{path} line 4: unknown key 'lora_rnk' — did you mean 'lora_rank'?"]


def test_unknown_key_inside_a_section_and_unknown_section(tmp_path):
    path = write(tmp_path, "model_config:\n  lora_rank: 8\n  learnig_rate: 1e-4\ntrainig_config:\n  epochs: 3\n")
    problems = error_of(path).problems
    assert len(problems) == 2
    assert "line 3" in problems[0] and "in model_config" in problems[0] and "'learning_rate'" in problems[0]
    assert "line 4" in problems[1] and "'training_config'" in problems[1]


def test_other_trainers_names_point_to_ours(tmp_path):
    (problem,) = error_of(write(tmp_path, "network_dim: 16\n")).problems
    assert "'lora_rank'" in problem


def test_value_errors_carry_the_line_and_are_collected(tmp_path):
    path = write(tmp_path, "lora_rank: 0\ntraining_config:\n  learning_rate: -1\n  mixed_precision: fp8\n")
    problems = error_of(path).problems
    assert [p.split(":")[0] for p in problems] == [f"{path} line 1", f"{path} line 3", f"{path} line 4"]
    assert "lora_rank" in problems[0] and "learning_rate" in problems[1] and "mixed_precision" in problems[2]


def test_same_key_in_flat_and_nested_form_with_different_values(tmp_path):
    path = write(tmp_path, "lora_rank: 8\nmodel_config:\n  lora_rank: 16\n")
    (problem,) = error_of(path).problems
    assert "line 3" in problem and "line 1" in problem and "lora_rank" in problem and "in model_config" in problem


def test_same_key_twice_with_the_same_value_in_another_spelling_is_fine(tmp_path):
    path = write(tmp_path, "learning_rate: 2e-4\ntraining_config:\n  learning_rate: 0.0002\n")
    assert load_config(path).learning_rate == 0.0002


def test_tab_indentation_is_explained(tmp_path):
    (problem,) = error_of(write(tmp_path, "model_config:\n\tlora_rank: 8\n")).problems
    assert "line 2" in problem and "tab" in problem and "spaces" in problem


def test_syntax_error_names_the_line(tmp_path):
    (problem,) = error_of(write(tmp_path, "lora_rank: 8\ntarget_modules: [to_q\nepochs: 3\n")).problems
    assert "my.yaml line 3" in problem and "YAML syntax error" in problem and "line 2" in problem


def test_alias_bomb_is_refused_quickly(tmp_path):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, 9):
        previous, current = chr(ord("a") + level - 1), chr(ord("a") + level)
        lines.append(f"{current}: &{current} [" + ", ".join([f"*{previous}"] * 9) + "]")
    lines.append("validation_prompts: *i")
    path = write(tmp_path, "\n".join(lines) + "\n")
    started = time.perf_counter()
    (problem,) = error_of(path).problems
    assert time.perf_counter() - started < 2.0
    assert "line 10" in problem and "aliases" in problem


def test_self_referencing_alias_is_refused(tmp_path):
    (problem,) = error_of(write(tmp_path, "validation_prompts: &a [*a]\n")).problems
    assert "line 1" in problem


@pytest.mark.parametrize(
    "text, expected",
    [("- lora_rank\n- 8\n", "a list"), ("just some words\n", "a single value"), ("", "is empty"),
     ("# only a comment\n", "is empty"), ("lora_rank: 8\n---\nepochs: 2\n", "more than one YAML document")],
)
def test_files_that_are_not_one_mapping(tmp_path, text, expected):
    (problem,) = error_of(write(tmp_path, text)).problems
    assert expected in problem and "my.yaml" in problem


def test_missing_file_is_a_config_error(tmp_path):
    (problem,) = error_of(tmp_path / "nope.yaml").problems
    assert "nope.yaml" in problem and "not found" in problem


def test_overrides_are_parsed_as_yaml_and_win_over_the_file(tmp_path):
    path = write(tmp_path, "lora_rank: 8\nepochs: 10\n")
    config = load_config(path, [
        "lora_rank=16", "target_modules=[to_q,to_v]", "learning_rate=3e-4", "max_steps=", "mixed_precision=no",
        "training_config.epochs=12", "train_text_encoder=true", "validation_prompts=[a red zq star]",
    ])
    assert (config.lora_rank, config.target_modules, config.learning_rate) == (16, ["to_q", "to_v"], 3e-4)
    assert (config.max_steps, config.mixed_precision, config.epochs) == (None, "no", 12)
    assert config.train_text_encoder is True and config.validation_prompts == ["a red zq star"]


def test_bad_overrides_are_reported_like_file_keys():
    (problem,) = error_of({}, ["lora_rnk=16"]).problems
    assert problem == "--set lora_rnk=16: unknown key 'lora_rnk' — did you mean 'lora_rank'?"
    assert "key=value" in error_of({}, ["lora_rank"]).problems[0]
    assert error_of({}, ["epochs=0"]).problems == ["--set epochs=0: epochs must be at least 1 (got 0)"]


def test_base_config_supplies_missing_settings(tmp_path):
    base = TrainConfig(lora_rank=32, epochs=3)
    config = load_config(write(tmp_path, "epochs: 7\n"), base=base)
    assert (config.lora_rank, config.epochs) == (32, 7)


def test_dict_conversion_for_the_form():
    config = TrainConfig(lora_rank=12, validation_prompts=["a red circle on a white background"])
    values = config_to_dict(config)
    assert list(values)[:3] == ["train_data_dir", "metadata_path", "resolution"]
    values["validation_prompts"].append("edited")
    assert config.validation_prompts == ["a red circle on a white background"]
    assert config_from_dict(config_to_dict(config)) == config
    assert config_from_dict({"model_config": {"lora_rank": 4}, "max_steps": ""}).lora_rank == 4
    with pytest.raises(ConfigError, match="lora_rnk"):
        config_from_dict({"lora_rnk": 4})


def round_trip(config: TrainConfig, folder: Path) -> TrainConfig:
    return load_config(save_config(config, folder / "config.yaml"))


def test_round_trip_defaults_and_awkward_values(tmp_path):
    assert round_trip(TrainConfig(), tmp_path) == TrainConfig()
    awkward = TrainConfig(
        validation_prompts=["a, b: c [x] #y 'q' \"z\"", "水墨 painting", "yes"], lora_alpha=2.5e-5,
        output_name="v1.2", base_model="no", resume="latest", min_snr_gamma=5, max_steps=10,
    )
    assert round_trip(awkward, tmp_path) == awkward


@pytest.mark.parametrize("preset", list_presets(), ids=lambda p: f"{p.kind}-{p.name}")
def test_round_trip_every_preset(preset, tmp_path):
    config = config_from_dict(preset.values)
    assert round_trip(config, tmp_path) == config


def test_saved_file_is_flat_grouped_and_commented():
    text = dump_config(TrainConfig())
    assert "# === Data" in text and "# === Output" in text
    assert "\nmodel_config:" not in text and "\n  " not in text  # flat: nothing indented
    assert text.index("train_data_dir:") < text.index("lora_rank:") < text.index("output_dir:")
    assert "mixed_precision: 'no'" in text  # quoted, or YAML would read it back as false


def test_save_is_atomic_and_keeps_a_backup(tmp_path):
    path = tmp_path / "config.yaml"
    save_config(TrainConfig(lora_rank=4), path)
    save_config(TrainConfig(lora_rank=16), path)
    assert load_config(path).lora_rank == 16
    assert load_config(tmp_path / "config.yaml.bak").lora_rank == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml", "config.yaml.bak"]


def test_saving_an_invalid_config_leaves_the_file_alone(tmp_path):
    path = save_config(TrainConfig(lora_rank=4), tmp_path / "config.yaml")
    before = path.read_text()
    config = TrainConfig()
    config.lora_rank = 0
    with pytest.raises(ConfigError, match="lora_rank"):
        save_config(config, path)
    assert path.read_text() == before
