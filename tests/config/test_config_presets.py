"""Presets: the shipped files, their advice and values, and applying them in a predictable order."""
from __future__ import annotations

from pathlib import Path

import pytest

from studio.config import ConfigError, TrainConfig, apply_presets, list_presets, load_config
from studio.config.presets import get_preset, presets_root


def by_name(kind: str) -> dict:
    return {preset.name: preset for preset in list_presets(kind)}


def test_rank_presets_in_size_order_with_advice():
    presets = list_presets("rank")
    assert [p.name for p in presets] == ["rank-4", "rank-8", "rank-12", "rank-16", "rank-32"]
    assert [p.values["lora_rank"] for p in presets] == [4, 8, 12, 16, 32]
    assert all(p.values["lora_alpha"] is None for p in presets)  # alpha follows the rank
    assert "50" in presets[0].description and "overfit" in presets[-1].description


def test_epochs_presets_turn_max_steps_off():
    presets = list_presets("epochs")
    assert [(p.name, p.values["epochs"], p.values["max_steps"]) for p in presets] == [
        ("short", 5, None), ("standard", 10, None), ("long", 15, None)]
    assert all("1e-4" in p.description for p in presets)


def test_task_presets_carry_the_seed_advice():
    tasks = by_name("task")
    assert set(tasks) == {"style", "character", "concept"}
    assert {k: tasks["style"].values[k] for k in ("lora_rank", "learning_rate", "epochs")} == \
        {"lora_rank": 16, "learning_rate": 1e-4, "epochs": 15}
    character = tasks["character"].values
    assert (character["lora_rank"], character["learning_rate"], character["epochs"], character["save_steps"]) == \
        (12, 2e-4, 12, 100)
    assert tasks["concept"].values["lora_rank"] == 8 and tasks["concept"].values["train_text_encoder"] is True
    assert tasks["concept"].values["prior_count"] == tasks["character"].values["prior_count"] == 100
    assert "prior_count" not in tasks["style"].values  # a style should change every prompt: no priors


def test_demo_presets_target_the_toy_model():
    star = by_name("demo")["demo-star"].values
    assert star["train_data_dir"] == "assets/demo-datasets/star" and star["base_model"] == ""
    assert (star["resolution"], star["batch_size"], star["lora_rank"], star["learning_rate"]) == (32, 8, 16, 3e-3)
    assert (star["max_steps"], star["save_steps"], star["train_text_encoder"]) == (1700, 250, True)
    assert (star["prior_count"], star["trigger_word"]) == (20, "zq")  # priors keep the star on "zq"
    assert star["output_dir"] == "./output/demo-star"
    assert by_name("demo")["demo-striped"].values["train_data_dir"] == "assets/demo-datasets/striped"


def test_explicit_rank_and_epochs_win_over_the_task():
    config = apply_presets(TrainConfig(batch_size=2), task="style", rank=8, epochs="short")
    assert (config.lora_rank, config.epochs, config.learning_rate, config.batch_size) == (8, 5, 1e-4, 2)
    assert config.task == "style"
    assert apply_presets(None, task="character").task == "character"


def test_rank_can_be_named_several_ways():
    assert {apply_presets(rank=r).lora_rank for r in (16, "16", "rank-16", "Rank16")} == {16}


def test_unknown_preset_suggests_the_nearest():
    with pytest.raises(ConfigError, match="did you mean 'character'"):
        apply_presets(task="charactor")
    with pytest.raises(ConfigError, match="rank-8"):
        get_preset("rank", 7)
    with pytest.raises(ConfigError, match="kind"):
        list_presets("size")


def test_a_preset_file_loads_as_a_config_too():
    config = load_config(presets_root() / "demo" / "demo-star.yaml")
    assert config.max_steps == 1700 and config.output_dir == "./output/demo-star"


def make_presets(tmp_path: Path, text: str) -> Path:
    (tmp_path / "task").mkdir()
    (tmp_path / "task" / "broken.yaml").write_text(text, encoding="utf-8")
    return tmp_path


def test_unknown_key_in_a_preset_names_the_file(tmp_path):
    root = make_presets(tmp_path, "description: a test preset\nlora_rank: 8\nepoch: 3\n")
    with pytest.raises(ConfigError) as caught:
        list_presets("task", root=root)
    (problem,) = caught.value.problems
    assert "broken.yaml line 3" in problem and "'epochs'" in problem


def test_preset_values_are_validated_and_need_a_description(tmp_path):
    root = make_presets(tmp_path, "lora_rank: 0\n")
    with pytest.raises(ConfigError) as caught:
        list_presets("task", root=root)
    assert len(caught.value.problems) == 2
    assert any("description" in p for p in caught.value.problems)
    assert any("broken.yaml line 1" in p and "lora_rank" in p for p in caught.value.problems)


