"""The LoRA files a run leaves behind: the WebUI/kohya file for ComfyUI, A1111 and Forge (checked against their
key rules as it is written) and diffusers' ``pytorch_lora_weights.safetensors``. FLUX.1 runs write only the
diffusers file: ComfyUI and Forge load it as it is, so it is the one checked (``studio.lora.diffusers_webui``).

A DoRA trained along the WebUI axis (``dora_axis: webui``, see ``studio.lora.dora``) has no diffusers form: PEFT,
which diffusers loads DoRA through, normalises output rows, so that run writes the WebUI file only.
"""
from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from .adapters import adapter_state, adapter_targets
from .run_folder import webui_file_name

if TYPE_CHECKING:
    from studio.config import TrainConfig
    from studio.lora.layout import BaseLayout

    from .setup import TrainingSetup

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def lora_states(setup: TrainingSetup, dtype: torch.dtype = torch.float32) -> tuple[dict, dict]:
    """(UNet adapter tensors, {text component: adapter tensors} — empty unless the text encoders are trained),
    unwrapped from accelerate, in ``dtype``."""
    unwrap = setup.accelerator.unwrap_model
    unet = {k: v.to(dtype) for k, v in adapter_state(unwrap(setup.components.denoiser)).items()}
    texts = {}
    if setup.config.train_text_encoder:
        for name, encoder in setup.components.lora_text_encoders.items():
            texts[name] = {k: v.to(dtype) for k, v in adapter_state(unwrap(encoder)).items()}
    return unet, texts


def webui_axis_dora(config: TrainConfig) -> bool:
    return bool(config.use_dora) and getattr(config, "dora_axis", "webui") == "webui"


def base_layout(setup: TrainingSetup) -> BaseLayout:
    """The trained model's layers as ComfyUI and A1111 name them (``studio.lora.layout``)."""
    from studio.lora.layout import layout_of

    unwrap = setup.accelerator.unwrap_model
    encoders = {name: unwrap(encoder) for name, encoder in setup.components.lora_text_encoders.items()}
    return layout_of(setup.components.family, unwrap(setup.components.denoiser), encoders)


def write_diffusers_lora(folder: Path, setup: TrainingSetup, dtype: torch.dtype = torch.float32,
                         run_info: dict | None = None, step: int | None = None, epoch: int | None = None) -> Path:
    """A checkpoint's or run's LoRA for diffusers, with kohya's ``ss_*`` / ``modelspec.*`` metadata; for a
    WebUI-axis DoRA (no diffusers form) the checked WebUI file instead."""
    from studio.lora import build_kohya_metadata, save_diffusers_lora

    config = setup.config
    if webui_axis_dora(config):
        return write_webui_lora(Path(folder), setup, dtype, run_info, step, epoch)
    unet, text = lora_states(setup, dtype)
    family = setup.components.family
    metadata = build_kohya_metadata(kohya_values(setup, run_info or {}, step, epoch), family)
    return save_diffusers_lora(
        folder, unet, text, rank=config.lora_rank, alpha=config.effective_alpha(), use_dora=config.use_dora,
        unet_targets=adapter_targets(setup.accelerator.unwrap_model(setup.components.denoiser), config.target_modules),
        te_targets=config.text_encoder_target_modules,
        metadata={"studio.output_name": config.resolved_output_name(), **metadata},
        family=family, layout=None if family.lora_naming.webui_file else base_layout(setup),
    )


def write_webui_lora(folder: Path, setup: TrainingSetup, dtype: torch.dtype, run_info: dict | None, step: int | None,
                     epoch: int | None) -> Path:
    """``folder/<name>.safetensors``, checked against ComfyUI's and A1111's key rules before it replaces the old one."""
    from studio.lora import build_kohya_metadata, save_kohya_lora

    config = setup.config
    unet, text = lora_states(setup, dtype)
    family = setup.components.family
    return save_kohya_lora(
        Path(folder) / webui_file_name(config.resolved_output_name()), unet, text,
        rank=config.lora_rank, alpha=config.effective_alpha(), family=family,
        metadata=build_kohya_metadata(kohya_values(setup, run_info or {}, step, epoch), family),
        unet_config=dict(setup.accelerator.unwrap_model(setup.components.denoiser).config), layout=base_layout(setup),
    )


def write_checkpoint_loras(folder: Path, setup: TrainingSetup) -> Path:
    """A checkpoint's LoRA files: diffusers' (what evaluation loads; absent for a WebUI-axis DoRA) and the
    WebUI file, checked against ComfyUI's and A1111's key rules. Returns the diffusers file, else the WebUI one."""
    if not setup.components.family.lora_naming.webui_file:
        return Path(write_diffusers_lora(folder, setup))
    webui = write_webui_lora(Path(folder), setup, torch.float32, None, None, None)
    return webui if webui_axis_dora(setup.config) else Path(write_diffusers_lora(folder, setup))


