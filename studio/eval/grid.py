"""``render_grid``: draw a LoRA at several weights (× checkpoints × prompts × seeds) and measure the pictures.

One pipeline per base model (kept in ``pipeline_cache``), each LoRA file loaded once as an adapter, weights
switched with ``set_adapters`` (several weights in one batch through ``weighting``, or one weight merged into
the model); every row starts from its seed's noise at every weight. The weight-0 picture of each row is always
drawn (once for all checkpoints), because every metric compares with it; ``include_reference`` also shows it.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import metrics as m
from .concepts import ConceptChecker, pick_checker
from .output import write_outputs
from .prompts import parse_prompt, prompt_rows
from .resolve import default_search_dirs, find_run_dir, grid_checkpoints, resolve_lora, run_base_model
from .samplers import concrete_sampler, sampler_name, use_sampler
from .session import Adapters, generate, get_pipeline, image_size, pick_device
from .spec import MAX_CELLS, EvalError, GridResult, GridSpec, check_spec, column_weights
from .trigger import placement_for

if TYPE_CHECKING:
    from .clipscore import ClipScorer
    from .trigger import TriggerPlacement


@dataclass(frozen=True)
class GridRow:
    """One row: a checkpoint's LoRA, a prompt (as written and as drawn), the LoRAs its tags add, a seed."""

    index: int
    group: str
    lora: Path
    prompt: str
    text: str
    extra: tuple  # ((LoRA file, unet weight, text-encoder weight), ...) from <lora:…> tags
    seed: int
    trigger: bool | None


def plan_rows(spec: GridSpec, groups: list[tuple[str, Path]], search_dirs: list[Path],
              placement: TriggerPlacement | None = None) -> list[GridRow]:
    """Rows in drawing order: checkpoint, then prompt (with / without trigger, put where ``placement`` says),
    then seed."""
    rows: list[GridRow] = []
    resolved: dict[str, Path] = {}
    for label, lora in groups:
        for prompt, trigger in prompt_rows(spec.prompts, spec.trigger, placement):
            parsed = parse_prompt(prompt)
            extra = []
            for tag in parsed.loras:
                if tag.name not in resolved:
                    resolved[tag.name] = resolve_lora(tag.name, search_dirs)
                if resolved[tag.name].resolve() != lora.resolve():  # the LoRA under test follows the columns
                    extra.append((resolved[tag.name], tag.weight, tag.te_weight))
            for seed in spec.seeds:
                rows.append(GridRow(len(rows), label, lora, prompt, parsed.text, tuple(extra), int(seed), trigger))
    return rows


def _batches(rows: list[GridRow]) -> list[list[GridRow]]:
    """Rows that share their adapters (same LoRA and same tag LoRAs), in order of first appearance."""
    batches: dict[tuple, list[GridRow]] = {}
    for row in rows:
        batches.setdefault((str(row.lora), row.extra), []).append(row)
    return list(batches.values())


def _render(pipe, spec: GridSpec, rows: list[GridRow], weights: list[float], progress, should_stop):
    """{(row index, weight): PIL image} for every row at every weight, and whether it was stopped early.

    Per group of rows sharing their LoRAs: the weight-0 pictures first, with the LoRA under test left out (and
    shared between checkpoints: it is the base model's picture either way); then the other weights, either
    mixed in full batches with a weight per picture (a row of a few seeds at six weights takes a few calls,
    not six) or, when one weight fills whole batches (or the LoRA is a DoRA), one weight at a time with the
    LoRA merged into the model.
    """
    painter = _Painter(pipe, spec, len(rows) * len(weights), progress, should_stop)
    with use_sampler(pipe, spec.sampler), Adapters(pipe) as adapters:
        for members in _batches(rows):
            extras = {str(path): (w, te) for path, w, te in members[0].extra}
            lora = str(members[0].lora)
            if not painter.draw_base(members, adapters, extras):  # render_grid always asks for weight 0
                return painter.images, True
            others = [w for w in weights if w != 0.0]
            if len(members) < spec.batch_size and adapters.per_picture_possible(lora):
                cells = [(row, weight) for weight in others for row in members]
                for chunk in _even_chunks(cells, spec.batch_size):
                    with adapters.per_picture(lora, [weight for _, weight in chunk], extras):
                        if not painter.draw(chunk):
                            return painter.images, True
                continue
            for weight in others:
                with adapters.fused({lora: (weight, weight), **extras}):
                    for chunk in _even_chunks([(row, weight) for row in members], spec.batch_size):
                        if not painter.draw(chunk):
                            return painter.images, True
    return painter.images, False


