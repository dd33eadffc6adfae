"""Component shapes of the toy-world model: Stable Diffusion 1.x in miniature.

Same classes and folder layout as SD 1.x (AutoencoderKL, CLIPTextModel + CLIPTokenizer, UNet2DConditionModel,
a scheduler), so every code path that loads SD 1.x loads this model too. The noise schedule is zero-terminal-SNR
with v-prediction: on 16 x 16 latents SD's standard schedule leaves enough signal at the last step that the
model reads the background from the mean of the starting noise instead of from the prompt.
"""
from __future__ import annotations

LATENT_CHANNELS = 4


def vae_config() -> dict:
    return dict(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        block_out_channels=(32, 64),
        layers_per_block=1,
        latent_channels=LATENT_CHANNELS,
        norm_num_groups=16,
        sample_size=32,
        mid_block_add_attention=False,
    )


def text_encoder_config(vocab_size: int, bos: int, eos: int, pad: int, width: int = 64, layers: int = 2) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=width,
        intermediate_size=4 * width,
        num_hidden_layers=layers,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=width,
        bos_token_id=bos,
        eos_token_id=eos,
        pad_token_id=pad,
    )


def unet_config() -> dict:
    return dict(
        sample_size=16,
        in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS,
        # Attention at 8 x 8 and 4 x 4 only: at 16 x 16 it costs 2.4x the step time on a CPU.
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        attention_head_dim=8,
        norm_num_groups=16,
        cross_attention_dim=64,
    )


def scheduler_config() -> dict:
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type="v_prediction",
        rescale_betas_zero_snr=True,
        timestep_spacing="trailing",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


# -- the SDXL toy: the same world in SDXL's architecture ------------------------------------------------------
# Two CLIP text encoders whose penultimate hidden states are concatenated (32 + 32 = the UNet's cross-attention
# width 64), the second with a projection whose pooled output joins SDXL's six micro-conditioning numbers
# (original size, crop corner, target size) in the UNet's "text_time" added embedding. The VAE is the SD 1.x
# toy's (the same AutoencoderKL class SDXL uses). Three layers per encoder: SDXL reads the penultimate layer.
SDXL_TEXT_WIDTH = 32
SDXL_TIME_EMBED_DIM = 8


def sdxl_text_encoder_config(vocab_size: int, bos: int, eos: int, pad: int) -> dict:
    return text_encoder_config(vocab_size, bos, eos, pad, width=SDXL_TEXT_WIDTH, layers=3)


def sdxl_unet_config() -> dict:
    config = unet_config()
    config.update(
        cross_attention_dim=2 * SDXL_TEXT_WIDTH,
        use_linear_projection=True,
        transformer_layers_per_block=(1, 1, 1),
        addition_embed_type="text_time",
        addition_time_embed_dim=SDXL_TIME_EMBED_DIM,
        projection_class_embeddings_input_dim=6 * SDXL_TIME_EMBED_DIM + SDXL_TEXT_WIDTH,
    )
    return config


# -- the FLUX.1 toy: the same world as a flow-matching transformer ---------------------------------------------
# FLUX.1's classes at toy width: a CLIP text encoder (pooled output -> pooled_projections), a T5 encoder (its
# hidden states -> the transformer's text tokens), the SD 1.x toy's 4-channel VAE (packed 2 x 2 into 16 input
# channels) and a FluxTransformer2DModel with double- and single-stream blocks. 32 px pictures are 16 x 16
# latents, 64 image tokens.
FLUX_TEXT_WIDTH = 32
FLUX_T5_LENGTH = 32


def flux_clip_config(vocab_size: int, bos: int, eos: int, pad: int) -> dict:
    return text_encoder_config(vocab_size, bos, eos, pad, width=FLUX_TEXT_WIDTH, layers=2)


def flux_t5_config(vocab_size: int) -> dict:
    return dict(vocab_size=vocab_size, d_model=FLUX_TEXT_WIDTH, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                relative_attention_num_buckets=8, relative_attention_max_distance=32, dropout_rate=0.0,
                feed_forward_proj="gated-gelu", is_encoder_decoder=False, use_cache=False, pad_token_id=0,
                eos_token_id=1, decoder_start_token_id=0)


def flux_transformer_config(guidance_embeds: bool = False, double_layers: int = 2, single_layers: int = 2,
                            heads: int = 4, head_dim: int = 16) -> dict:
    return dict(patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=double_layers,
                num_single_layers=single_layers, attention_head_dim=head_dim, num_attention_heads=heads,
                joint_attention_dim=FLUX_TEXT_WIDTH, pooled_projection_dim=FLUX_TEXT_WIDTH,
                guidance_embeds=guidance_embeds, axes_dims_rope=(4, head_dim // 2 - 2, head_dim // 2 - 2))


def flux_scheduler_config() -> dict:
    """FLUX.1-dev's flow-matching scheduler: the shift grows with the picture's token count."""
    return dict(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                base_image_seq_len=256, max_image_seq_len=4096)
