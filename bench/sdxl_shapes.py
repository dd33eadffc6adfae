"""SDXL base 1.0's component configs, written out here, and a random-weight SDXL diffusers folder built from them.

``width`` scales every channel count (UNet block widths, both text encoders' hidden, MLP and projection sizes);
the layout stays SDXL's: 3 UNet levels with 2 ResNet layers each, transformer depth (1, 2, 10), 5/10/20 attention
heads, linear projections, two CLIP text encoders (the second with a projection) and the ``text_time`` added
embedding fed by the second encoder's pooled output and six time ids. The VAE is SD's at full size with SDXL's
scaling factor 0.13025 in every case. Both tokenizers are a copy of the shipped SD 1.5 CLIP BPE tokenizer.

    python bench/sdxl_shapes.py --count [--width 0.5]   # parameter counts and fp32 sizes, on the meta device
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SD15 = REPO / "studio" / "models" / "sd15"
TIME_IDS = 6  # original height and width, crop top and left, target height and width


def _scaled(channels: int, width: float, multiple: int = 32) -> int:
    """``channels * width`` rounded to a multiple of ``multiple`` (group norms need 32)."""
    return max(multiple, int(round(channels * width / multiple)) * multiple)


def unet_config(width: float = 1.0) -> dict:
    """SDXL base 1.0's ``unet/config.json`` (the keys that differ from diffusers' defaults), widths scaled."""
    blocks = [_scaled(c, width) for c in (320, 640, 1280)]
    first, second = text_encoder_configs(width)
    return {
        "act_fn": "silu", "addition_embed_type": "text_time", "addition_embed_type_num_heads": 64,
        "addition_time_embed_dim": 256, "attention_head_dim": [5, 10, 20], "block_out_channels": blocks,
        "cross_attention_dim": first["hidden_size"] + second["hidden_size"],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
        "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
        "mid_block_type": "UNetMidBlock2DCrossAttn", "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4,
        "projection_class_embeddings_input_dim": TIME_IDS * 256 + second["projection_dim"], "sample_size": 128,
        "transformer_layers_per_block": [1, 2, 10],
        "up_block_types": ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"], "use_linear_projection": True,
    }


def vae_config() -> dict:
    """SD's VAE (as shipped for SD 1.5) with SDXL's scaling factor and sample size."""
    import json

    config = json.loads((SD15 / "vae" / "config.json").read_text(encoding="utf-8"))
    config = {k: v for k, v in config.items() if not k.startswith("_")}
    return {**config, "sample_size": 1024, "scaling_factor": 0.13025, "force_upcast": True}


def text_encoder_configs(width: float = 1.0) -> tuple[dict, dict]:
    """(CLIP ViT-L/14 text encoder, OpenCLIP bigG text encoder with projection), hidden sizes scaled."""
    common = {"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1, "vocab_size": 49408,
              "max_position_embeddings": 77, "layer_norm_eps": 1e-05}
    large = _scaled(768, width, 64)
    big = _scaled(1280, width, 64)
    first = {**common, "hidden_size": large, "intermediate_size": 4 * large, "num_hidden_layers": 12,
             "num_attention_heads": 12, "hidden_act": "quick_gelu", "projection_dim": large}
    second = {**common, "hidden_size": big, "intermediate_size": 4 * big, "num_hidden_layers": 32,
              "num_attention_heads": 20, "hidden_act": "gelu", "projection_dim": big}
    return first, second


def scheduler_config() -> dict:
    """SDXL base 1.0's Euler scheduler (scaled-linear betas 0.00085-0.012, 1000 steps, epsilon)."""
    return {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
            "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading",
            "interpolation_type": "linear", "use_karras_sigmas": False}


def build_models(width: float = 1.0):
    """(text_encoder, text_encoder_2, vae, unet) with random weights (on torch's current default device)."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    first, second = text_encoder_configs(width)
    return (CLIPTextModel(CLIPTextConfig(**first)), CLIPTextModelWithProjection(CLIPTextConfig(**second)),
            AutoencoderKL.from_config(vae_config()), UNet2DConditionModel.from_config(unet_config(width)))


def save_model(out: Path, width: float = 1.0, seed: int = 0) -> None:
    """A random-weight SDXL-shaped diffusers folder at ``out``, loaded by our engine like a user's model."""
    import torch
    from diffusers import StableDiffusionXLPipeline

    torch.manual_seed(seed)
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTokenizer

    text_encoder, text_encoder_2, vae, unet = build_models(width)
    tokenizer, tokenizer_2 = (CLIPTokenizer.from_pretrained(str(SD15 / "tokenizer")) for _ in range(2))
    scheduler = EulerDiscreteScheduler(**scheduler_config())
    pipe = StableDiffusionXLPipeline(vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2,
                                     tokenizer=tokenizer, tokenizer_2=tokenizer_2, unet=unet, scheduler=scheduler,
                                     force_zeros_for_empty_prompt=False)
    pipe.save_pretrained(str(out), safe_serialization=True)
    for name in ("tokenizer", "tokenizer_2"):  # the shipped tokenizer files, byte for byte, and nothing else
        shutil.rmtree(out / name)
        shutil.copytree(SD15 / "tokenizer", out / name)


def parameter_counts(width: float = 1.0) -> dict[str, int]:
    """Parameters per component, counted on the meta device (no memory, no initialisation)."""
    import torch

    with torch.device("meta"):
        parts = build_models(width)
    names = ("text_encoder", "text_encoder_2", "vae", "unet")
    return {name: sum(p.numel() for p in part.parameters()) for name, part in zip(names, parts)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", action="store_true", help="print parameter counts and fp32 sizes")
    parser.add_argument("--width", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.count:
        counts = parameter_counts(args.width)
        for name, count in {**counts, "total": sum(counts.values())}.items():
            print(f"{name:15s} {count / 1e6:9.1f} M parameters  {count * 4 / 2**30:6.2f} GiB in fp32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