def test_a_model_preset_before_a_demo_preset_changes_nothing_the_demo_trains():
    """The demos are complete recipes: picking the SDXL (or SD 1.x) model preset as well must not turn on bf16,
    gradient accumulation or another learning rate behind them."""
    from studio.config import apply_presets, list_presets

    demos = [p.name for p in list_presets("demo")]
    assert {"demo-star", "demo-star-sdxl"} <= set(demos)
    for demo in demos:
        alone = apply_presets(demo=demo)
        for model in [p.name for p in list_presets("model")]:
            assert apply_presets(model=model, demo=demo) == alone, (model, demo)


def _report(image_count: int | None = 20, **names):
    from studio.config.preset_report import explain_presets
    from studio.config.presets import apply_chosen, chosen_presets

    chosen = chosen_presets(**names)
    return explain_presets(TrainConfig(), chosen, apply_chosen(TrainConfig(), chosen), image_count)


def test_a_combination_says_which_preset_set_each_setting_what_it_overrode_and_the_advice_it_breaks():
    """rank-8 + short over demo-star: rank 8 and 5 epochs win, demo-star's 3e-3 stays without its 1700 steps."""
    report = _report(demo="demo-star", rank="rank-8", epochs="short")
    origins = {origin.setting: origin for origin in report.origins}
    assert origins["lora_rank"].chain == (("demo-star", 16), ("rank-8", 8)) and origins["lora_rank"].now == 8
    assert origins["lora_rank"].overridden == (("demo-star", 16),) and origins["lora_rank"].before == 8
    assert (origins["max_steps"].set_by, origins["max_steps"].overridden) == ("short", (("demo-star", 1700),))
    assert (origins["learning_rate"].set_by, origins["learning_rate"].overridden) == ("demo-star", ())
    assert report.steps == 15  # 20 pictures + 10 % priors in batches of 8: 3 steps per epoch, 5 epochs
    steps, rate = report.warnings
    assert "demo-star advises at least 1700 training steps" in steps and "short replaced its training length" in steps
    assert "trains about 15 (5 epochs × 3 steps of batch 8 over 20 pictures)" in steps
    assert rate == ("short advises learning_rate at most 0.0003 (above 3e-4 training tends to oscillate), but it is "
                    "0.003, set by demo-star.")


def test_each_demo_alone_and_a_task_with_its_usual_rank_and_length_break_no_advice():
    for demo in by_name("demo"):
        assert _report(demo=demo).warnings == [], demo
    assert _report(task="style", rank="rank-16", epochs="long").warnings == []
    assert _report(None, demo="demo-star", epochs="short").steps is None  # epochs over an unknown dataset: no guess


def test_advice_in_a_preset_file_is_read_and_checked(tmp_path):
    root = make_presets(tmp_path, "description: a test preset\nadvice:\n  learning_rate: {max: 3e-4, why: too fast}\n"
                                  "  steps: {min: 100}\n")
    (preset,) = list_presets("task", root=root)
    assert [(a.setting, a.low, a.high, a.why) for a in preset.advice] == [
        ("learning_rate", None, 3e-4, "too fast"), ("steps", 100.0, None, "")]
    (tmp_path / "task" / "broken.yaml").write_text(
        "description: a test preset\nadvice:\n  learnin_rate: {max: 1}\n  epochs: {max: many}\n  steps: [1, 2]\n",
        encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        list_presets("task", root=root)
    problems = caught.value.problems
    assert len(problems) == 3 and all("broken.yaml: advice for" in problem for problem in problems)
    assert "'learnin_rate': name a numeric setting" in problems[0] and "must be numbers" in problems[1]


def test_flux_model_presets_set_the_flux_recipe():
    """flux-dev and flux-schnell: rank 16, 1e-4, bf16 compute with an fp8 base and checkpointing at 512 px, the
    diffusers FLUX example's target set; dev tells its transformer guidance 1.0, schnell samples in 4 steps unguided."""
    from studio.config.modules import FLUX_DEFAULT_MODULES

    models = by_name("model")
    assert {"sd1", "sdxl", "flux-dev", "flux-schnell"} <= set(models)
    for name in ("flux-dev", "flux-schnell"):
        preset = models[name]
        values = preset.values
        assert (values["lora_rank"], values["lora_alpha"], values["learning_rate"], values["resolution"]) == \
            (16, 16, 1e-4, 512)
        assert (values["mixed_precision"], values["base_weights"], values["gradient_checkpointing"]) == \
            ("bf16", "fp8", True)
        assert values["target_modules"] == list(FLUX_DEFAULT_MODULES) and values["train_text_encoder"] is False
        assert all(word in preset.description for word in ("1024", "base_model_config", "nf4", "24 GB"))
        config = apply_presets(model=name)
        assert config.target_modules == list(FLUX_DEFAULT_MODULES) and _report(model=name).warnings == []
    assert models["flux-dev"].values["guidance_scale"] == 1.0 and "flow_shift 3.0" in models["flux-dev"].description
    schnell = models["flux-schnell"].values
    assert (schnell["sample_guidance_scale"], schnell["sample_inference_steps"]) == (1.0, 4)
    assert "guidance_scale" not in schnell  # schnell has no guidance embedding to tell
