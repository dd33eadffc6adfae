"""The deterministic validation loss: scored on fixed images, timesteps and noise, logged beside the loss."""
from __future__ import annotations

import json

from studio.config import load_config
from studio.train import run_training
from studio.train.run_folder import RunFolder
from run_helpers import stop_after


def _validation(run_dir) -> dict[int, float]:
    scores = {r["step"]: r["val_loss"] for r in RunFolder(run_dir).loss_log() if "val_loss" in r}
    starts = json.loads((run_dir / "run.json").read_text()).get("validation_at_start", {})
    scores.update({int(step): value for step, value in starts.items()})
    return scores


def test_validation_loss_is_deterministic_and_repeats_exactly_on_resume(write_config, tmp_path):
    settings = dict(max_steps=6, save_steps=3, validation_steps=3)
    first = run_training(load_config(write_config(output_dir=str(tmp_path / "a"), **settings)))
    scores = _validation(first.run_dir)
    assert set(scores) == {0, 3, 6}
    stopped = run_training(load_config(write_config(output_dir=str(tmp_path / "b"), **settings)),
                           **stop_after(3))
    resumed = run_training(load_config(write_config(output_dir=str(tmp_path / "b"), resume="latest", **settings)))
    again = _validation(resumed.run_dir)
    assert again[3] == scores[3]  # scored again from the step-3 checkpoint: the same value
    assert again[6] == scores[6] and again[0] == scores[0]
    assert stopped.run_dir == resumed.run_dir


def test_validation_loss_falls_while_the_lora_learns(write_config, tmp_path):
    result = run_training(load_config(write_config(output_dir=str(tmp_path / "v"), max_steps=30, save_steps=0,
                                                   validation_steps=10, learning_rate=2e-3)))
    scores = _validation(result.run_dir)
    assert scores[30] < scores[0]


def test_validation_split_holds_images_out_of_training(write_config, tmp_path):
    from studio.train.setup import load_data

    config = load_config(write_config(validation_split=0.25))
    data = load_data(config)
    assert len(data.images) == 6 and len(data.validation_images) == 2
    trained = {r.filename for r in data.images.records}
    held = {r.filename for r in data.validation_images.records}
    assert not trained & held


def test_samples_are_drawn_with_and_without_the_trigger_and_change_nothing_learned(write_config, tmp_path):
    from safetensors.torch import load_file
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    settings = dict(max_steps=6, save_steps=0)
    plain = run_training(load_config(write_config(output_dir=str(tmp_path / "plain"), **settings)))
    events = []
    sampled = run_training(
        load_config(write_config(output_dir=str(tmp_path / "sampled"), sample_steps=3, trigger_word="zq",
                                 validation_prompts=["a red zq circle on a white background"], **settings)),
        emit=events.append,
    )
    for step in (3, 6):
        names = sorted(p.name for p in (sampled.run_dir / "samples" / f"step-{step:06d}").glob("*.png"))
        assert names == ["00-trigger-a-red-zq-circle-on-a-white-background.png",
                         "01-no-trigger-a-red-circle-on-a-white-background.png"]
    assert [e.step for e in events if e.kind == "sample"] == [3, 6]
    tensorboard = EventAccumulator(str(sampled.run_dir / "logs"), size_guidance={"images": 0})
    tensorboard.Reload()
    assert any(tag.startswith("samples/") for tag in tensorboard.Tags()["images"])
    a = load_file(str(plain.run_dir / "pytorch_lora_weights.safetensors"))
    b = load_file(str(sampled.run_dir / "pytorch_lora_weights.safetensors"))
    assert all((a[k] == b[k]).all() for k in a)
