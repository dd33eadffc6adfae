"""Shared fixtures: tiny Stable Diffusion 1.x-shaped models built in the test, never downloaded."""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# The test models are tiny: on a 2-core machine one thread trains them faster than two (the threads mostly wait on
# each other), and the CLI/studio subprocesses the tests start inherit this.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    """A randomly initialised SD 1.x-shaped pipeline saved as a diffusers folder (toy-world architecture)."""
    import torch

    from studio.toyworld.pretrain import build_components, save_pipeline

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny-sd")
    tokenizer, text_encoder, vae, unet, scheduler = build_components(root / "tokenizer-src")
    save_pipeline(root / "model", tokenizer, text_encoder, vae, unet, scheduler)
    return root / "model"
