"""diffusers' training helpers where they do what the studio wrote by hand: the same numbers as before."""
from __future__ import annotations

import pytest
import torch
from diffusers import DDPMScheduler

from studio.config import load_config
from studio.train.adapters import add_lora_adapters
from studio.models.families.objectives import snr_weights


def _hand_written_snr_weights(scheduler, timesteps: torch.Tensor, gamma: float) -> torch.Tensor:
    """The Min-SNR-γ weights as the studio computed them before it used ``diffusers.training_utils.compute_snr``."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps].float()
    snr = alphas / (1 - alphas).clamp(min=1e-8)
    clipped = torch.minimum(snr, torch.full_like(snr, gamma))
    if scheduler.config.prediction_type == "v_prediction":
        return clipped / (snr + 1)
    return clipped / snr.clamp(min=1e-8)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
@pytest.mark.parametrize("zero_terminal_snr", [False, True])
def test_min_snr_weights_through_compute_snr_equal_the_hand_written_ones(prediction_type, zero_terminal_snr):
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear", prediction_type=prediction_type,
                              rescale_betas_zero_snr=zero_terminal_snr)
    timesteps = torch.arange(1000)
    for gamma in (1.0, 5.0):
        weights = snr_weights(scheduler, timesteps, gamma)
        assert torch.isfinite(weights).all(), "the zero-SNR last timestep keeps a finite weight"
        torch.testing.assert_close(weights, _hand_written_snr_weights(scheduler, timesteps, gamma),
                                   rtol=1e-6, atol=2e-7)


def test_trainable_lora_tensors_are_fp32_on_a_half_precision_model(tiny_sd_dir):
    """``cast_training_params``: the LoRA trains in fp32 while the frozen base stays in the model's dtype."""
    from studio.models import load_components

    components = load_components(str(tiny_sd_dir))
    unet = components.denoiser.to(torch.bfloat16)
    config = load_config({"lora_rank": 4, "lora_alpha": 8})
    params = add_lora_adapters(unet, {}, config, components.family)
    trainable = {id(p) for p in params}
    assert params and all(p.dtype == torch.float32 and p.requires_grad for p in params)
    frozen = [p for p in unet.parameters() if id(p) not in trainable]
    assert frozen and all(p.dtype == torch.bfloat16 and not p.requires_grad for p in frozen)


def test_a_target_the_flux_transformer_lacks_is_named_against_the_transformer():
    """The demo preset's ResNet convolutions (conv1, conv2) on a FLUX.1 model: the sentence names the transformer."""
    from diffusers import FluxTransformer2DModel

    from studio.models.families import FLUX
    from studio.toyworld.architecture import flux_transformer_config
    from studio.train.adapters import AdapterError

    transformer = FluxTransformer2DModel(**flux_transformer_config(double_layers=1, single_layers=1))
    config = load_config({"lora_rank": 4, "target_modules": ["to_q", "conv1"]})
    with pytest.raises(AdapterError, match=r"\['conv1'\] match no layer of the transformer; .*FLUX transformer"):
        add_lora_adapters(transformer, {}, config, FLUX)
