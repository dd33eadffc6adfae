"""What a grid asks for (``GridSpec``) and what it produced (``GridCell``, ``GridResult``), plus argument parsing.

Plain dataclasses: the studio's Evaluation tab builds a ``GridSpec`` from its widgets, the CLI from its flags.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_WEIGHTS = [0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
MAX_CELLS = 2000  # a typo like --weights 0:1:0.0001 should fail fast, not render for a day


class EvalError(ValueError):
    """Something the user passed to an evaluation cannot work; the message names it and what to pass instead."""


@dataclass
class GridSpec:
    """One X/Y grid: columns are LoRA weights, rows are checkpoint × prompt (× with/without trigger) × seed.

    ``lora``: a run folder, a checkpoint folder, a LoRA ``.safetensors`` or a name found in ``lora_dirs``.
    ``base_model``: "" uses the run's ``config.yaml`` base model, else the embedded toy world.
    ``checkpoints``: [] renders the LoRA itself; ["all"] every checkpoint of its run plus the final file; or
    checkpoint folders / LoRA files, one row group each. ``trigger``: when set, every prompt is drawn with and
    without it. Prompts may hold ``<lora:name:weight>`` tags: those LoRAs join every cell at a fixed weight.
    ``clip_model``: a CLIP folder or hub id for the text-image score ("" = no CLIP score). ``checker``: "auto"
    reads cells with the first registered concept checker that applies to the base model or its pictures (the
    toy world's on toy-world pictures), "on" with the first registered one, "off" with none (``concepts.py``).
    """

    lora: str
    base_model: str = ""
    prompts: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    weights: list[float] = field(default_factory=lambda: list(DEFAULT_WEIGHTS))
    include_reference: bool = False
    checkpoints: list[str] = field(default_factory=list)
    negative_prompt: str = ""
    steps: int = 25
    guidance: float = 5.0
    sampler: str = "auto"  # DDIM for UNet models, flow-matching Euler for FLUX.1 (samplers.AUTO)
    trigger: str = ""
    lora_dirs: list[str] = field(default_factory=list)
    clip_model: str = ""
    checker: str = "auto"
    width: int = 0  # 0 = the model's own size
    height: int = 0
    batch_size: int = 8  # images per pipeline call
    device: str = "auto"  # "auto" = CUDA when available, else CPU


@dataclass
class GridCell:
    """One picture of the grid. ``path`` is its own PNG; ``metrics`` holds what was measured on it."""

    prompt: str
    seed: int
    weight: float
    checkpoint: str
    path: Path
    metrics: dict = field(default_factory=dict)
    row: int = 0
    column: int = 0


@dataclass
class GridResult:
    """What ``render_grid`` wrote: the labelled PNG, every cell, the ``grid.json`` index and the grid's metrics.

    ``stopped`` is True when ``should_stop`` ended the grid early; the files then hold the cells drawn so far.
    ``checker_name``: the concept checker that read the cells ("" = none did).
    """

    grid_png: Path
    cells: list[GridCell]
    index_json: Path
    metrics: dict
    out_dir: Path | None = None
    lora_path: Path | None = None
    run_dir: Path | None = None
    base_model: str = ""
    stopped: bool = False
    checker_name: str = ""


def parse_weights(text: str) -> list[float]:
    """``"0.4:0.9:0.1"`` (start:stop:step, stop included) or ``"0,0.5,1"`` -> a list of weights."""
    text = str(text).strip()
    try:
        if ":" in text:
            parts = [float(p) for p in text.split(":")]
            if len(parts) != 3:
                raise ValueError
            start, stop, step = parts
            if step <= 0 or stop < start:
                raise EvalError(f"weights {text!r}: use start:stop:step with stop >= start and a step above 0.")
            count = int(math.floor((stop - start) / step + 1e-6)) + 1
            if count > MAX_CELLS:
                raise EvalError(f"weights {text!r} gives {count} columns: use a larger step.")
            return [round(start + i * step, 6) for i in range(count)]
        return [float(p) for p in text.split(",") if p.strip()]
    except ValueError as error:
        if isinstance(error, EvalError):
            raise
        raise EvalError(f"weights {text!r}: write start:stop:step (0.4:0.9:0.1) or a list (0.4,0.6,0.8).") from None


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` or ``"0-3"`` (3 included) -> a list of seeds (whole numbers, 0 or more)."""
    seeds: list[int] = []
    try:
        for part in str(text).split(","):
            low, _, high = part.strip().partition("-")
            if low.strip():
                seeds.extend(range(int(low), int(high) + 1) if high.strip() else [int(low)])
    except ValueError:
        raise EvalError(f"seeds {text!r}: write whole numbers separated by commas (0,1,2) or a range (0-3).") from None
    return seeds


def _whole(value) -> bool:
    """0, 1, 2 … (a UI number box may hand over 3.0)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 and float(value).is_integer()


def check_spec(spec: GridSpec) -> None:
    """Raise ``EvalError`` naming every field that cannot work, before anything is loaded."""
    problems = []
    if not str(spec.lora or "").strip():
        problems.append("lora is empty: pass a run folder, a checkpoint folder, a LoRA .safetensors file or a name")
    if not [p for p in spec.prompts if str(p).strip()]:
        problems.append("prompts is empty: give at least one prompt")
    if not spec.seeds:
        problems.append("seeds is empty: give at least one seed, e.g. [0]")
    if any(not _whole(s) for s in spec.seeds):
        problems.append(f"seeds {spec.seeds} must be whole numbers, 0 or more")
    elif len({int(s) for s in spec.seeds}) != len(spec.seeds):
        problems.append("seeds has a value twice: list each seed once")
    if not spec.weights:
        problems.append("weights is empty: give at least one LoRA weight, e.g. [0.4, 0.6, 0.8]")
    elif not all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) for w in spec.weights):
        problems.append(f"weights {spec.weights} must be finite numbers, e.g. [0.4, 0.6, 0.8]")
    elif len(set(float(w) for w in spec.weights)) != len(spec.weights):
        problems.append("weights has a value twice: list each weight once")
    if spec.steps < 1:
        problems.append(f"steps is {spec.steps}: use 1 or more (25 is usual)")
    if spec.guidance < 0:
        problems.append(f"guidance is {spec.guidance}: use 0 or more (5-7 is usual)")
    if spec.checker not in ("auto", "on", "off"):
        problems.append(f"checker is {spec.checker!r}: use auto, on or off")
    if spec.batch_size < 1:
        problems.append(f"batch_size is {spec.batch_size}: use 1 or more")
    for name in ("width", "height"):
        value = getattr(spec, name)
        if value < 0 or value % 8:
            problems.append(f"{name} is {value}: use 0 (the model's size) or a multiple of 8")
    if problems:
        raise EvalError("the grid cannot run: " + "; ".join(problems) + ".")


def column_weights(spec: GridSpec) -> list[float]:
    """The grid's columns: the 0.0 reference first when asked for, then the weights as given."""
    weights = [float(w) for w in spec.weights]
    if spec.include_reference and 0.0 not in weights:
        weights = [0.0] + weights
    return weights


def weight_label(weight: float) -> str:
    """``0.4`` -> ``"0.4"``, ``1.0`` -> ``"1"`` (the text used in headers, file names and JSON keys)."""
    return f"{float(weight):g}"
