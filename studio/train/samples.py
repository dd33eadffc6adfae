"""Samples during training: fixed prompts and seeds rendered every ``sample_steps``, with and without the trigger.

The pipeline is assembled from the very modules being trained (nothing is copied), switched to eval mode while it
draws, and uses its own generators, so sampling never changes what the run learns.
"""
from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline

    from studio.models import Components

    from .run_folder import RunFolder
    from .setup import TrainingSetup

SAMPLE_SEED = 1234
SAMPLE_STEPS = 20


def without_trigger(prompt: str, trigger: str) -> str:
    """The prompt with the trigger word removed (whole words, case-insensitive), spaces tidied."""
    if not trigger:
        return prompt
    stripped = re.sub(rf"(?i)(?<!\w){re.escape(trigger)}(?!\w)", "", prompt)
    return re.sub(r"\s+", " ", stripped).replace(" ,", ",").strip(" ,")


def sample_prompts(prompts: list[str], trigger: str) -> list[tuple[str, str]]:
    """(label, prompt) pairs: each prompt, then its trigger-less twin when it contains the trigger."""
    pairs = []
    for prompt in prompts:
        pairs.append(("trigger" if trigger and trigger.lower() in prompt.lower() else "prompt", prompt))
        plain = without_trigger(prompt, trigger)
        if plain != prompt:
            pairs.append(("no trigger", plain))
    return pairs


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48] or "prompt"


def assemble_pipeline(components: Components,
                      unwrap: Callable[[torch.nn.Module], torch.nn.Module] = lambda module: module
                      ) -> DiffusionPipeline:
    """A pipeline of the model's family around these very modules (nothing copied, safety checker off), drawing
    with the family's sampling scheduler (DDIM; FLUX's flow-matching Euler); ``unwrap`` takes accelerate's wrappers
    off the trained modules."""
    parts = dataclasses.replace(components, denoiser=unwrap(components.denoiser), **{
        name: unwrap(encoder) for name, encoder in components.text_encoders.items()})
    return components.family.assemble_pipeline(parts, components.family.sampling_scheduler(components))


class SampleRenderer:
    """Draws the config's sample prompts (each with and without the trigger) into the run folder."""

    def __init__(self, setup: TrainingSetup, folder: RunFolder) -> None:
        self.setup = setup
        self.folder = folder
        self.pairs = sample_prompts(list(setup.config.validation_prompts), setup.config.trigger_word)

    def _pipeline(self):
        return assemble_pipeline(self.setup.components, self.setup.accelerator.unwrap_model)

    def render(self, step: int) -> list[Path]:
        """Draw every sample prompt at ``step``; returns the PNG paths (``samples/step-N/NN-label-prompt.png``)."""
        if not self.pairs:
            return []
        pipe = self._pipeline()
        pipe.set_progress_bar_config(disable=True)
        family = self.setup.components.family
        models = [family.denoiser_of(pipe)] + [getattr(pipe, name) for name in self.setup.components.text_encoders]
        modes = [m.training for m in models]
        folder = self.folder.samples_dir(step)
        folder.mkdir(parents=True, exist_ok=True)
        size = self.setup.config.resolution
        try:
            for m in models:
                m.eval()
            generators = [torch.Generator().manual_seed(SAMPLE_SEED + i) for i in range(len(self.pairs))]
            config = self.setup.config
            scale = config.sample_guidance_scale
            scale = family.sample_guidance(pipe) if scale is None else scale
            guidance = family.call_kwargs(pipe, [""] * len(self.pairs), scale)
            with torch.no_grad():
                images = pipe([p for _, p in self.pairs], num_inference_steps=config.sample_inference_steps
                              or SAMPLE_STEPS, generator=generators, height=size, width=size, **guidance).images
        finally:
            for m, mode in zip(models, modes):
                m.train(mode)
        paths = []
        for number, ((label, prompt), image) in enumerate(zip(self.pairs, images)):
            path = folder / f"{number:02d}-{_slug(label)}-{_slug(prompt)}.png"
            image.save(path)
            paths.append(path)
        return paths
