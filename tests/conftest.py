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


def build_tiny_sdxl(folder, layers_per_block: int = 2, prediction_type: str = "epsilon"):
    """A randomly initialised SDXL pipeline shaped as diffusers' own SDXL tests build it (two levels, SDXL's
    two-layer ResNet blocks, a deeper transformer at the lower level, text_time added embeddings), with the toy
    world's tokenizer, saved as a diffusers folder at ``folder``."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.toyworld.pretrain_sdxl import save_pipeline
    from studio.toyworld.vocab import build_clip_tokenizer

    torch.manual_seed(0)
    tokenizer = build_clip_tokenizer(folder.parent / f"{folder.name}-tokenizer")
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=layers_per_block, sample_size=16, in_channels=4,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), attention_head_dim=(2, 4), use_linear_projection=True,
        addition_embed_type="text_time", addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=80, cross_attention_dim=64, norm_num_groups=16,
    )
    vae = AutoencoderKL(block_out_channels=[32, 64], in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                        norm_num_groups=16, sample_size=32)
    text = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=1,
                hidden_size=32, intermediate_size=37, layer_norm_eps=1e-05, num_attention_heads=4,
                num_hidden_layers=5, vocab_size=len(tokenizer), hidden_act="gelu", projection_dim=32)
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       steps_offset=1, timestep_spacing="leading", prediction_type=prediction_type)
    save_pipeline(folder, tokenizer, CLIPTextModel(CLIPTextConfig(**text)),
                  CLIPTextModelWithProjection(CLIPTextConfig(**text)), vae, unet, scheduler)
    return folder


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    """A randomly initialised SDXL-shaped pipeline saved as a diffusers folder."""
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl") / "model")


def build_tiny_flux(folder, guidance_embeds: bool = True):
    """A randomly initialised FLUX.1-shaped pipeline (dev-shaped: with the guidance embedding) saved as a diffusers
    folder: the toy world's tokenizers and VAE (with a shift factor, as FLUX's VAE has), a two-double, two-single
    block transformer."""
    from studio.toyworld.flux_parts import build_flux_pipeline

    pipe = build_flux_pipeline(folder.parent / (folder.name + "-parts"), guidance_embeds=guidance_embeds,
                               shift_factor=0.1)
    pipe.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_flux_dir(tmp_path_factory):
    """A randomly initialised FLUX.1-dev-shaped pipeline saved as a diffusers folder."""
    return build_tiny_flux(tmp_path_factory.mktemp("tiny-flux") / "model")


# The longest test files (minutes each: they train a demo LoRA and read what it draws) run first, so that with
# `-n 2 --dist loadfile` the two workers share them instead of one worker running them at the end while the other
# waits. pytest-xdist hands out files in collection order.
LONGEST_FIRST = ("tests/ui/test_ui_first_hour.py", "tests/toyworld/test_toyworld_sdxl.py",
                 "tests/toyworld/test_toyworld_demo_lora.py")


def pytest_collection_modifyitems(config, items):
    def rank(item) -> int:
        path = item.nodeid.split("::")[0]
        return LONGEST_FIRST.index(path) if path in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # a stable sort: every other file keeps its place