class _Painter:
    """Draws (row, weight) cells into ``images``, counts them for ``progress`` and asks ``should_stop`` first."""

    def __init__(self, pipe, spec: GridSpec, total: int, progress, should_stop):
        self.pipe, self.spec, self.progress, self.should_stop = pipe, spec, progress, should_stop
        self.size = image_size(pipe, spec.width, spec.height)
        self.images: dict = {}
        self.base_pictures: dict = {}  # (prompt text, tag LoRAs, seed) -> its weight-0 picture
        self.done, self.total = 0, total

    def draw(self, cells: list[tuple[GridRow, float]]) -> bool:
        """Draw ``cells`` in one pipeline call; False (nothing drawn) when asked to stop."""
        if self.should_stop is not None and self.should_stop():
            return False
        spec, (width, height) = self.spec, self.size
        pictures = generate(self.pipe, [row.text for row, _ in cells], [spec.negative_prompt] * len(cells),
                            [row.seed for row, _ in cells], steps=spec.steps, guidance=spec.guidance,
                            width=width, height=height)
        for (row, weight), picture in zip(cells, pictures):
            self.images[(row.index, weight)] = picture
            if weight == 0.0:
                self.base_pictures[_base_key(row)] = picture
        self._advance(len(cells))
        return True

    def draw_base(self, members: list[GridRow], adapters: Adapters, extras: dict) -> bool:
        """The weight-0 cells of ``members``: drawn once per prompt, tags and seed, reused for later checkpoints."""
        todo = [row for row in members if _base_key(row) not in self.base_pictures]
        for row in members:
            if _base_key(row) in self.base_pictures:
                self.images[(row.index, 0.0)] = self.base_pictures[_base_key(row)]
        self._advance(len(members) - len(todo))
        if not todo:
            return True
        with adapters.fused(extras):
            return all(self.draw(chunk) for chunk in _even_chunks([(row, 0.0) for row in todo], self.spec.batch_size))

    def _advance(self, count: int) -> None:
        self.done += count
        if self.progress is not None and count:
            self.progress(self.done, self.total)


def _base_key(row: GridRow) -> tuple:
    return row.text, row.extra, row.seed


