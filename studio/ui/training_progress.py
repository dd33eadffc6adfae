"""The Training tab's live view: progress bar, loss plot, samples, log, and the message line's start/end notes.

Everything comes from the job's snapshot. Start and Resume return the new run's first view at once, so the page
never shows the previous run's finished bar after the click; the poll replaces "training started" with how the
run ended, once per run.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr
import pandas as pd

from studio.app.training import TrainingSnapshot, progress_line

from .common import error_text, guarded

POLL_SECONDS = 1.0


def progress_html(snapshot: TrainingSnapshot) -> str:
    percent = round(100 * snapshot.fraction)
    colour = {"failed": "#c62828", "stopped": "#ef6c00", "finished": "#2e7d32"}.get(snapshot.status, "#1565c0")
    return (
        f'<div class="train-progress" data-status="{snapshot.status}" data-step="{snapshot.step}" '
        f'data-total="{snapshot.total_steps}">'
        f'<div style="background:#e0e0e0;border-radius:4px;height:14px">'
        f'<div style="width:{percent}%;background:{colour};height:14px;border-radius:4px"></div></div>'
        f'<div style="margin-top:4px">{progress_line(snapshot)}</div></div>'
    )


SERIES_COLOURS = {"training": "#1565c0", "validation": "#ef6c00"}


def loss_frame(snapshot: TrainingSnapshot) -> pd.DataFrame | None:
    """The loss plot's data (numeric ``step`` and ``loss``, text ``series``), or None before the first step.

    gradio's plot builds its chart from the first data it gets and afterwards only swaps the rows: the axis types
    (numbers or categories) and the colour of each series come from that first frame. An empty frame there gave
    category axes or, with typed columns, a colour scale without series, so the lines were drawn without a stroke
    (invisible). Sending no frame before the first training step lets the first real frame set both: it holds
    the validation loss too when validation is on, since that is scored before the first step.
    """
    if not snapshot.losses:
        return None
    rows = [(step, loss, "training") for step, loss in snapshot.losses]
    rows += [(step, loss, "validation") for step, loss in snapshot.val_losses]
    return pd.DataFrame({
        "step": pd.Series([row[0] for row in rows], dtype="int64"),
        "loss": pd.Series([row[1] for row in rows], dtype="float64"),
        "series": pd.Series([row[2] for row in rows], dtype="string"),
    })


def sample_items(snapshot: TrainingSnapshot) -> list:
    """The latest samples as (image, caption), enlarged when tiny; files that vanished are skipped."""
    from PIL import Image

    items = []
    for path in snapshot.samples:
        try:
            with Image.open(path) as image:
                image = image.convert("RGB")
        except OSError:
            continue
        factor = max(1, 128 // max(image.size))
        name = Path(path).stem[3:].replace("-", " ")
        items.append((image.resize((image.width * factor, image.height * factor), Image.NEAREST),
                      f"step {snapshot.sample_step}: {name}"))
    return items


def end_message(snapshot: TrainingSnapshot) -> str:
    """How the run ended, for the message line ("" while it is still going)."""
    if snapshot.status == "finished":
        where = snapshot.final_lora or snapshot.run_dir
        return (f"✓ training finished: {snapshot.step}/{snapshot.total_steps} steps; the LoRA is {where} "
                "(try it in the Evaluation tab)")
    if snapshot.status == "stopped":
        return (f"■ training stopped at step {snapshot.step}/{snapshot.total_steps}; its checkpoint is "
                f"{snapshot.last_checkpoint or 'not written'} (Resume latest continues from it)")
    if snapshot.status == "failed":
        return error_text(snapshot.error)
    return ""


def view(snapshot: TrainingSnapshot) -> tuple:
    """(progress, loss plot, samples, log) of ``snapshot``."""
    return progress_html(snapshot), loss_frame(snapshot), sample_items(snapshot), "\n".join(snapshot.logs[-40:])


def poll(studio, shown_end: str = ""):
    """The live view, the message line and the end already shown: each run's end is told once, so the user's own
    messages (an export, a form error) stay after it."""
    snapshot = studio.training.snapshot()
    ended = end_message(snapshot)
    key = f"{snapshot.started_at}:{snapshot.status}" if ended else ""
    message = ended if key and key != shown_end else gr.update()
    return (*view(snapshot), message, key or shown_end)


@guarded(lambda message: (message, *(gr.update() for _ in range(4))))
def start(studio, yaml_text: str, resume: bool, processes=1) -> tuple:
    """Start (or resume) a run: the message, and the new run's view in place of the previous run's."""
    count = int(processes or 1)
    studio.training.start(yaml_text, resume=resume, num_processes=count)
    message = ("▶ training started" + (f" in {count} processes" if count > 1 else "")
               + (" (resuming the latest checkpoint)" if resume else ""))
    return (message, *view(studio.training.snapshot()))


def stop(studio) -> str:
    return "■ stopping after this step; a checkpoint will be saved" if studio.training.stop() else "nothing is running"


def save_now(studio) -> str:
    if studio.training.save_now():
        return "a checkpoint will be saved after this step; training goes on"
    return "nothing is training"


def sample_now(studio) -> str:
    if studio.training.sample_now():
        return "the samples will be drawn after this step; training goes on"
    return "nothing is training"


def tick(studio, shown_end: str = ""):
    """``poll``, plus whether Save now and Sample now can be used (while a run is active)."""
    active = gr.update(interactive=studio.training.snapshot().active)
    return (*poll(studio, shown_end), active, active)
