"""Everything a training run needs, built from a ``TrainConfig``: accelerator, models + LoRA, optimizer, data."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from .adapters import add_lora_adapters, load_initial_lora
from .batches import BatchSource, TextConditioner
from .threads import ThreadChoice, use_threads

if TYPE_CHECKING:
    from accelerate import Accelerator

    from studio.config import TrainConfig
    from studio.data import BucketBatchSampler, TrainingImages
    from studio.models import Components
    from studio.models.families.objectives import Objective
    from studio.models.precision import WeightPlan

    from .validation import Validator

log = logging.getLogger(__name__)


def make_accelerator(mixed_precision: str, warn: Callable[[str], None]) -> Accelerator:
    """An ``Accelerator`` for this run.

    accelerate keeps its state process-wide: a second ``Accelerator`` with another ``mixed_precision`` raises.
    A single-process run (the studio, the CLI, tests) owns that state, so it is reset before each run; under
    ``accelerate launch`` (several processes) the launcher's state is kept and must match.
    fp16 needs CUDA: on a CPU it falls back to fp32 with a warning.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, PartialState

    if mixed_precision == "fp16" and not torch.cuda.is_available():
        warn("mixed_precision fp16 needs a CUDA GPU; training in fp32 on the CPU (bf16 also works on CPUs)")
        mixed_precision = "no"
    distributed = PartialState._shared_state and PartialState().num_processes > 1
    if AcceleratorState._shared_state and not distributed:
        AcceleratorState._reset_state()
    # cpu=True on a machine without CUDA: under ``accelerate launch`` that selects gloo (MULTI_CPU).
    return Accelerator(mixed_precision=mixed_precision, cpu=not torch.cuda.is_available())