def _even_chunks(items: list, limit: int) -> list[list]:
    """``items`` in as few chunks of at most ``limit`` as possible, of nearly equal size (28 by 8: 7, 7, 7, 7)."""
    if not items:
        return []
    count = -(-len(items) // limit)
    size = -(-len(items) // count)
    return [items[start:start + size] for start in range(0, len(items), size)]


def _pick_checker(spec: GridSpec, base_model: str, rows: list[GridRow], images: dict) -> ConceptChecker | None:
    """The concept checker ``spec.checker`` asks for, judged (auto) by the base model and its weight-0 pictures."""
    base_pictures = [images[(r.index, 0.0)] for r in rows if (r.index, 0.0) in images]
    return pick_checker(spec.checker, base_model, base_pictures)


def measure(spec: GridSpec, rows: list[GridRow], images: dict, checker: ConceptChecker | None,
            clip_scorer: ClipScorer | None = None) -> dict:
    """Per-cell numbers ``{(row, weight): {"change", "thumb", "clip", "concept"[, "checker"]}}``; the last two
    from ``checker`` (None: no concept is read)."""
    cells: dict = {}
    keys = list(images)
    clip_scores = clip_scorer.score([images[k] for k in keys], [rows[k[0]].text for k in keys]) if clip_scorer else []
    for position, key in enumerate(keys):
        row_index, weight = key
        image = images[key]
        reference = images.get((row_index, 0.0))
        cell = {"change": m.change(m.to_array(image), m.to_array(reference)) if reference is not None else None,
                "thumb": m.thumbnail(image), "clip": clip_scores[position] if clip_scores else None,
                "concept": None}
        if checker is not None:
            reading = checker.read(image)
            cell["checker"] = checker.fields(reading)
            cell["concept"] = checker.shows(rows[row_index].text, reading)
        cells[key] = cell
    return cells


def _summary(rows: list[GridRow], cells: dict, columns: list[float]) -> dict:
    """The numbers of ``rows``, plus per checkpoint and per prompt when there are several."""
    summary = m.summarise(rows, cells, columns)
    groups = list(dict.fromkeys(r.group for r in rows))
    if len(groups) > 1:
        summary["by_checkpoint"] = {g: m.summarise([r for r in rows if r.group == g], cells, columns) for g in groups}
    prompts = list(dict.fromkeys(r.prompt for r in rows))
    if len(prompts) > 1:
        summary["by_prompt"] = {p: m.summarise([r for r in rows if r.prompt == p], cells, columns) for p in prompts}
    return summary


def grid_metrics(rows: list[GridRow], cells: dict, columns: list[float], checker: bool, spec: GridSpec) -> dict:
    """The whole grid's summary, plus per checkpoint, per prompt and with / without the trigger.

    With a trigger, ``trigger.with`` holds the same breakdown over the rows with the trigger only: the numbers
    the verdict reads (in a row without the trigger the concept showing is a leak, not the LoRA working).
    """
    summary = _summary(rows, cells, columns)
    if spec.trigger.strip():
        summary["trigger"] = {"with": _summary([r for r in rows if r.trigger is True], cells, columns),
                              "without": m.summarise([r for r in rows if r.trigger is False], cells, columns)}
    summary.update(checker=checker, clip_model=spec.clip_model, columns=columns,
                   checkpoints=list(dict.fromkeys(r.group for r in rows)), trigger_word=spec.trigger.strip())
    return summary


def render_grid(spec: GridSpec, out_dir: str | os.PathLike, progress: Callable[[int, int], None] | None = None,
                should_stop: Callable[[], bool] | None = None, pipeline_cache: dict | None = None) -> GridResult:
    """Draw the grid ``spec`` asks for into ``out_dir`` (grid.png, cells/, grid.json) and measure it.

    ``progress(done, total)`` is called after every batch of pictures; ``should_stop()`` is asked before each
    batch (a stopped grid still writes what it drew). ``pipeline_cache``: a dict kept between calls so a base
    model loads once per session. Raises ``EvalError`` (or ``ModelLoadError``) for what the user must change.
    """
    check_spec(spec)
    sampler_name(spec.sampler)
    lora_path = resolve_lora(spec.lora, spec.lora_dirs)
    run_dir = find_run_dir(lora_path)
    search_dirs = default_search_dirs(run_dir, spec.lora_dirs)
    groups = grid_checkpoints(lora_path, run_dir, spec.checkpoints, search_dirs)
    base, base_config = (spec.base_model, "") if spec.base_model.strip() else run_base_model(run_dir)
    placement = placement_for(spec.trigger, run_dir, lora_path)
    rows = plan_rows(spec, groups, search_dirs, placement)
    columns = column_weights(spec)
    weights = columns + ([] if 0.0 in columns else [0.0])
    if len(rows) * len(weights) > MAX_CELLS:
        raise EvalError(f"this grid would draw {len(rows) * len(weights)} pictures (more than {MAX_CELLS}): "
                        "use fewer prompts, seeds, weights or checkpoints.")
    device = pick_device(spec.device)
    pipe = get_pipeline(base, base_config, device, pipeline_cache)
    spec = dataclasses.replace(spec, sampler=concrete_sampler(spec.sampler, pipe))
    images, stopped = _render(pipe, spec, rows, weights, progress, should_stop)
    checker = _pick_checker(spec, base, rows, images)
    scorer = None
    if spec.clip_model.strip():
        from .clipscore import load_clip_scorer

        scorer = load_clip_scorer(spec.clip_model, device, pipeline_cache)
    cells = measure(spec, rows, images, checker, scorer)
    summary = grid_metrics(rows, cells, columns, checker is not None, spec)
    if spec.trigger.strip():
        summary["trigger_placement"] = placement.describe(spec.trigger.strip())
    return write_outputs(Path(out_dir), spec, rows, columns, images, cells, summary,
                         lora_path=lora_path, run_dir=run_dir, base_model=base, stopped=stopped,
                         checker_name=checker.name if checker is not None else "")