def kohya_values(setup: TrainingSetup, run_info: dict, step: int | None, epoch: int | None) -> dict:
    """Plain values for kohya's ``ss_*`` metadata (A1111 shows them; ``ss_tag_frequency`` as a tag cloud)."""
    config = setup.config
    values = {
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
        "network_dim": config.lora_rank,
        "network_alpha": config.effective_alpha(),
        "use_dora": config.use_dora,
        "mixed_precision": config.mixed_precision,
        "resolution": config.resolution,
        "base_model_name": Path(config.base_model).name if config.base_model else "toy-world",
        "base_model_path": config.base_model or None,
        "noise_offset": config.noise_offset,
        "min_snr_gamma": config.min_snr_gamma,
        "prediction_type": setup.objective.prediction_type,
        "zero_terminal_snr": bool(setup.components.noise_scheduler.config.get("rescale_betas_zero_snr", False)),
        "tag_frequency": {Path(config.train_data_dir).name or "data": setup.tag_frequency},
        "dataset_dirs": {Path(config.train_data_dir).name or "data": {"n_repeats": config.repeats, "img_count": setup.num_images}},
    }
    values.update({key: value for key, value in (("epoch", epoch), ("steps", step)) if value is not None})
    values.update(family_values(setup))
    return values


def family_values(setup: TrainingSetup) -> dict:
    """Metadata values only some families have: FLUX.1's architecture (dev or schnell, read from the transformer)
    and the flow-matching settings, under the names sd-scripts gives them."""
    config, values = setup.config, {}
    architecture_of = getattr(setup.components.family, "architecture_of", None)
    if architecture_of is not None:
        values["architecture"] = architecture_of(setup.accelerator.unwrap_model(setup.components.denoiser))
    if setup.objective.prediction_type == "flow":
        values.update(weighting_scheme=config.weighting_scheme, logit_mean=config.logit_mean,
                      logit_std=config.logit_std, mode_scale=config.mode_scale, guidance_scale=config.guidance_scale,
                      flow_shift=config.flow_shift, model_prediction_type="raw")
    return values


def write_final_files(run_dir: Path, setup: TrainingSetup, run_info: dict, step: int, epoch: int,
                      warn: Callable[[str], None], note: Callable[[str], None] | None = None,
                      ) -> tuple[Path | None, Path | None]:
    """The final files in ``save_precision``: (diffusers file or None, WebUI/kohya file). ``note`` (a message
    callback) hears which clients load the WebUI file: "loads in ComfyUI and A1111: 64/64 keys, alpha 8 ..."
    (FLUX.1: the diffusers file, in ComfyUI and Forge)."""
    config = setup.config
    dtype = PRECISIONS[config.save_precision]
    diffusers_file = None
    if not webui_axis_dora(config):
        diffusers_file = Path(write_diffusers_lora(run_dir, setup, dtype, run_info, step, epoch))
    if config.use_dora and not webui_axis_dora(config):
        warn("DoRA with dora_axis: diffusers: only the diffusers file is written — ComfyUI and A1111 apply "
             "dora_scale per input column, PEFT per output row; train with dora_axis: webui for a WebUI file")
        return diffusers_file, None
    if not setup.components.family.lora_naming.webui_file:  # FLUX.1: the diffusers file is ComfyUI's and Forge's
        if note is not None:
            note(f"{diffusers_file.name} {_report(diffusers_file, setup).summary()}{_folded(setup)}; A1111 has no "
                 f"{setup.components.family.label}")
        return diffusers_file, None
    webui_file = Path(write_webui_lora(run_dir, setup, dtype, run_info, step, epoch))
    if webui_axis_dora(config):
        warn("DoRA along the WebUI axis: no diffusers file (PEFT's DoRA normalises the other axis); "
             f"{webui_file.name} is the LoRA, for ComfyUI, A1111 and Forge")
    if note is not None:
        note(f"{webui_file.name} {_report(webui_file, setup).summary()}")
    return diffusers_file, webui_file


def _folded(setup: TrainingSetup) -> str:
    from studio.lora.diffusers_webui import folds_alpha

    rank, alpha = setup.config.lora_rank, setup.config.effective_alpha()
    if not folds_alpha(setup.components.family, rank, alpha):
        return ""
    return f" (alpha {alpha:g} / rank {rank} folded into lora_B)"


def _report(path: Path, setup: TrainingSetup):
    """What ComfyUI and A1111 (FLUX.1: Forge) make of the file ``path`` on the trained model."""
    from safetensors.torch import load_file

    from studio.lora.check import check_tensors
    from studio.lora.formats import _read_metadata

    return check_tensors(load_file(str(path)), _read_metadata(path), base_layout(setup))
