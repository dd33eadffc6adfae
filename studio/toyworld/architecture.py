"""Component shapes of the toy-world model: Stable Diffusion 1.x in miniature.

Same classes and folder layout as SD 1.x (AutoencoderKL, CLIPTextModel + CLIPTokenizer, UNet2DConditionModel,
a scheduler), so every code path that loads SD 1.x loads this model too. The noise schedule is zero-terminal-SNR
with v-prediction: on 16 x 16 latents SD's standard schedule leaves enough signal at the last step that the
model reads the background from the mean of the starting noise (see the spike notes).
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


def text_encoder_config(vocab_size: int, bos: int, eos: int, pad: int) -> dict:
    return dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=77,
        projection_dim=64,
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
