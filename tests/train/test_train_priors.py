"""Prior (regularisation) images: mixed in at a ratio, weighted in the loss, generated once and cached."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch

from studio.config import load_config
from studio.train import run_training
from studio.train.priors import PriorMixSampler, prior_prompts


def test_each_epoch_sees_every_training_image_and_its_share_of_priors():
    buckets = [(32, 32)] * 6 + [(32, 32)] * 10 + [(40, 24)] * 2  # 6 training pictures, 12 priors in 2 buckets
    sampler = PriorMixSampler(buckets, concept_count=6, batch_size=4, seed=1, repeats=2, ratio=0.5)
    seen_priors = set()
    for epoch in range(5):
        batches = sampler.batches_for_epoch(epoch)
        assert len(batches) == len(sampler)  # the same number of steps every epoch
        counts = Counter(i for batch in batches for i in batch)
        assert all(counts[i] == 2 for i in range(6))  # every training picture, `repeats` times
        priors = [i for i in counts.elements() if i >= 6]
        assert len(priors) == 6  # ratio 0.5 of 12 training items
        assert all(len({buckets[i] for i in batch}) == 1 for batch in batches)  # one bucket per batch
        seen_priors.update(priors)
    assert seen_priors == set(range(6, 18))  # the priors are cycled: all of them come round
    assert sampler.batches_for_epoch(3) == PriorMixSampler(
        buckets, 6, 4, seed=1, repeats=2, ratio=0.5).batches_for_epoch(3)


def test_prior_prompts_drop_the_trigger_or_use_the_class_prompt(write_config):
    config = load_config(write_config(prior_count=5, trigger_word="zq"))
    captions = ["a red zq star on a white background", "a blue zq star on a black background"]
    assert prior_prompts(config, captions) == ["a red star on a white background",
                                               "a blue star on a black background"] * 2 + [
                                                  "a red star on a white background"]
    config = load_config(write_config(prior_count=2, prior_prompt="a star"))
    assert prior_prompts(config, captions) == ["a star", "a star"]


def test_generated_priors_need_a_class_prompt_or_a_trigger(write_config, tmp_path):
    with pytest.raises(ValueError, match="prior_count: generated prior images need a prior_prompt"):
        run_training(load_config(write_config(prior_count=4)))
    assert not (tmp_path / "output").exists()  # refused before any folder was made


def test_a_prior_picture_counts_its_loss_weight(write_config):
    from studio.train.loop import diffusion_loss
    from studio.train.setup import build_setup

    setup = build_setup(load_config(write_config()))
    latents = torch.randn(2, 4, 4, 4)
    hidden = setup.text(["a red circle on a white background"] * 2)
    with torch.no_grad():
        plain = diffusion_loss(setup, latents, hidden, torch.Generator().manual_seed(0), 2, slice(0, 2))
        first = diffusion_loss(setup, latents[:1], hidden[:1], torch.Generator().manual_seed(0), 2, slice(0, 1))
        weighted = diffusion_loss(setup, latents, hidden, torch.Generator().manual_seed(0), 2, slice(0, 2),
                                  torch.tensor([1.0, 0.0]))
        ones = diffusion_loss(setup, latents, hidden, torch.Generator().manual_seed(0), 2, slice(0, 2),
                              torch.ones(2))
    assert torch.allclose(ones, plain)
    assert torch.allclose(weighted, first / 2)  # the prior's half of the mean is gone


def test_priors_are_drawn_once_cached_and_trained_on(write_config, tmp_path):
    events = []
    settings = dict(prior_count=3, trigger_word="red", prior_ratio=1.0, max_steps=4, save_steps=0)
    first = run_training(load_config(write_config(**settings)), emit=events.append)
    folders = list((tmp_path / "output" / "priors").iterdir())
    assert len(folders) == 1 and not folders[0].name.endswith(".partial")
    pictures = sorted(folders[0].glob("prior_*.png"))
    assert len(pictures) == 3
    captions = (folders[0] / "metadata.csv").read_text()
    assert "red" not in captions and "background" in captions
    info = json.loads((first.run_dir / "run.json").read_text())
    assert info["prior_images"] == 3 and info["prior_folder"] == str(folders[0])
    logs = " ".join(e.message for e in events if e.kind == "log")
    assert "drawing 3 prior images" in logs and "prior images: 3" in logs

    stamps = [p.stat().st_mtime_ns for p in pictures]
    events.clear()
    run_training(load_config(write_config(**settings)), emit=events.append)
    assert [p.stat().st_mtime_ns for p in pictures] == stamps  # reused, not drawn again
    assert "drawing" not in " ".join(e.message for e in events if e.kind == "log")
    run_training(load_config(write_config(**{**settings, "prior_prompt": "a green square"})))
    assert len(list((tmp_path / "output" / "priors").iterdir())) == 2  # another class prompt: another set


def test_a_prior_folder_is_mixed_in_and_a_bad_one_is_named(write_config, toy_dataset, tmp_path):
    from studio.train.setup import build_setup

    setup = build_setup(load_config(write_config(prior_data_dir=str(toy_dataset), prior_ratio=0.5,
                                                 prior_loss_weight=0.25)))
    assert setup.prior_count == 8 and setup.num_images == 8
    epoch_items = [i for batch in setup.batches.sampler.batches_for_epoch(0) for i in batch]
    assert sum(i >= 8 for i in epoch_items) == 4
    assert setup.batches.weights_for([0, 8]).tolist() == [1.0, 0.25]
    empty = tmp_path / "no-priors"
    empty.mkdir()
    with pytest.raises(Exception, match="metadata.csv"):
        build_setup(load_config(write_config(prior_data_dir=str(empty))))


def test_a_prior_folder_and_generated_priors_are_mixed_in_together(write_config, toy_dataset, tmp_path):
    """Pictures of other things (a folder) and the base model's own pictures for the captions without the trigger
    (generated): both kinds keep the concept on its trigger word, so a run may ask for both."""
    from studio.train.setup import build_setup

    setup = build_setup(load_config(write_config(prior_data_dir=str(toy_dataset), prior_count=3, trigger_word="red",
                                                 prior_ratio=1.0)))
    generated = next((tmp_path / "output" / "priors").iterdir())
    assert setup.prior_count == 8 + 3 and setup.num_images == 8
    assert setup.prior_folder == f"{toy_dataset} and {generated}"
    captions = setup.batches.captions
    assert captions[8:16] == captions[:8]  # the folder's pictures (the toy set itself here) ...
    assert all("red" not in caption for caption in captions[16:])  # ... then the drawn ones, no trigger
    priors = [setup.batches.images[index] for index in (8, 15, 16, 18)]
    assert all(item["pixel_values"].shape[-1] == 32 for item in priors)
