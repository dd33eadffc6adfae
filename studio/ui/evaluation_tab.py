"""Evaluation tab: one run's LoRA rendered at several weights with fixed seeds, as a labelled grid."""
from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import gradio as gr
from PIL import Image

from .common import error_text, parse_numbers

DEFAULT_WEIGHTS = "0.4, 0.5, 0.6, 0.7, 0.8, 0.9"
CELL_DISPLAY = 160


def render(studio) -> SimpleNamespace:
    with gr.Row():
        run = gr.Dropdown(choices=[], label="Run", scale=4, elem_id="eval-run")
        checkpoint = gr.Dropdown(choices=["final"], value="final", label="Checkpoint", scale=2, elem_id="eval-checkpoint")
        refresh = gr.Button("Refresh runs", scale=1, elem_id="eval-refresh")
    with gr.Row():
        prompts = gr.Textbox(label="Prompts (one per line)", lines=3, scale=3, elem_id="eval-prompts",
                             value="a red zq star on a white background")
        with gr.Column(scale=2):
            seeds = gr.Textbox(label="Seeds", value="0", elem_id="eval-seeds")
            weights = gr.Textbox(label="LoRA weights", value=DEFAULT_WEIGHTS, elem_id="eval-weights")
        with gr.Column(scale=2):
            steps = gr.Slider(5, 60, value=25, step=1, label="Steps", elem_id="eval-steps")
            guidance = gr.Number(value=5.0, label="Guidance scale", elem_id="eval-guidance")
    render_button = gr.Button("Render grid", variant="primary", elem_id="eval-render")
    message = gr.Markdown(elem_id="eval-message")
    with gr.Row():
        grid = gr.Image(label="Grid", type="filepath", interactive=False, scale=3, elem_id="eval-grid")
        metrics = gr.Markdown(elem_id="eval-metrics")
    cells = gr.Gallery(label="Cells", columns=6, height=360, object_fit="contain", elem_id="eval-cells")
    download = gr.File(label="Download grid PNG", interactive=False, elem_id="eval-download")
    return SimpleNamespace(run=run, checkpoint=checkpoint, refresh=refresh, prompts=prompts, seeds=seeds,
                           weights=weights, steps=steps, guidance=guidance, render=render_button, message=message,
                           grid=grid, metrics=metrics, cells=cells, download=download)


def run_choices(studio, selected: str | None = None):
    runs = studio.list_runs()
    names = [r.name for r in runs]
    value = selected if selected in names else (names[0] if names else None)
    return gr.update(choices=[(r.label, r.name) for r in runs], value=value)


def checkpoint_choices(studio, run_label: str | None):
    if not run_label:
        return gr.update(choices=["final"], value="final")
    try:
        run = studio.find_run(run_label)
    except Exception:
        return gr.update(choices=["final"], value="final")
    choices = (["final"] if run.final_lora else []) + [str(c) for c in reversed(run.checkpoints)]
    return gr.update(choices=choices or ["final"], value=(choices or ["final"])[0])


def _cell_image(path) -> Image.Image:
    with Image.open(path) as image:
        image = image.convert("RGB")
        factor = max(1, CELL_DISPLAY // max(image.size))
        return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def metrics_markdown(result) -> str:
    lines = []
    rates = (result.metrics or {}).get("concept_rate_by_weight") or {}
    if rates:
        lines += ["**Concept rate by weight** (toy-world checker)", "", "| weight | rate |", "| --- | --- |"]
        lines += [f"| {float(w):.2f} | {float(r):.0%} |" for w, r in sorted(rates.items(), key=lambda kv: float(kv[0]))]
    for name, value in (result.metrics or {}).items():
        if name != "concept_rate_by_weight" and isinstance(value, (int, float, str)):
            lines.append(f"- {name.replace('_', ' ')}: {value:.3g}" if isinstance(value, float) else f"- {name}: {value}")
    return "\n".join(lines)


def render_grid(studio, run_label, checkpoint, prompts, seeds, weights, steps, guidance, progress=gr.Progress()):
    try:
        seed_list = parse_numbers(seeds, int, "seeds")
        weight_list = parse_numbers(weights, float, "weights")
        result = studio.render_grid(
            run_label or "", checkpoint, (prompts or "").splitlines(), seed_list, weight_list, int(steps),
            float(guidance), progress=lambda done, total: progress(done / max(total, 1), desc="rendering"),
        )
    except Exception as error:
        return error_text(error), None, "", [], None
    items = [(_cell_image(c.path), f"weight {c.weight:g} · seed {c.seed} · {c.prompt}") for c in result.cells]
    note = f"✅ {len(result.cells)} images → {result.grid_png}"
    return note, str(result.grid_png), metrics_markdown(result), items, str(result.grid_png)


def listen(ui: SimpleNamespace, studio) -> None:
    ui.refresh.click(lambda current: run_choices(studio, current), inputs=ui.run, outputs=ui.run)
    ui.run.change(lambda label: checkpoint_choices(studio, label), inputs=ui.run, outputs=ui.checkpoint)
    ui.render.click(
        partial(render_grid, studio),
        inputs=[ui.run, ui.checkpoint, ui.prompts, ui.seeds, ui.weights, ui.steps, ui.guidance],
        outputs=[ui.message, ui.grid, ui.metrics, ui.cells, ui.download],
    )
