"""The LoRA files a run leaves behind: diffusers' ``pytorch_lora_weights.safetensors`` and a WebUI/kohya file."""
from __future__ import annotations

import time
import uuid
from pathlib import Path

import torch

from .adapters import adapter_state

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def lora_states(setup, dtype: torch.dtype = torch.float32) -> tuple[dict, dict]:
    """(UNet adapter tensors, {text component: adapter tensors} — empty unless the text encoders are trained),
    unwrapped from accelerate, in ``dtype``."""
    unwrap = setup.accelerator.unwrap_model
    unet = {k: v.to(dtype) for k, v in adapter_state(unwrap(setup.components.unet)).items()}
    texts = {}
    if setup.config.train_text_encoder:
        for name, encoder in setup.components.text_encoders.items():
            texts[name] = {k: v.to(dtype) for k, v in adapter_state(unwrap(encoder)).items()}
    return unet, texts


def write_diffusers_lora(folder: Path, setup, dtype: torch.dtype = torch.float32) -> Path:
    from studio.lora import kohya, save_diffusers_lora

    config = setup.config
    unet, text = lora_states(setup, dtype)
    return save_diffusers_lora(
        folder, unet, text, rank=config.lora_rank, alpha=config.effective_alpha(), use_dora=config.use_dora,
        unet_targets=config.target_modules, te_targets=config.text_encoder_target_modules,
        metadata={"studio.output_name": config.resolved_output_name(), **kohya.base_metadata(setup.components.family)},
        family=setup.components.family,
    )


def kohya_values(setup, run_info: dict, step: int, epoch: int) -> dict:
    """Plain values for kohya's ``ss_*`` metadata (A1111 shows them; ``ss_tag_frequency`` as a tag cloud)."""
    config = setup.config
    return {
        "output_name": config.resolved_output_name(),
        "session_id": run_info.get("session_id") or uuid.uuid4().hex,
        "started_at": run_info.get("started_at", time.time()),
        "finished_at": time.time(),
        "seed": config.seed,
        "learning_rate": config.learning_rate,
        "unet_lr": config.learning_rate,
        "text_encoder_lr": (config.text_encoder_lr or config.learning_rate) if config.train_text_encoder else None,
        "lr_scheduler": config.lr_scheduler,
        "optimizer": "torch.optim.AdamW",
        "num_train_images": setup.num_images,
        "num_epochs": setup.num_epochs,
        "epoch": epoch,
        "steps": step,
        "network_dim": config.lora_rank,
        "network_alpha": config.effective_alpha(),
        "use_dora": config.use_dora,
        "mixed_precision": config.mixed_precision,
        "resolution": config.resolution,
        "base_model_name": Path(config.base_model).name if config.base_model else "toy-world",
        "noise_offset": config.noise_offset,
        "min_snr_gamma": config.min_snr_gamma,
        "prediction_type": setup.components.noise_scheduler.config.prediction_type,
        "zero_terminal_snr": bool(setup.components.noise_scheduler.config.get("rescale_betas_zero_snr", False)),
        "tag_frequency": {Path(config.train_data_dir).name or "data": setup.tag_frequency},
        "dataset_dirs": {Path(config.train_data_dir).name or "data": {"n_repeats": config.repeats, "img_count": setup.num_images}},
    }


def write_final_files(run_dir: Path, setup, run_info: dict, step: int, epoch: int, warn) -> tuple[Path, Path | None]:
    """Both final files, in ``save_precision``; returns (diffusers file, WebUI/kohya file or None for DoRA)."""
    from studio.lora import build_kohya_metadata, save_kohya_lora

    config = setup.config
    dtype = PRECISIONS[config.save_precision]
    diffusers_file = write_diffusers_lora(run_dir, setup, dtype)
    if config.use_dora:
        warn("DoRA: only the diffusers file is written — WebUI/ComfyUI apply DoRA magnitudes differently, "
             "so a kohya-format file would not reproduce the trained LoRA")
        return Path(diffusers_file), None
    unet, text = lora_states(setup, dtype)
    family = setup.components.family
    metadata = build_kohya_metadata(kohya_values(setup, run_info, step, epoch), family)
    webui_file = save_kohya_lora(
        run_dir / f"{config.resolved_output_name()}.safetensors", unet, text,
        rank=config.lora_rank, alpha=config.effective_alpha(), metadata=metadata, family=family,
        unet_config=dict(setup.accelerator.unwrap_model(setup.components.unet).config),
    )
    return Path(diffusers_file), Path(webui_file)
