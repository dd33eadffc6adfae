"""``TrainConfig``: every training setting, its default, its help text and its limits, in one place.

The YAML files, the ``--set`` overrides, the UI form and the docs are all generated from the field list below;
each field's ``metadata`` holds ``help`` and ``section`` and, where they apply, the limits the validator enforces
(``choices``, ``min``/``max`` inclusive, ``gt``/``lt`` exclusive) and ``path`` for settings that name a file or
folder. Relative paths stay exactly as written: whoever opens the file resolves them against the current working
directory (``resolve_paths`` does that explicitly).
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import get_type_hints

from .errors import ConfigError
from .validate import FieldSpec, looks_like_local_path, normalise, sanitise_stem

SECTIONS: dict[str, str] = {
    "data": "Data: the training pictures and their captions",
    "model": "Model: the Stable Diffusion checkpoint the LoRA is trained on",
    "lora": "LoRA: the adapter's size and the layers it changes",
    "training": "Training: optimiser, schedule and precision",
    "output": "Output: where the LoRA and its checkpoints are written",
}
SCHEDULERS = ("constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial")
DEFAULT_UNET_MODULES = ("to_q", "to_k", "to_v", "to_out.0")
DEFAULT_TEXT_MODULES = ("q_proj", "k_proj", "v_proj", "out_proj")


def _f(default, section: str, help: str, **limits):
    """A dataclass field with UI/doc metadata; list defaults are copied per instance."""
    meta = {"help": help, "section": section, **limits}
    if isinstance(default, (list, tuple)):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """All settings of one LoRA training run. Construction validates and normalises (raises ``ConfigError``).

    After construction ``notes`` lists what normalisation changed (e.g. ``q_proj`` mapped to ``to_q``); it is
    not a setting and takes no part in equality.
    """

    # data
    train_data_dir: str = _f("", "data", "Folder with the training images (and their captions).", path=True)
    metadata_path: str = _f(
        "", "data", "CSV of filename,prompt rows; empty means <train_data_dir>/metadata.csv.", path=True
    )
    resolution: int = _f(512, "data", "Training resolution in pixels (a multiple of 8). SD 1.x is trained at 512.",
                         min=8, multiple_of=8)
    bucketing: bool = _f(True, "data", "Group images by aspect ratio instead of centre-cropping them to squares.")
    random_flip: bool = _f(False, "data", "Mirror images at random; fine for styles, wrong for asymmetric characters.")
    repeats: int = _f(1, "data", "How many times each image is seen per epoch.", min=1)
    caption_dropout: float = _f(0.0, "data", "Share of steps trained with an empty caption (0 = never).", min=0, lt=1)
    prior_data_dir: str = _f(
        "", "data", "Prior (regularisation) images + metadata.csv: pictures of what the base model already draws, "
        "mixed in so the new concept stays on its trigger word.", path=True)
    prior_count: int = _f(0, "data", "Prior images to generate from the base model (cached under "
                          "<output_dir>/priors), added to those of prior_data_dir; 0 = none.", min=0)
    prior_prompt: str = _f("", "data", "Class prompt of generated priors (e.g. 'a photo of a dog'); empty = the "
                           "dataset's captions without the trigger word.")
    prior_ratio: float = _f(1.0, "data", "Prior images per training image in each epoch.", gt=0, max=16)
    prior_loss_weight: float = _f(1.0, "data", "Loss weight of the prior images (DreamBooth's prior_loss_weight).",
                                  min=0)
    # model
    base_model: str = _f(
        "", "model",
        "Base model: a diffusers folder, a .safetensors/.ckpt file or a model id; "
        "empty = the built-in toy-world model.",
        path=True,
    )
    base_model_config: str = _f(
        "", "model", "Optional diffusers folder describing the architecture of a single-file checkpoint. A FLUX.1 "
        "transformer file needs one: a FLUX.1 diffusers folder or model id for its text encoders, VAE and "
        "tokenizers.", path=True
    )
    prediction_type: str = _f(
        "auto", "model", "What the model predicts: auto reads it from the model (a single file marked v_pred, such "
        "as NoobAI-XL v-pred, is v-prediction); set v_prediction for a v-pred checkpoint saved without that mark.",
        choices=("auto", "epsilon", "v_prediction"))
    allow_pickle: bool = _f(
        False, "model", "Allow a .ckpt (pickle) base model. Pickle files can run code: only for files you trust."
    )
    # lora
    lora_rank: int = _f(8, "lora", "LoRA rank: 4 tiny datasets, 8 general, 12 characters, 16 complex styles.", min=1)
    lora_alpha: float | None = _f(None, "lora", "LoRA alpha; empty = equal to the rank (scale 1.0).", gt=0)
    lora_dropout: float = _f(0.0, "lora", "Dropout on the LoRA layers (0 = off).", min=0, lt=1)
    target_modules: list[str] = _f(
        DEFAULT_UNET_MODULES, "lora", "Denoiser layers that get a LoRA: the UNet's attention projections by default. "
        "FLUX.1 LoRAs take both token streams' attention and MLP projections (to_q, to_k, to_v, to_out.0, add_q_proj, "
        "add_k_proj, add_v_proj, to_add_out, ff.net.0.proj, ff.net.2, ff_context.net.0.proj, ff_context.net.2: the "
        "flux presets set them); all-linear = every Linear layer of the UNet or transformer.", split=","
    )
    use_dora: bool = _f(False, "lora", "Train a DoRA (weight-decomposed LoRA) instead of a plain LoRA.")
    dora_axis: str = _f(
        "webui", "lora", "DoRA's decomposition: webui normalises input columns as ComfyUI, A1111 and Forge apply "
        "dora_scale (the WebUI file reproduces the run); diffusers normalises output rows as PEFT does (only the "
        "diffusers file reproduces the run).", choices=("webui", "diffusers"))
    train_text_encoder: bool = _f(False, "lora", "Also put LoRA layers into the text encoder (helps new words).")
    text_encoder_lr: float | None = _f(None, "lora", "Learning rate of the text encoder; empty = learning_rate.", gt=0)
    text_encoder_target_modules: list[str] = _f(
        DEFAULT_TEXT_MODULES, "lora", "Text-encoder layers that get a LoRA when train_text_encoder is on.", split=","
    )
    init_lora: str = _f("", "lora", "Existing LoRA file to continue training from (incremental training).", path=True)
    # training
    batch_size: int = _f(4, "training", "Images per step; lower it first when memory runs out.", min=1)
    gradient_accumulation_steps: int = _f(
        1, "training", "Steps whose gradients are summed before one update (a bigger batch without the memory).", min=1
    )
    epochs: int = _f(10, "training", "Passes over the dataset; 10-15 is usually enough, watch the loss.", min=1)
    max_steps: int | None = _f(None, "training", "Stop after this many updates; overrides epochs when set.", min=1)
    learning_rate: float = _f(1e-4, "training", "Learning rate: 1e-4 to 2e-4 is safe, above 3e-4 is risky.", gt=0)
    lr_scheduler: str = _f("constant", "training", "Learning-rate schedule.", choices=SCHEDULERS)
    lr_warmup_steps: int = _f(0, "training", "Steps over which the learning rate ramps up from 0.", min=0)
    optimizer: str = _f("adamw", "training", "Optimiser.", choices=("adamw",))
    adam_weight_decay: float = _f(1e-2, "training", "AdamW weight decay.", min=0)
    max_grad_norm: float = _f(1.0, "training", "Gradients are clipped to this norm.", gt=0)
    mixed_precision: str = _f("no", "training", "Mixed precision: fp16/bf16 halve activation memory on a GPU.",
                              choices=("no", "fp16", "bf16"))
    base_weights: str = _f(
        "auto", "training", "Precision the frozen base model is stored in (the LoRA stays fp32): auto follows "
        "mixed_precision on a GPU and fp32 on a CPU; bf16/fp16 halve its memory on any device; fp8 quarters it "
        "(each layer upcast as it runs); nf4 is 4-bit QLoRA and needs bitsandbytes and a CUDA GPU.",
        choices=("auto", "fp32", "bf16", "fp16", "fp8", "nf4"))
    gradient_checkpointing: bool = _f(False, "training", "Recompute activations to save memory (slower).")
    noise_offset: float = _f(0.0, "training", "Noise offset (about 0.05) helps very dark or bright pictures.",
                             min=0, max=1)
    min_snr_gamma: float | None = _f(None, "training", "Min-SNR loss weighting gamma (5 is usual); empty = off.", gt=0)
    weighting_scheme: str = _f(
        "none", "training", "Flow-matching models (FLUX.1): how noise levels are drawn and weighted — none = uniform "
        "(diffusers' default), logit_normal (SD3's choice: mid noise levels more often), mode, sigma_sqrt, cosmap.",
        choices=("none", "sigma_sqrt", "logit_normal", "mode", "cosmap"))
    logit_mean: float = _f(0.0, "training", "Flow matching, logit_normal: mean (above 0 = more noise).")
    logit_std: float = _f(1.0, "training", "Flow matching, logit_normal: spread.", gt=0)
    mode_scale: float = _f(1.29, "training", "Flow matching, mode: how strongly mid noise levels are favoured.")
    flow_shift: float = _f(
        0.0, "training", "Flow matching: shift the drawn noise levels toward noise (3.0 suits 1024 px FLUX.1); "
        "0 = the model's own training schedule.", min=0, max=100)
    guidance_scale: float = _f(
        1.0, "training", "FLUX.1-dev: the guidance value the guidance-distilled transformer is told while training "
        "(1.0 as ai-toolkit and sd-scripts' guides advise; diffusers' example uses 3.5). Ignored by other models.",
        min=0, max=100)
    seed: int = _f(42, "training", "Random seed, for repeatable runs.", min=0, max=2**32 - 1)
    cache_latents: bool = _f(True, "training", "Encode each image once and reuse its latents (faster, more memory).")
    cpu_threads: int | None = _f(
        None, "training", "CPU threads torch trains with; empty = by the model's size (one for a small model such as "
        "the toy world, one per core for a large one), or OMP_NUM_THREADS when that is set.", min=1)
    # output
    output_dir: str = _f("./output", "output", "Folder for the LoRA, checkpoints, logs and samples.", path=True)
    output_name: str = _f("", "output", "File name (stem) of the LoRA; empty = the name of output_dir.")
    validation_steps: int = _f(
        0, "output", "Score a deterministic validation loss every N steps (fixed images, timesteps and noise; 0 = off).",
        min=0,
    )
    validation_split: float = _f(
        0.0, "output", "Share of images held out for the validation loss (0 = score the first 8 training images).",
        min=0, lt=1,
    )
    save_steps: int = _f(100, "output", "Save a checkpoint every N steps (0 = only at the end).", min=0)
    keep_last_n_checkpoints: int = _f(3, "output", "Checkpoints to keep (0 = keep all).", min=0)
    save_precision: str = _f("fp32", "output", "Precision of the saved LoRA weights.", choices=("fp32", "fp16", "bf16"))
    resume: str = _f("", "output", "Resume: empty = start fresh, 'latest' = newest checkpoint, or a checkpoint path.",
                     path=True)
    validation_prompts: list[str] = _f(
        [], "output", "Sample prompts rendered during training every sample_steps (one per line).", split="\n"
    )
    sample_steps: int = _f(0, "output", "Render the sample prompts every N steps and at the end (0 = off).", min=0)
    sample_guidance_scale: float | None = _f(
        None, "output", "Guidance the samples are drawn with; empty = the model's own (7.5 SD 1.x, 5 SDXL, 3.5 "
        "FLUX.1). FLUX.1-schnell is drawn with 1 (no guidance).", min=0, max=100)
    sample_inference_steps: int | None = _f(
        None, "output", "Denoising steps of each sample; empty = 20. FLUX.1-schnell needs only 4.", min=1, max=1000)
    trigger_word: str = _f(
        "", "output", "The trigger word: samples and the leak check also render each prompt without it."
    )
    task: str = _f("", "output", "Name of the task preset this config came from (informational).")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "TrainConfig":
        """Check and normalise every field in place; raise ``ConfigError`` listing all problems. Returns self."""
        current = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        values, issues, notes = normalise(current, field_specs())
        if issues:
            raise ConfigError.from_issues(issues)
        for name, value in values.items():
            setattr(self, name, value)
        self.notes = [sentence for _, sentence in notes]
        return self

    def effective_alpha(self) -> float:
        """LoRA alpha actually used: ``lora_alpha``, or the rank when unset (a scale of 1.0)."""
        return float(self.lora_alpha) if self.lora_alpha is not None else float(self.lora_rank)

    def effective_text_encoder_lr(self) -> float:
        """Text-encoder learning rate actually used: ``text_encoder_lr``, or ``learning_rate`` when unset."""
        return float(self.text_encoder_lr) if self.text_encoder_lr is not None else float(self.learning_rate)

    def resolved_metadata_path(self) -> str:
        """``metadata_path``, or ``<train_data_dir>/metadata.csv`` when empty ("" when neither is set)."""
        if self.metadata_path:
            return self.metadata_path
        return str(Path(self.train_data_dir) / "metadata.csv") if self.train_data_dir else ""

    def resolved_output_name(self) -> str:
        """``output_name``, or the output folder's name made safe as a file stem (``lora`` as a last resort)."""
        if self.output_name:
            return self.output_name
        return sanitise_stem(os.path.basename(os.path.normpath(self.output_dir))) or "lora"

    def resolve_paths(self, relative_to: str | os.PathLike) -> "TrainConfig":
        """A copy with every relative local path made absolute against ``relative_to``.

        Model ids such as ``org/model`` (``base_model``, ``base_model_config``) and ``resume: latest`` are left
        alone; so are empty settings.
        """
        root = Path(relative_to).expanduser()
        changes = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if not f.metadata.get("path") or not value or (f.name == "resume" and value == "latest"):
                continue
            if f.name in ("base_model", "base_model_config") and not looks_like_local_path(value, root):
                continue
            path = Path(value).expanduser()
            changes[f.name] = str(path if path.is_absolute() else (root / path).resolve())
        return dataclasses.replace(self, **changes)


@lru_cache(maxsize=1)
def field_specs() -> dict[str, FieldSpec]:
    """Kind (int, float, bool, str, list), optionality and limits of every setting, for the validator."""
    hints = get_type_hints(TrainConfig)
    return {f.name: FieldSpec.from_type(f.name, hints[f.name], f.metadata) for f in dataclasses.fields(TrainConfig)}


def config_fields() -> list[dataclasses.Field]:
    """The settings in declaration order (the order of the form and of saved files)."""
    return list(dataclasses.fields(TrainConfig))


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def field_help(name: str) -> str:
    """The help sentence of setting ``name`` (KeyError for an unknown name)."""
    for f in dataclasses.fields(TrainConfig):
        if f.name == name:
            return f.metadata["help"]
    raise KeyError(name)


def fields_by_section() -> dict[str, list[str]]:
    """Section name -> setting names, both in declaration order."""
    grouped: dict[str, list[str]] = {section: [] for section in SECTIONS}
    for f in dataclasses.fields(TrainConfig):
        grouped[f.metadata["section"]].append(f.name)
    return grouped
