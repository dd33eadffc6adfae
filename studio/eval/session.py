"""The pipeline and its LoRA adapters during a grid: load once, switch weights with ``set_adapters``, clean up.

``pipeline_cache`` is a plain dict the caller keeps (the studio keeps one per session), so a base model is loaded
once however many grids are drawn on it. Every adapter a grid loads is deleted again when it ends, and the
sampler is put back, so a cached pipeline is always left as the base model.
"""
from __future__ import annotations

import logging
import os
import re
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import torch

from .spec import EvalError

if TYPE_CHECKING:
    from diffusers import DiffusionPipeline
    from PIL import Image

ADAPTER_PREFIX = "grid_"  # never "eval": PEFT's ModuleDicts collide with nn.Module.eval


def pick_device(device: str = "auto") -> str:
    """"auto" -> "cuda" when a GPU is usable, else "cpu"; anything else is passed through."""
    if device in ("", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def get_pipeline(base_model: str, base_model_config: str = "", device: str = "auto",
                 cache: dict | None = None) -> DiffusionPipeline:
    """The base model's pipeline (its family's) on ``device`` (float16 on CUDA), from ``cache`` when it is there."""
    from studio.models import load_pipeline

    device = pick_device(device)
    key = ("pipeline", str(base_model or ""), str(base_model_config or ""), device)
    if cache is not None and key in cache:
        pipe = cache[key]
        remove_grid_adapters(pipe)
        return pipe
    dtype = torch.float16 if device.startswith("cuda") else torch.float32
    pipe = load_pipeline(base_model, base_model_config, dtype=dtype).to(device)
    pipe.set_progress_bar_config(disable=True)
    if cache is not None:
        cache[key] = pipe
    return pipe


def loaded_adapters(pipe: DiffusionPipeline) -> set[str]:
    try:
        return {name for names in pipe.get_list_adapters().values() for name in names}
    except (AttributeError, ValueError):
        return set()


def remove_grid_adapters(pipe: DiffusionPipeline) -> None:
    """Delete adapters a grid left behind (one that was interrupted half-way)."""
    stale = sorted(name for name in loaded_adapters(pipe) if name.startswith(ADAPTER_PREFIX))
    if stale:
        pipe.delete_adapters(stale)


class Adapters:
    """LoRA files loaded into one pipeline as named adapters; ``activate`` sets every adapter's weight at once.

    ``fused`` merges the active adapters into the base weights while pictures are drawn, so sampling pays no
    LoRA cost per layer and step; the exact base weights are put back afterwards.
    """

    def __init__(self, pipe: DiffusionPipeline) -> None:
        self.pipe = pipe
        self.names: dict[str, str] = {}  # file path -> adapter name
        self._originals: dict = {}  # LoRA-wrapped base layer -> its untouched (weight, bias)

    def __enter__(self) -> "Adapters":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def load(self, path: str | os.PathLike) -> str:
        """Load a LoRA file once; returns its adapter name."""
        key = str(path)
        if key not in self.names:
            name = f"{ADAPTER_PREFIX}{len(self.names)}"
            _check_loadable(self.pipe, key)
            try:
                with _quiet_loading(name):
                    self.pipe.load_lora_weights(key, adapter_name=name)
            except (ValueError, RuntimeError, KeyError, OSError) as error:
                first = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
                raise EvalError(f"{key} cannot be loaded as a LoRA for this base model ({first}): check that it "
                                "was trained on the same base model architecture.") from error
            self.names[key] = name
        return self.names[key]

    def activate(self, weights: dict[str, tuple[float, float]]) -> None:
        """``{path: (unet weight, text-encoder weight)}``; adapters not named are switched off."""
        names = [self.load(path) for path in weights]
        parts = self.pipe.get_list_adapters()  # {"unet": [names], "text_encoder": [names], ...}
        values = []
        for name, (unet_weight, te_weight) in zip(names, weights.values()):
            if unet_weight == te_weight:
                values.append(float(unet_weight))
            else:  # only the parts this adapter has: diffusers warns about the others on every call
                split = {"unet": float(unet_weight), "transformer": float(unet_weight),
                         "text_encoder": float(te_weight), "text_encoder_2": float(te_weight)}
                values.append({part: w for part, w in split.items() if name in parts.get(part, [])})
        self.pipe.set_adapters(names, values)

    @contextmanager
    def fused(self, weights: dict[str, tuple[float, float]]) -> Iterator[None]:
        """``activate(weights)``, then draw with the adapters merged into the base weights (``fuse_lora``).

        Merged layers skip the LoRA's extra matrix products at every step (about a fifth of a small model's
        sampling time on a CPU). On leaving, ``unfuse_lora`` and a copy of the saved base weights undo it
        exactly, so a later weight-0 picture is bit for bit the base model's. No weights: the base model.
        """
        if not weights:  # nothing to merge: the base model, with every adapter switched off
            if not loaded_adapters(self.pipe):
                yield
                return
            self.pipe.disable_lora()
            try:
                yield
            finally:
                self.pipe.enable_lora()
            return
        self.activate(weights)
        names = [self.names[str(path)] for path in weights]
        from .weighting import PARTS

        components = [part for part in getattr(self.pipe, "_lora_loadable_modules", PARTS)  # FLUX.1: not T5
                      if part in PARTS and getattr(self.pipe, part, None) is not None]
        self._save_base_weights()
        with torch.no_grad():
            self.pipe.fuse_lora(components=components, lora_scale=1.0, adapter_names=names)
        try:
            yield
        finally:
            with torch.no_grad():
                self.pipe.unfuse_lora(components=components)
                for layer, (weight, bias) in self._originals.items():
                    layer.weight.copy_(weight)
                    if bias is not None:
                        layer.bias.copy_(bias)

    @contextmanager
    def per_picture(self, path: str | os.PathLike, weights: list[float],
                    others: dict[str, tuple[float, float]]) -> Iterator[None]:
        """``path`` at ``weights[i]`` for picture ``i`` of each batch, the ``others`` at their fixed weights.

        Lets one pipeline call draw a row at several weights (see ``weighting``); plain LoRAs only.
        """
        from .weighting import per_picture_weights

        self.activate({str(path): (1.0, 1.0), **others})
        with per_picture_weights(self.pipe, self.names[str(path)], weights):
            yield

    def per_picture_possible(self, path: str | os.PathLike) -> bool:
        """Whether ``path`` (loaded here if needed) is a plain LoRA that ``per_picture`` can weight."""
        from .weighting import supports_per_picture_weights

        return supports_per_picture_weights(self.pipe, self.load(path))

    def _save_base_weights(self) -> None:
        """Keep a copy of every LoRA-wrapped layer's weight (and bias) the first time it could be merged."""
        from .weighting import lora_layers

        for module in lora_layers(self.pipe):
            layer = module.get_base_layer()
            if layer not in self._originals:
                bias = getattr(layer, "bias", None)
                self._originals[layer] = (layer.weight.detach().clone(),
                                          None if bias is None else bias.detach().clone())

    def close(self) -> None:
        present = loaded_adapters(self.pipe)
        names = [name for name in self.names.values() if name in present]
        if names:
            with _quiet_loading():
                self.pipe.delete_adapters(names)
        self.names.clear()
        self._originals.clear()


def _check_loadable(pipe, lora_path: str) -> None:
    """Refuse, with a sentence saying why, a LoRA trained on another model family (an SD 1.x LoRA on SDXL) and a
    WebUI-layout DoRA, which diffusers would load without its magnitudes (a different model, drawn silently)."""
    from studio.lora.info import has_webui_dora, lora_family
    from studio.models.families import family_named, family_of_pipeline

    if has_webui_dora(lora_path):
        raise EvalError(f"{lora_path} is a DoRA in the ComfyUI/A1111 layout (dora_scale per input column), which the "
                        "studio's diffusers pipeline cannot apply yet: test it in ComfyUI or Forge, or train with "
                        "dora_axis: diffusers to evaluate the run here.")
    said = lora_family(lora_path)  # the header only: the loader reads the tensors next
    if not said:
        return  # the file does not say (or cannot be read); diffusers' loader is the judge
    trained_on = family_named(said)
    base = family_of_pipeline(pipe)
    if trained_on is not base:
        raise EvalError(f"{lora_path} is {_a(trained_on.label)} LoRA and the base model is {base.label}: pick a LoRA "
                        f"trained on {_a(base.label)} model, or {_a(trained_on.label)} base model.")


def _a(label: str) -> str:  # "an SDXL", "a FLUX.1"
    return f"{'an' if label.startswith('SD') else 'a'} {label}"


class EarlierAdaptersReport(logging.Filter):
    """Drops transformers' "LOAD REPORT" when all it lists is the weights of adapters loaded earlier, as MISSING.

    Loading one more LoRA into a text encoder, transformers (5.x) expects the weights of every adapter the model
    holds, so each adapter after the first gets a report of some 50 lines naming the earlier adapters' weights
    MISSING, though those are loaded and untouched. A report with any other row (a weight of the adapter being
    loaded, an unexpected or a mismatched key) is a real problem and passes.
    """

    def __init__(self, loading: str) -> None:
        super().__init__()
        self.loading = loading

    def filter(self, record: logging.LogRecord) -> bool:
        text = _ANSI.sub("", record.getMessage())
        if "LOAD REPORT" not in text:
            return True
        rows = [[cell.strip() for cell in line.split("|")] for line in text.splitlines() if line.count("|") >= 2]
        rows = [(key, status) for key, status, *_ in rows if status and status != "Status"]
        if not rows:
            return True
        for key, status in rows:
            adapter = _ADAPTER_IN_KEY.search(key)
            if status != "MISSING" or adapter is None or adapter.group(1) == self.loading:
                return True
        return False


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ADAPTER_IN_KEY = re.compile(r"\.lora_(?:A|B|embedding_A|embedding_B|magnitude_vector)\.([^.\s]+)")
TRANSFORMERS_PEFT_LOGGER = "transformers.integrations.peft"


@contextmanager
def _quiet_loading(adapter: str = ""):
    """Silence what diffusers / PEFT / transformers say on every load of a second adapter or a UNet-only LoRA:
    expected here (``adapter``: the one being loaded, "" when none is)."""
    from diffusers.utils import logging as diffusers_logging

    level = diffusers_logging.get_verbosity()
    diffusers_logging.set_verbosity_error()
    report_filter = EarlierAdaptersReport(adapter)
    logging.getLogger(TRANSFORMERS_PEFT_LOGGER).addFilter(report_filter)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*(peft_config|was active which is now deleted).*")
            yield
    finally:
        logging.getLogger(TRANSFORMERS_PEFT_LOGGER).removeFilter(report_filter)
        diffusers_logging.set_verbosity(level)


def image_size(pipe: DiffusionPipeline, width: int = 0, height: int = 0) -> tuple[int, int]:
    """(width, height): the given ones, or the model's native size."""
    from studio.models.families import family_of_pipeline

    native = family_of_pipeline(pipe).native_size(pipe)
    return (width or native), (height or native)


def initial_latents(pipe: DiffusionPipeline, seed: int, width: int, height: int) -> torch.Tensor:
    """The starting noise for ``seed``: drawn on the CPU in float32, so every device and weight gets the same."""
    from studio.models.families import family_of_pipeline

    return family_of_pipeline(pipe).initial_latents(pipe, seed, width, height)


def generate(pipe: DiffusionPipeline, prompts: list[str], negatives: list[str], seeds: list[int], *, steps: int,
             guidance: float, width: int, height: int) -> list[Image.Image]:
    """One PIL image per (prompt, negative, seed), in one pipeline call, each from its seed's initial noise.

    The seeds' generators also drive ancestral / SDE samplers, so those are repeatable too.
    """
    from studio.models.families import family_of_pipeline

    family = family_of_pipeline(pipe)
    device = pipe._execution_device
    latents = torch.cat([initial_latents(pipe, seed, width, height) for seed in seeds])
    generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
    with torch.inference_mode():
        output = pipe(
            prompts, latents=latents.to(device, family.denoiser_of(pipe).dtype), generator=generators,
            num_inference_steps=steps, width=width, height=height,
            **family.call_kwargs(pipe, list(negatives), guidance),
        )
    return list(output.images)
