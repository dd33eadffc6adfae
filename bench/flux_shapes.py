"""FLUX.1-dev's component configs, written out here, and FLUX-shaped pipelines with random weights built from them.

The transformer is FLUX.1-dev's (19 double-stream and 38 single-stream blocks, 24 heads of 128, RoPE axes
16/56/56, guidance embedding), with ``heads`` and the block counts as knobs: fewer heads narrow every block
(hidden width = heads × 128) and keep the layout. The VAE is FLUX's 16-channel one at its real size. The text
encoders are stand-ins with FLUX's output shapes: a one-layer CLIP text model whose pooled output is 768 wide and
a one-layer T5 encoder whose hidden states are 4096 wide over 512 tokens (what the transformer reads from
CLIP-L and T5-XXL), over the toy world's offline tokenizers. Training caches the text conditioning, so the stand-ins
change nothing in a cached step; a loop that encodes captions at every step pays less for them than it would for
CLIP-L and T5-XXL.

    python bench/flux_shapes.py --count [--heads 3]   # parameter counts and sizes, on the meta device
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "bench")]

HEADS, HEAD_DIM, DOUBLE_BLOCKS, SINGLE_BLOCKS = 24, 128, 19, 38  # FLUX.1-dev
CLIP_WIDTH, T5_WIDTH, T5_LENGTH = 768, 4096, 512
DEV = {"heads": HEADS, "double": DOUBLE_BLOCKS, "single": SINGLE_BLOCKS, "head_dim": HEAD_DIM}
# The tiny shape of the CPU wiring checks: the layout at toy size (2 + 2 blocks of 2 heads of 32), a small VAE.
TINY = {"heads": 2, "double": 2, "single": 2, "head_dim": 32}


def rope_axes(head_dim: int) -> tuple[int, int, int]:
    """FLUX's RoPE split of a head (16, 56, 56 for 128): an eighth for the text axis, the rest halved."""
    first = head_dim // 8
    rest = (head_dim - first) // 2
    axes = (first, rest, rest)
    if sum(axes) != head_dim or any(a % 2 for a in axes):
        raise ValueError(f"head_dim {head_dim} has no even RoPE split like FLUX's (16, 56, 56)")
    return axes


def transformer_config(heads: int = HEADS, double: int = DOUBLE_BLOCKS, single: int = SINGLE_BLOCKS,
                       head_dim: int = HEAD_DIM, guidance_embeds: bool = True) -> dict:
    """FLUX.1-dev's ``transformer/config.json`` (schnell: ``guidance_embeds`` False), narrowed by ``heads``."""
    return {"attention_head_dim": head_dim, "guidance_embeds": guidance_embeds, "in_channels": 64,
            "joint_attention_dim": T5_WIDTH, "num_attention_heads": heads, "num_layers": double,
            "num_single_layers": single, "patch_size": 1, "pooled_projection_dim": CLIP_WIDTH,
            "axes_dims_rope": rope_axes(head_dim)}


def vae_config(tiny: bool = False) -> dict:
    """FLUX.1's ``vae/config.json`` (16 latent channels, shift and scale, no quant convs); ``tiny`` keeps the
    channels, the 8× downscale and the factors with 32 channels per level and one layer per block."""
    return {"act_fn": "silu", "block_out_channels": [32] * 4 if tiny else [128, 256, 512, 512],
            "down_block_types": ["DownEncoderBlock2D"] * 4, "force_upcast": True, "in_channels": 3,
            "latent_channels": 16, "layers_per_block": 1 if tiny else 2, "mid_block_add_attention": True,
            "norm_num_groups": 32, "out_channels": 3, "sample_size": 1024, "scaling_factor": 0.3611,
            "shift_factor": 0.1159, "up_block_types": ["UpDecoderBlock2D"] * 4, "use_post_quant_conv": False,
            "use_quant_conv": False}


