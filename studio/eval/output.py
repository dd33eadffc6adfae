"""A grid's files: every cell as its own PNG under ``cells/``, the labelled ``grid.png`` and the ``grid.json`` index."""
from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from studio.util.fs import atomic_write_bytes, atomic_write_text

from .metrics import metric_help
from .samplers import SAMPLER_LABELS, sampler_name
from .sheet import draw_sheet
from .spec import GridCell, GridResult, GridSpec, weight_label

if TYPE_CHECKING:
    from .grid import GridRow

CELLS = "cells"
GRID_PNG = "grid.png"
GRID_JSON = "grid.json"


def cell_name(row: int, seed: int, weight: float) -> str:
    return f"r{row:03d}-s{seed}-w{weight_label(weight)}.png"


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _clear_old_cells(folder: Path) -> None:
    """Remove cell PNGs an earlier grid wrote here (only files named like ours), so the folder matches grid.json."""
    if folder.is_dir():
        for old in folder.glob("r[0-9][0-9][0-9]-s*-w*.png"):
            old.unlink()


def row_label(row: GridRow, show_trigger: bool) -> list[str]:
    """The label lines of a row: prompt, seed, checkpoint, and with / without the trigger."""
    lines = [row.prompt, f"seed {row.seed}", f"checkpoint: {row.group}"]
    if show_trigger:
        lines.append("with trigger" if row.trigger else "without trigger")
    return lines


def column_label(weight: float) -> str:
    return "weight 0 (base)" if weight == 0.0 else f"weight {weight_label(weight)}"


def lora_title(lora_path: Path, run_dir: Path | None) -> str:
    if run_dir is not None:
        label = "" if lora_path.parent == run_dir else f" / {lora_path.parent.name}"
        return run_dir.name + label
    return lora_path.stem


def _cell_metrics(cell: dict | None) -> dict:
    if cell is None:
        return {}
    values = {"change_from_base": None if cell["change"] is None else round(cell["change"], 4)}
    if cell.get("clip") is not None:
        values["clip_score"] = cell["clip"]
    if "checker" in cell:
        values["checker"] = cell["checker"]
        values["concept"] = cell["concept"]
    return values


def _json_safe(value):
    if isinstance(value, dict):
        return {(weight_label(k) if isinstance(k, float) else k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def write_outputs(out_dir: Path, spec: GridSpec, rows: Sequence[GridRow], columns: list[float], images: dict,
                  cells: dict, summary: dict, *, lora_path: Path, run_dir: Path | None, base_model: str,
                  stopped: bool, checker_name: str = "") -> GridResult:
    """Write cells, the labelled sheet and grid.json into ``out_dir``; returns the ``GridResult``.

    ``checker_name``: the concept checker that read the cells ("" = none), whose help the index holds.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _clear_old_cells(out_dir / CELLS)
    grid_cells: list[GridCell] = []
    for row in rows:
        for column, weight in enumerate(columns):
            image = images.get((row.index, weight))
            if image is None:
                continue
            path = atomic_write_bytes(out_dir / CELLS / cell_name(row.index, row.seed, weight), _png(image))
            grid_cells.append(GridCell(row.prompt, row.seed, weight, row.group, path,
                                       _cell_metrics(cells.get((row.index, weight))), row.index, column))
    sampler = SAMPLER_LABELS[sampler_name(spec.sampler)]
    base_name = Path(base_model).name if base_model.strip() else "the embedded toy-world model"
    title = (f"{lora_title(lora_path, run_dir)} on {base_name} - {sampler}, "
             f"{spec.steps} steps, guidance {spec.guidance:g}" + (" (stopped early)" if stopped else ""))
    starts = {r.index for r in rows if r.index == 0 or rows[r.index - 1].group != r.group}
    sheet, layout = draw_sheet([[images.get((r.index, w)) for w in columns] for r in rows],
                               [column_label(w) for w in columns],
                               [row_label(r, bool(spec.trigger.strip())) for r in rows],
                               title, "LoRA weight", "rows: prompt / seed / checkpoint", starts)
    grid_png = atomic_write_bytes(out_dir / GRID_PNG, _png(sheet))
    index = {
        "version": 1, "created": time.strftime("%Y-%m-%d %H:%M:%S"), "stopped": stopped,
        "lora": str(lora_path), "run_dir": str(run_dir) if run_dir else None, "base_model": base_model,
        "spec": asdict(spec), "grid_png": GRID_PNG, "columns": [column_label(w) for w in columns],
        "weights": columns, "cell_size": list(layout.cell_size),
        "rows": [{"row": r.index, "prompt": r.prompt, "text": r.text, "seed": r.seed, "checkpoint": r.group,
                  "lora": str(r.lora), "trigger": r.trigger, "label": row_label(r, bool(spec.trigger.strip()))}
                 for r in rows],
        "cells": [{"row": c.row, "column": c.column, "prompt": c.prompt, "seed": c.seed, "weight": c.weight,
                   "checkpoint": c.checkpoint, "path": str(c.path.relative_to(out_dir)), "metrics": c.metrics}
                  for c in grid_cells],
        "metrics": summary, "help": metric_help(checker_name),
    }
    index_json = atomic_write_text(out_dir / GRID_JSON, json.dumps(_json_safe(index), indent=2) + "\n")
    return GridResult(grid_png, grid_cells, index_json, summary, out_dir=out_dir, lora_path=lora_path,
                      run_dir=run_dir, base_model=base_model, stopped=stopped, checker_name=checker_name)
