"""``evaluation.md``: the verdict, the six questions of the evaluation guide answered from the grid, the numbers.

The six questions: is the style consistent, are the features kept, does it generalise, what does the loss curve
say, is its strength controllable, does it follow the text.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

from studio.train.run_folder import RunFolder
from studio.util.fs import atomic_write_text

from .metrics import metric_help
from .output import lora_title
from .verdict import Verdict, make_verdict, rows_read

if TYPE_CHECKING:
    from .loss import LossDiagnosis
    from .spec import GridResult

QUESTIONS = (
    "Is its style consistent?", "Are its features kept?", "Does it generalise?",
    "What does the loss curve say?", "Is its strength controllable?", "Does it follow the text?",
)


def _in_range(values: dict | None, verdict: Verdict) -> list[float]:
    if not values or verdict.weight_low is None:
        return []
    return [float(v) for w, v in values.items()
            if v is not None and verdict.weight_low <= float(w) <= verdict.weight_high and float(w) > 0]


def _avg(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _consistency(metrics: dict, verdict: Verdict) -> str:
    spread, base = _avg(_in_range(metrics.get("seed_spread_by_weight"), verdict)), metrics.get("seed_spread_base")
    if spread is None or not base:
        return "Only one seed was drawn: draw 4 or more seeds to judge consistency."
    ratio = spread / base
    verdict_text = ("more alike than the base model's - a consistent style" if ratio < 0.9 else
                    "as varied as the base model's" if ratio <= 1.2 else
                    "more scattered than the base model's - the style is not stable; check the captions and data")
    return f"Seed spread {spread:.3f} at the recommended weights vs {base:.3f} at weight 0: the seeds' pictures are " \
           f"{verdict_text}."


def _features(metrics: dict, verdict: Verdict) -> str:
    rate = _avg(_in_range(metrics.get("concept_rate_by_weight"), verdict))
    if rate is not None:
        base = metrics.get("concept_rate_base")
        base_text = f" (weight 0: {base:.0%})" if base is not None else ""
        rows = f" {metrics['rows']}" if metrics.get("rows") else ""
        return (f"The checker reads the concept in {rate:.0%} of the pictures{rows} at the recommended "
                f"weights{base_text}.")
    return ("No automatic feature check for this model: compare the grid's pictures with your training images "
            "(face, outline, colours, the key details).")


def _generalises(metrics: dict, verdict: Verdict) -> str:
    per = metrics.get("by_prompt") or {}
    if len(per) < 2:
        return "Only one prompt was drawn: add a prompt with a new scene or action to see whether it generalises."
    key = "concept_rate_by_weight" if any(p.get("concept_rate_by_weight") for p in per.values()) else "change_by_weight"
    scores = {prompt: _avg(_in_range(p.get(key), verdict)) for prompt, p in per.items()}
    scores = {p: s for p, s in scores.items() if s is not None}
    if not scores:
        return "The prompts could not be compared."
    weakest, strongest = min(scores, key=scores.get), max(scores, key=scores.get)
    what = "concept rate" if key == "concept_rate_by_weight" else "change from weight 0"
    if scores[strongest] <= 0 or scores[weakest] >= 0.5 * scores[strongest]:
        return f"The LoRA acts on every prompt ({what} {scores[weakest]:.3g}-{scores[strongest]:.3g})."
    return (f"The LoRA acts much less on \"{weakest}\" ({what} {scores[weakest]:.3g}) than on \"{strongest}\" "
            f"({scores[strongest]:.3g}): it may only know its training scenes - train with more varied prompts.")


def _controllable(metrics: dict) -> str:
    share, smooth = metrics.get("monotonic_share"), metrics.get("smooth")
    if share is None:
        return "Not enough weights drawn to judge."
    text = f"{share:.0%} of rows move steadily further from weight 0 as the weight rises"
    if smooth is False:
        text += f"; but {metrics.get('steepest_step_share', 0):.0%} of the change happens in one step - a switch " \
                "more than a dial (often a sign of overtraining: try an earlier checkpoint)"
    elif smooth:
        text += ", smoothly - the weight works like a dial"
    return text + "."


def _follows_text(metrics: dict, verdict: Verdict) -> str:
    parts = []
    clip, base = _avg(_in_range(metrics.get("clip_score_by_weight"), verdict)), metrics.get("clip_score_base")
    if clip is not None and base is not None:
        parts.append(f"CLIP score {clip:.1f} at the recommended weights vs {base:.1f} at weight 0"
                     + (" - it overrides the prompt" if clip < base - 2.0 else " - the prompt is still followed"))
    trigger = metrics.get("trigger") or {}
    if trigger:
        key = "concept_rate_by_weight" if trigger["with"].get("concept_rate_by_weight") else "change_by_weight"
        on, off = (_avg(_in_range(trigger[k].get(key), verdict)) for k in ("with", "without"))
        if on is not None and off is not None:
            what = "concept rate" if key == "concept_rate_by_weight" else "change from weight 0"
            parts.append(f"with the trigger word {what} {on:.3g}, without {off:.3g}"
                         + (" - the trigger word works" if on > 1.25 * off else
                            " - the LoRA acts the same without its trigger word (it leaks into every prompt)"))
    return ("; ".join(parts) + ".") if parts else "Set a CLIP model or a trigger word to measure this."


def answers(metrics: dict, verdict: Verdict, diagnosis: LossDiagnosis | None) -> list[tuple[str, str]]:
    """The six questions with their answers, from the rows the verdict reads (``rows_read``)."""
    metrics = rows_read(metrics)
    loss = f"{diagnosis.message} {diagnosis.advice}" if diagnosis is not None else "No loss.jsonl for this LoRA."
    texts = (_consistency(metrics, verdict), _features(metrics, verdict), _generalises(metrics, verdict), loss,
             _controllable(metrics), _follows_text(metrics, verdict))
    return list(zip(QUESTIONS, texts))


def _numbers_table(metrics: dict) -> list[str]:
    """Per weight: the numbers of the rows the verdict reads, and the leak of the rows without the trigger."""
    view = rows_read(metrics)
    leak = ((metrics.get("trigger") or {}).get("without") or {}).get("concept_rate_by_weight")
    columns = [(view.get(key), name) for key, name in (
        ("change_by_weight", "change from weight 0"), ("seed_spread_by_weight", "seed spread"),
        ("clip_score_by_weight", "CLIP score"), ("concept_rate_by_weight", "concept rate"))]
    columns += [(leak, "concept rate without the trigger (leak)")]
    present = [(values, name) for values, name in columns if values]
    lines = [f"Rows {view['rows']}." if view["rows"] else "All rows.", "",
             "| weight | " + " | ".join(name for _, name in present) + " |", "|---" * (len(present) + 1) + "|"]
    for weight in metrics.get("columns", []):
        cells = [values.get(weight) for values, _ in present]
        lines.append(f"| {weight:g} | " + " | ".join("-" if v is None else f"{v:.3g}" for v in cells) + " |")
    return lines


def _prompts_drawn(grid_result) -> list[str]:
    """Each prompt as it was drawn (the trigger where it was put), once, after where the trigger goes and why."""
    placement = (grid_result.metrics or {}).get("trigger_placement")
    drawn = dict.fromkeys(cell.prompt for cell in grid_result.cells)
    return ([placement, ""] if placement else []) + [f"- `{prompt}`" for prompt in drawn]


def _grid_copy(target: Path, grid_png: Path) -> str:
    """The grid PNG's path relative to ``target``'s folder, copied into ``evaluation/`` when it lives elsewhere."""
    folder = target.parent
    try:
        return grid_png.resolve().relative_to(folder.resolve()).as_posix()
    except ValueError:
        copy = folder / "evaluation" / "grid.png"
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grid_png, copy)
        return "evaluation/grid.png"


def write_evaluation(run_dir: str | os.PathLike | None, grid_result: GridResult,
                     diagnosis: LossDiagnosis | None = None, *, verdict: Verdict | None = None,
                     file_name: str = "evaluation.md") -> Path:
    """Write ``evaluation.md`` (verdict, six answers, numbers, the grid) into ``run_dir``; returns its path.

    ``run_dir`` None writes next to the grid. ``diagnosis`` None reads the run's ``loss.jsonl`` when there is one.
    """
    from .loss import diagnose_run

    folder = Path(run_dir) if run_dir else Path(grid_result.grid_png).parent
    if diagnosis is None and run_dir and RunFolder(folder).loss_file.is_file():
        diagnosis = diagnose_run(folder)
    metrics = grid_result.metrics
    verdict = verdict or make_verdict(metrics, diagnosis)
    target = folder / file_name
    image = _grid_copy(target, Path(grid_result.grid_png))
    name = lora_title(Path(grid_result.lora_path), grid_result.run_dir) if grid_result.lora_path else "LoRA"
    lines = [f"# Evaluation: {name}", "",
             f"{time.strftime('%Y-%m-%d %H:%M')} - LoRA `{grid_result.lora_path}` on "
             f"`{grid_result.base_model or 'the embedded toy-world model'}`"
             + (" (the grid was stopped early)" if grid_result.stopped else ""), "",
             "## Verdict", "", f"- **Recommended weight: {verdict.weight_range}**"]
    lines += [f"  - {reason}" for reason in verdict.weight_reasons]
    lines += [f"- **Best checkpoint: {verdict.best_checkpoint or 'n/a'}**"]
    lines += [f"  - {reason}" for reason in verdict.checkpoint_reasons]
    if diagnosis is not None:
        lines += [f"- **Loss curve: {diagnosis.kind.replace('_', ' ')}** - {diagnosis.advice}"]
    lines += ["", "## Six questions", "", "| question | answer |", "|---|---|"]
    lines += [f"| {q} | {a.replace('|', '/')} |" for q, a in answers(metrics, verdict, diagnosis)]
    lines += ["", "## Prompts drawn", ""] + _prompts_drawn(grid_result)
    lines += ["", "## Numbers per weight", ""] + _numbers_table(metrics)
    help_texts = metric_help(grid_result.checker_name)
    lines += ["", *[f"- {text}" for key, text in help_texts.items() if key != "loss_curve"]]
    lines += ["", "## Grid", "", f"![grid]({image})", ""]
    return atomic_write_text(target, "\n".join(lines))