def scheduler_config() -> dict:
    """FLUX.1-dev's flow-matching scheduler (the shift grows with the picture's token count when sampling)."""
    return {"base_image_seq_len": 256, "base_shift": 0.5, "max_image_seq_len": 4096, "max_shift": 1.15,
            "num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True}


def clip_config(vocab_size: int, bos: int, eos: int, pad: int) -> dict:
    """The CLIP stand-in: one layer, CLIP-L's width (its pooled output is the transformer's pooled projection)."""
    return {"vocab_size": vocab_size, "hidden_size": CLIP_WIDTH, "intermediate_size": CLIP_WIDTH,
            "num_hidden_layers": 1, "num_attention_heads": 12, "max_position_embeddings": 77,
            "projection_dim": CLIP_WIDTH, "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad}


def t5_config(vocab_size: int) -> dict:
    """The T5 stand-in: one narrow layer whose output is T5-XXL's width."""
    return {"vocab_size": vocab_size, "d_model": T5_WIDTH, "d_kv": 64, "d_ff": 256, "num_layers": 1,
            "num_heads": 2, "dropout_rate": 0.0, "feed_forward_proj": "gated-gelu", "is_encoder_decoder": False,
            "use_cache": False, "pad_token_id": 0, "eos_token_id": 1, "decoder_start_token_id": 0}


def build_transformer(shape: dict, device: str = "cpu", dtype=None, seed: int = 0):
    """A FLUX-shaped transformer with random weights, made on ``device`` in ``dtype`` (default float32).

    Built on the meta device and materialised in place (a 12 B model is never initialised on the CPU first):
    matrices drawn from N(0, 0.02), vectors (norm scales) 1, biases 0.
    """
    import torch
    from diffusers import FluxTransformer2DModel

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype or torch.float32)  # made in its dtype: no float32 copy on the device first
    try:
        with torch.device("meta"):
            model = FluxTransformer2DModel(**transformer_config(**shape))
    finally:
        torch.set_default_dtype(previous)
    model.to_empty(device=device)
    generator = torch.Generator(device=device).manual_seed(seed)
    with torch.no_grad():
        for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith("bias"):
                tensor.zero_()
            elif tensor.ndim == 1:
                tensor.fill_(1.0)
            else:
                tensor.normal_(0.0, 0.02, generator=generator)
    return model


def build_pipeline(work: Path, shape: dict, tiny_vae: bool = False, device: str = "cpu", dtype=None, seed: int = 0):
    """A ``FluxPipeline``: the transformer of ``shape`` on ``device`` in ``dtype``; VAE, text stand-ins and the
    tokenizers (files under ``work``) on the CPU in float32."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from studio.toyworld.vocab import build_clip_tokenizer, build_t5_tokenizer

    clip_tokenizer = build_clip_tokenizer(Path(work) / "tokenizer")
    t5_tokenizer = build_t5_tokenizer(Path(work) / "tokenizer_2", T5_LENGTH)
    ids = (len(clip_tokenizer), clip_tokenizer.bos_token_id, clip_tokenizer.eos_token_id, clip_tokenizer.pad_token_id)
    torch.manual_seed(seed)
    clip = CLIPTextModel(CLIPTextConfig(**clip_config(*ids)))
    t5 = T5EncoderModel(T5Config(**t5_config(len(t5_tokenizer))))
    vae = AutoencoderKL.from_config(vae_config(tiny_vae))
    transformer = build_transformer(shape, device, dtype, seed)
    return FluxPipeline(scheduler=FlowMatchEulerDiscreteScheduler(**scheduler_config()), vae=vae, text_encoder=clip,
                        tokenizer=clip_tokenizer, text_encoder_2=t5, tokenizer_2=t5_tokenizer, transformer=transformer)


def save_model(out: Path, shape: dict, tiny_vae: bool = False, seed: int = 0) -> None:
    """A random-weight FLUX-shaped diffusers folder at ``out``, loaded by our engine like a user's model."""
    pipe = build_pipeline(Path(out).parent / f"{Path(out).name}-tokenizers", shape, tiny_vae, seed=seed)
    pipe.save_pretrained(str(out), safe_serialization=True)


def parameter_counts(shape: dict | None = None, tiny_vae: bool = False) -> dict[str, int]:
    """Parameters of the transformer and the VAE, counted on the meta device."""
    import torch
    from diffusers import AutoencoderKL, FluxTransformer2DModel

    with torch.device("meta"):
        transformer = FluxTransformer2DModel(**transformer_config(**(shape or DEV)))
        vae = AutoencoderKL.from_config(vae_config(tiny_vae))
    return {"transformer": sum(p.numel() for p in transformer.parameters()),
            "vae": sum(p.numel() for p in vae.parameters())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", action="store_true", help="print parameter counts and sizes")
    parser.add_argument("--heads", type=int, default=HEADS, help="attention heads (24 = FLUX.1-dev's width)")
    args = parser.parse_args(argv)
    if args.count:
        for name, count in parameter_counts({**DEV, "heads": args.heads}).items():
            print(f"{name:12s} {count / 1e6:9.1f} M parameters  {count * 2 / 2**30:6.2f} GiB in bf16  "
                  f"{count * 4 / 2**30:6.2f} GiB in fp32")
    return 0


if __name__ == "__main__":
    sys.exit(main())