@dataclass(kw_only=True)
class TrainingSetup:
    """The parts of a run; the loop reads them, ``run.py`` builds and saves them."""

    config: TrainConfig
    accelerator: Accelerator
    components: Components
    objective: Objective  # what the denoiser learns to predict, and at which noise levels
    params: list[torch.nn.Parameter]  # the trainable LoRA tensors, in fp32
    optimizer: torch.optim.Optimizer
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler
    batches: BatchSource
    text: TextConditioner
    total_steps: int
    num_images: int  # training pictures, prior pictures not counted
    tag_frequency: dict[str, int]
    validator: Validator | None = None  # on the main process when validation_steps > 0
    prior_count: int = 0  # prior pictures mixed in (they follow the training pictures in ``batches``)
    prior_folder: str = ""
    threads: ThreadChoice | None = None  # the CPU threads this run trains with, and why

    def validation_loss(self) -> float | None:
        if self.validator is None:
            return None
        return self.validator(self.accelerator.unwrap_model(self.components.denoiser), self.text)

    @property
    def trained_models(self) -> list:
        """The (accelerate-prepared) models whose LoRA is trained."""
        models = [self.components.denoiser]
        if self.config.train_text_encoder:
            models += list(self.components.lora_text_encoders.values())
        return models

    @property
    def effective_batch(self) -> int:
        return self.config.batch_size * self.accelerator.num_processes * self.config.gradient_accumulation_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps_per_epoch(self.config.gradient_accumulation_steps)

    @property
    def num_epochs(self) -> int:
        return -(-self.total_steps // self.steps_per_epoch)


@dataclass
class TrainingData:
    images: TrainingImages  # the training set (prior pictures appended when they are mixed in)
    captions: list[str]
    buckets: list[tuple[int, int]]
    sampler: BucketBatchSampler
    validation_images: TrainingImages
    validation_captions: list[str]
    validation_indices: list[int]
    loss_weights: list[float] | None = None  # per picture when prior pictures are mixed in
    prior_folder: str = ""  # the prior folders, joined by " and "
    prior_count: int = 0


def load_data(config: TrainConfig, num_processes: int = 1) -> TrainingData:
    """Read and check the dataset, and split off the validation images when ``validation_split`` > 0.

    Markdown structure (``**core**``, ``*mood*``) and ``(word:1.3)`` weighting are stripped: the text encoder
    sees exactly the words, as if the caption had been written plainly.
    """
    from studio.caption import strip_markup
    from studio.data import BucketBatchSampler, TrainingImages, load_training_set

    from .validation import split_for_validation

    images_dir = Path(config.train_data_dir)
    records = load_training_set(images_dir, Path(config.resolved_metadata_path())).records
    train, held = split_for_validation(len(records), config.validation_split, config.seed)
    # Every picture is decoded once here, before any model is loaded: all broken files in one DatasetError.
    every = TrainingImages(images_dir, records, config.resolution, config.bucketing, random_flip=False)
    images = every.subset(train)
    captions = [strip_markup(records[i].prompt) for i in train]
    buckets = list(images.bucket_of_index)
    # Batches are global: batch_size images per process, each process trains on its own slice.
    sampler = BucketBatchSampler(buckets, config.batch_size * num_processes, config.seed, repeats=config.repeats)
    if config.validation_split > 0:
        return TrainingData(images, captions, buckets, sampler, every.subset(held),
                            [strip_markup(records[i].prompt) for i in held], list(range(len(held))))
    return TrainingData(images, captions, buckets, sampler, images, captions, held)


def _prepare_models(components: Components, config: TrainConfig, accelerator: Accelerator, plan: WeightPlan):
    """Move the models to the device, add the LoRA (fp32) and store the frozen base as ``plan`` says.

    ``auto`` and nf4 cast the base while moving it, before the adapters are added; bf16, fp16 and fp8 arrive
    from disk in their compute dtype (``load_dtype``; fp16 keeps an fp32 load for its fp32 VAE). Either way PEFT
    creates each adapter in its base layer's dtype and it is then cast to fp32; only the frozen tensors are
    stored as the plan says."""
    from studio.models.precision import cast_vae_inputs, store_base_weights

    device = accelerator.device
    components.vae.requires_grad_(False)
    _move(components.vae, device, plan.vae)
    encoders = components.text_encoders
    for module in (components.denoiser, *encoders.values()):
        _move(module, device, plan.compute if plan.choice in ("auto", "nf4") else None)
    trainable = components.lora_text_encoders
    params = add_lora_adapters(components.denoiser, trainable, config, components.family)
    if config.init_lora:
        load_initial_lora(components.denoiser, trainable, config.init_lora, config, components.family)
    store_base_weights([components.denoiser, *encoders.values()], plan)
    cast_vae_inputs(components.vae)  # samples and priors hand it latents in the denoiser's dtype (or fp32 noise)
    if config.gradient_checkpointing:
        components.denoiser.enable_gradient_checkpointing()
        if config.train_text_encoder:
            for encoder in trainable.values():
                encoder.gradient_checkpointing_enable()
    components.denoiser.train()
    for name, encoder in encoders.items():
        encoder.train(config.train_text_encoder and name in trainable)
    components.vae.eval()
    return params


def check_picture_grid(config: TrainConfig, components: Components) -> None:
    """Refuse sizes whose latents the denoiser cannot take (FLUX packs 2 × 2 latent patches: 16 px sides)."""
    from studio.config import ConfigError
    from studio.data.buckets import default_step

    multiple = components.family.pixel_multiple(components.vae)
    side = default_step(config.resolution) if config.bucketing else config.resolution
    if side % multiple:
        what = f"buckets of {side} px steps" if config.bucketing else f"{side} × {side} px pictures"
        lower = config.resolution // multiple * multiple
        choices = f"{lower} or {lower + multiple}" if lower else str(multiple)
        raise ConfigError([
            f"resolution {config.resolution}: {components.family.label} needs picture sides in multiples of "
            f"{multiple} px and this gives {what}: use resolution {choices}"
            + ("" if config.bucketing else " or turn bucketing on")])


def load_dtype(plan: WeightPlan) -> torch.dtype:
    """The dtype the base model is read from disk in: bf16/fp16/fp8 read it in their compute dtype, so neither
    the machine's memory nor the GPU ever holds an fp32 copy (FLUX.1-dev: 48 GB in fp32, 24 GB in bf16); the
    VAE is then already in its dtype too, unless fp16 keeps it in fp32. auto and fp32 read fp32 (auto casts after
    loading, as it always has; nf4 quantizes on load)."""
    if plan.choice in ("bf16", "fp16", "fp8") and plan.vae == plan.compute:
        return plan.compute
    return torch.float32


def _move(module: torch.nn.Module, device: torch.device, dtype: torch.dtype | None) -> None:
    """``module`` onto ``device`` (and into ``dtype`` when given and different: diffusers warns about any cast)."""
    if dtype is None or module.dtype == dtype or getattr(module, "is_quantized", False):
        module.to(device)
    else:
        module.to(device, dtype=dtype)


def _optimizer(components: Components, config: TrainConfig) -> torch.optim.Optimizer:
    unet_params = [p for p in components.denoiser.parameters() if p.requires_grad]
    groups = [{"params": unet_params, "lr": config.learning_rate}]
    if config.train_text_encoder:
        te_params = [p for encoder in components.lora_text_encoders.values() for p in encoder.parameters()
                     if p.requires_grad]
        groups.append({"params": te_params, "lr": config.text_encoder_lr or config.learning_rate})
    # The fused kernel updates every tensor in one call: a LoRA has hundreds of small tensors, and the per-tensor
    # loop costs more than the arithmetic (4.3 ms vs 0.8 ms a step for the SDXL demo's 156 tensors on one CPU thread).
    fused = all(p.device.type in ("cpu", "cuda") for group in groups for p in group["params"])
    return torch.optim.AdamW(groups, lr=config.learning_rate, weight_decay=config.adam_weight_decay,
                             fused=fused or None)


def build_setup(config: TrainConfig, warn: Callable[[str], None] = log.warning,
                progress: Callable[[int, int], None] | None = None,
                note: Callable[[str], None] = log.info) -> TrainingSetup:
    """Load the model and data named by ``config`` and make them ready to train."""
    from diffusers.optimization import get_scheduler

    from studio.caption import tag_frequency
    from studio.models import load_components
    from studio.models.precision import check_base_weights, plan_weights

    accelerator = make_accelerator(config.mixed_precision, warn)
    plan = plan_weights(config.base_weights, accelerator.device.type, accelerator.mixed_precision)
    check_base_weights(config.base_weights, accelerator.device.type)
    data = load_data(config, accelerator.num_processes)
    components = load_components(config.base_model, config.base_model_config, dtype=load_dtype(plan),
                                 allow_pickle=config.allow_pickle, prediction_type=config.prediction_type, weights=plan)
    check_picture_grid(config, components)
    objective = components.family.objective(components, config)
    for sentence in components.family.ignored_settings(config):
        warn(sentence)
    threads = use_threads(config, components.denoiser, accelerator, note)  # before the priors: they are drawn with it
    data = _with_priors(data, config, components, accelerator, note)
    images, captions, buckets, sampler = data.images, data.captions, data.buckets, data.sampler
    params = _prepare_models(components, config, accelerator, plan)
    source = BatchSource(images, captions, buckets, sampler, components.vae, config, accelerator.device, plan.compute,
                         accelerator.process_index, accelerator.num_processes, data.loss_weights)
    text = TextConditioner(components, accelerator.device, config.train_text_encoder, accelerator.unwrap_model,
                           plan.compute if plan.casts_inputs else None)
    if config.cache_latents:
        source.fill_latent_cache(progress)
    if not config.train_text_encoder:
        text.fill_cache(captions + data.validation_captions)
        _offload_cached_encoders(components, accelerator.device, note)
    validator = None
    if config.validation_steps and accelerator.is_main_process:
        from .validation import Validator

        validator = Validator(data.validation_images, data.validation_captions, data.validation_indices,
                              components, accelerator.device, objective, config.guidance_scale)
    steps_per_epoch = source.steps_per_epoch(config.gradient_accumulation_steps)
    total = config.max_steps or config.epochs * steps_per_epoch
    optimizer = _optimizer(components, config)
    lr_scheduler = get_scheduler(
        config.lr_scheduler, optimizer, num_warmup_steps=config.lr_warmup_steps, num_training_steps=total
    )
    prepared = accelerator.prepare(components.denoiser, optimizer)
    components.denoiser, optimizer = prepared
    if config.train_text_encoder:
        for name, encoder in components.lora_text_encoders.items():
            setattr(components, name, accelerator.prepare(encoder))
    concept_captions = captions[:len(captions) - data.prior_count]
    return TrainingSetup(
        config=config, accelerator=accelerator, components=components, objective=objective, params=params, optimizer=optimizer,
        lr_scheduler=lr_scheduler, batches=source, text=text, total_steps=total,
        num_images=len(images) - data.prior_count, tag_frequency=tag_frequency(concept_captions),
        validator=validator, prior_count=data.prior_count, prior_folder=str(data.prior_folder or ""),
        threads=threads,
    )


def _offload_cached_encoders(components: Components, device: torch.device, note: Callable[[str], None]) -> None:
    """With every caption's conditioning cached, the family's frozen text encoders leave the GPU for the step
    (FLUX's T5-XXL is about 9 GB in bf16); samples and priors still encode new prompts with them on the CPU."""
    if not components.family.offload_cached_text_encoders or device.type == "cpu":
        return
    for encoder in components.text_encoders.values():
        encoder.to("cpu")
    note(f"text encoders moved to the CPU: every caption's conditioning is cached ({components.family.label})")


def _with_priors(data: TrainingData, config: TrainConfig, components: Components, accelerator: Accelerator,
                 say: Callable[[str], None]) -> TrainingData:
    """``data`` with the prior pictures mixed in when the config asks for them (generated once if needed)."""
    if not (config.prior_data_dir or config.prior_count):
        return data
    from .priors import add_priors, prepare_priors

    folders = prepare_priors(config, components, data.captions, accelerator, log=say)
    return add_priors(data, folders, config, accelerator.num_processes)
