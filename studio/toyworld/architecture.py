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
