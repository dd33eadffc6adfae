"""Auto-captioning with BLIP: load a model from a folder or the hub, caption images in batches, cancel between them.

torch and transformers are imported when a model is loaded, so importing this module stays cheap.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from PIL import Image

from studio.caption.edits import add_prefix, add_suffix, apply_template
from studio.data import IMAGE_EXTENSIONS, CaptionRecord, DatasetError, DatasetProblem, load_rgb
from studio.data.images import pillow_error_text
from studio.util.hub import hub_offline as _offline  # module names: the tests replace them
from studio.util.hub import hub_reachable as _hub_reachable
from studio.util.reading import read_bytes_capped

DEFAULT_BLIP = "Salesforce/blip-image-captioning-base"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16", "half": "float16",
           "bfloat16": "bfloat16", "bf16": "bfloat16"}

Progress = Callable[[int, int], None]


class CaptionModelError(ValueError):
    """The captioning model cannot be loaded; the message says what to do instead."""


@dataclass
class Captioner:
    """A loaded BLIP captioning model, its processor, and where it runs."""

    model: object
    processor: object
    device: str
    dtype: object
    source: str

    def caption(self, images: list[Image.Image], batch_size: int = 8, max_new_tokens: int = 30,
                prompt: str | None = None, progress: Progress | None = None,
                should_stop: Callable[[], bool] | None = None) -> list[str]:
        """One caption per image, ``batch_size`` images per forward pass.

        ``prompt`` starts every caption (BLIP's conditional captioning, e.g. "a picture of"). ``progress(done,
        total)`` is called after each batch; when ``should_stop()`` turns true the captions made so far are
        returned (fewer than the images).
        """
        import torch

        if batch_size < 1:
            raise ValueError(f"batch size must be 1 or more, not {batch_size}")
        captions: list[str] = []
        for start in range(0, len(images), batch_size):
            if should_stop is not None and should_stop():
                break
            batch = [image.convert("RGB") if image.mode != "RGB" else image for image in images[start:start + batch_size]]
            with torch.inference_mode():
                captions += self._generate(batch, max_new_tokens, prompt)
            if progress is not None:
                progress(len(captions), len(images))
        return captions

    def _generate(self, batch: list[Image.Image], max_new_tokens: int, prompt: str | None) -> list[str]:
        prompts = [prompt] * len(batch) if prompt else None  # the same prompt for all: no padding needed
        inputs = self.processor(images=batch, text=prompts, return_tensors="pt")
        inputs = {name: value.to(self.device) for name, value in inputs.items()}
        inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        output = self.model.generate(**inputs, max_new_tokens=max_new_tokens)
        return [" ".join(text.split()) for text in self.processor.batch_decode(output, skip_special_tokens=True)]


def load_captioner(model: str = "", device: str = "auto", dtype: str = "auto", model_field: str = "") -> Captioner:
    """A BLIP captioner from a local folder (with config.json) or a hub id; "" means Salesforce's BLIP base.

    ``device`` "auto" picks cuda, then mps, then cpu; ``dtype`` "auto" is float16 on a GPU and float32 on the CPU.
    Raises :class:`CaptionModelError` with one sentence on what to do when the model cannot be loaded; it names
    where the user gives the model: ``model_field`` (such as the studio's field) or else the CLI's ``--model``.
    """
    source = model.strip() or DEFAULT_BLIP
    folder = Path(source).expanduser()
    if folder.exists():
        _check_folder(folder)
        source = str(folder)
    elif not _HUB_ID.match(source):
        raise CaptionModelError(f"{source} does not exist; pass the folder that holds the BLIP model's config.json, "
                                f"or a hub id such as {DEFAULT_BLIP}.")
    torch_device = _pick_device(device)
    torch_dtype = _pick_dtype(dtype, torch_device)
    local = folder.exists()
    try:
        with _quiet_transformers():
            processor, network = _from_pretrained(source, torch_dtype, local_only=True)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:  # what a broken or absent model raises
        if local or _offline() or not _hub_reachable():
            raise CaptionModelError(_load_message(source, local, error, model_field)) from None
        try:  # online, not downloaded yet
            with _quiet_transformers():
                processor, network = _from_pretrained(source, torch_dtype, local_only=False)
        except (OSError, ValueError, RuntimeError, KeyError, TypeError) as error:
            raise CaptionModelError(_load_message(source, False, error, model_field)) from None
    network = network.to(torch_device).eval()
    return Captioner(network, processor, torch_device, torch_dtype, source)


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder`` as sorted ``/``-separated relative paths, hidden files and folders skipped."""
    root = Path(folder)
    found = []
    for current, subfolders, files in os.walk(root):
        subfolders[:] = sorted(name for name in subfolders if not name.startswith("."))
        for name in files:
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append((Path(current).relative_to(root) / name).as_posix())
    return sorted(found)


def caption_folder(folder: str | os.PathLike, captioner: Captioner, template: str = "{caption}", prefix: str = "",
                   suffix: str = "", batch_size: int = 8, progress: Progress | None = None,
                   should_stop: Callable[[], bool] | None = None, skip: Iterable[str] = (), max_new_tokens: int = 30,
                   prompt: str | None = None) -> list[CaptionRecord]:
    """Caption every image in ``folder`` (except the relative paths in ``skip``): one record per image.

    The BLIP caption goes into ``template`` at ``{caption}``, then ``prefix`` and ``suffix`` are joined on with
    commas. Images are read (and checked first, all at once) through ``studio.data.load_rgb``; unreadable ones
    raise ``DatasetError`` naming every bad file before any captioning. Stopping returns the records so far.
    """
    apply_template([], template)  # a bad template fails now, not after an hour of captioning
    if batch_size < 1:
        raise ValueError(f"batch size must be 1 or more, not {batch_size}")
    root = Path(folder)
    if not root.is_dir():
        raise DatasetError([DatasetProblem(str(root), None, "the image folder does not exist; choose the folder "
                                           "that holds your images.")])
    skipped = set(skip)
    names = [name for name in list_images(root) if name not in skipped]
    _check_images(root, names)
    records: list[CaptionRecord] = []
    for start in range(0, len(names), batch_size):
        if should_stop is not None and should_stop():
            break
        chunk = names[start:start + batch_size]
        images = [load_rgb(root / name) for name in chunk]
        captions = captioner.caption(images, batch_size=batch_size, max_new_tokens=max_new_tokens, prompt=prompt)
        records += [CaptionRecord(name, text) for name, text in zip(chunk, captions)]
        if progress is not None:
            progress(len(records), len(names))
    return add_suffix(add_prefix(apply_template(records, template), prefix), suffix)


def _check_images(root: Path, names: list[str]) -> None:
    """Open every image's header (cheap) and verify its data, so a broken file stops us before the model runs."""
    problems = []
    for name in names:
        try:
            with Image.open(root / name) as image:
                image.verify()
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as error:
            problems.append(DatasetProblem(str(root / name), None, f"cannot be read as an image "
                                           f"({pillow_error_text(error)}); re-export it as PNG or JPEG, or move it "
                                           "out of the folder."))
    if problems:
        raise DatasetError(problems)


def _check_folder(folder: Path) -> None:
    config = folder / "config.json"
    if not config.is_file():
        raise CaptionModelError(f"{folder} has no config.json; pass the folder that holds the BLIP model's files "
                                "(config.json, model.safetensors, the processor and tokenizer files).")
    try:
        model_type = json.loads(read_bytes_capped(config, 1 << 20, "model config").decode("utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError) as error:
        raise CaptionModelError(f"{config} cannot be read ({error}); download the model again.") from None
    if model_type != "blip":
        raise CaptionModelError(f"{folder} holds a {model_type or 'unknown'} model, not BLIP; pass a BLIP captioning "
                                f"model such as {DEFAULT_BLIP}.")
    processor_files = ("processor_config.json", "preprocessor_config.json")
    if not any((folder / name).is_file() for name in processor_files):
        raise CaptionModelError(f"{folder} has no processor_config.json; save the processor next to the model "
                                "(processor.save_pretrained(folder)) or download the whole model folder again.")


def _from_pretrained(source: str, dtype, local_only: bool):
    from transformers import BlipForConditionalGeneration, BlipProcessor

    processor = BlipProcessor.from_pretrained(source, local_files_only=local_only)
    network = BlipForConditionalGeneration.from_pretrained(source, dtype=dtype, local_files_only=local_only)
    return processor, network


def _load_message(source: str, local: bool, error: BaseException, model_field: str = "") -> str:
    if local:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return f"{source} could not be loaded as a BLIP model ({first}); download the model folder again."
    name = Path(source).name
    use = f"put that folder's path in {model_field}" if model_field else f"pass that folder with --model {name}"
    return (f"No BLIP model here: {source} could not be loaded (offline or not downloaded); on a machine with "
            f"internet run  hf download {source} --local-dir {name}  and {use}.")


def _pick_device(device: str) -> str:
    import torch

    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    return "mps" if mps is not None and mps.is_available() else "cpu"


def _pick_dtype(dtype: str, device: str):
    import torch

    if dtype == "auto":
        return torch.float32 if device == "cpu" else torch.float16
    if dtype not in _DTYPES:
        raise CaptionModelError(f"Unknown precision {dtype!r}; use auto, float32, float16 or bfloat16.")
    return getattr(torch, _DTYPES[dtype])


@contextlib.contextmanager
def _quiet_transformers():
    """No loading progress bars and no "falling back to the PIL image processor" notice while loading."""
    from transformers.utils import logging

    verbosity, bars = logging.get_verbosity(), logging.is_progress_bar_enabled()
    logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        if bars:
            logging.enable_progress_bar()
