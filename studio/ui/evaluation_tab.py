"""Evaluation tab: a run's LoRA at several weights (× checkpoints, × with/without the trigger), fixed seeds,
a labelled grid, the metrics with a one-line explanation each, and the verdict written to ``evaluation.md``."""
from __future__ import annotations

from functools import partial
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
from PIL import Image

from studio.app.evaluation import DIFFUSERS_WEIGHT_NAME, METRIC_HELP, UNET_GUIDANCE, checkpoint_label, rows_read

from .common import guarded, parse_numbers

DEFAULT_WEIGHTS = "0.4, 0.5, 0.6, 0.7, 0.8, 0.9"
CELL_DISPLAY = 160
ALL_CHECKPOINTS = "all checkpoints × weights"
SAMPLERS = ["ddim", "euler", "euler_a", "dpm++_2m", "dpm++_2m_karras", "unipc"]


def render(studio) -> SimpleNamespace:
    with gr.Row():
        run = gr.Dropdown(choices=[], label="Run", scale=4, elem_id="eval-run")
        checkpoint = gr.Dropdown(choices=["final"], value="final", label="Checkpoint", scale=2, elem_id="eval-checkpoint")
        refresh = gr.Button("Refresh runs", scale=1, elem_id="eval-refresh")
    with gr.Row():
        prompts = gr.Textbox(label="Prompts (one per line; <lora:name:0.5> adds another LoRA)", lines=3, scale=3,
                             elem_id="eval-prompts", value="a red zq star on a white background")
        with gr.Column(scale=2):
            seeds = gr.Textbox(label="Seeds", value="0", elem_id="eval-seeds")
            weights = gr.Textbox(label="LoRA weights", value=DEFAULT_WEIGHTS, elem_id="eval-weights")
            trigger = gr.Textbox(label="Trigger word (rows without it show leaks)", elem_id="eval-trigger")
        with gr.Column(scale=2):
            steps = gr.Slider(5, 60, value=25, step=1, label="Steps", elem_id="eval-steps")
            guidance = gr.Number(value=UNET_GUIDANCE, label="Guidance scale", elem_id="eval-guidance")
            sampler = gr.Dropdown(SAMPLERS, value="ddim", label="Sampler", elem_id="eval-sampler")
    render_button = gr.Button("Render grid", variant="primary", elem_id="eval-render")
    message = gr.Markdown(elem_id="eval-message")
    with gr.Row():
        grid = gr.Image(label="Grid", type="filepath", interactive=False, scale=3, elem_id="eval-grid")
        with gr.Column(scale=2, min_width=360):  # wide enough that no table cell breaks a word
            metrics = gr.Markdown(elem_id="eval-metrics")
    cells = gr.Gallery(label="Cells", columns=6, height=360, object_fit="contain", elem_id="eval-cells")
    download = gr.File(label="Download grid PNG", interactive=False, elem_id="eval-download")
    verdict = gr.Markdown(elem_id="eval-verdict")  # the page's full width: the report's tables need it
    return SimpleNamespace(run=run, checkpoint=checkpoint, refresh=refresh, prompts=prompts, seeds=seeds,
                           weights=weights, trigger=trigger, steps=steps, guidance=guidance, sampler=sampler,
                           render=render_button, message=message, grid=grid, metrics=metrics, cells=cells,
                           download=download, verdict=verdict)


def run_choices(studio, selected: str | None = None):
    runs = studio.runs.list()
    names = [r.name for r in runs]
    value = selected if selected in names else (names[0] if names else None)
    return gr.update(choices=[(r.label, r.name) for r in runs], value=value)


def no_run_details(_message: str = "") -> tuple:
    """No run picked, or one that cannot be read (removed meanwhile): only "final" to pick, the trigger, sampler and
    guidance as they were."""
    return gr.update(choices=["final"], value="final"), gr.update(), gr.update(), gr.update()


@guarded(no_run_details)
def run_details(studio, run_name: str | None):
    """Checkpoint choices, the run's trigger word, and the samplers and guidance its base model is drawn with
    (a FLUX.1 run: flow-matching Euler and FLUX's guidance) when a run is picked."""
    if not run_name:
        return no_run_details()
    run = studio.runs.find(run_name)
    choices = [("final", "final")] if run.final_lora else []
    choices += [checkpoint_choice(folder) for folder in reversed(run.checkpoints)]
    if len(run.checkpoints) > 1 or (run.checkpoints and run.final_lora):
        choices.append((ALL_CHECKPOINTS, ALL_CHECKPOINTS))
    choices = choices or [("final", "final")]
    samplers, sampler, guidance = studio.evaluation.drawing_defaults(run.name)
    return (gr.update(choices=choices, value=choices[0][1]), gr.update(value=run.trigger_word),
            gr.update(choices=[s for s in SAMPLERS if s in samplers], value=sampler), gr.update(value=guidance))


def checkpoint_choice(folder) -> tuple[str, str]:
    """(what the dropdown shows, what it hands over): ``step 500`` for the checkpoint folder's full path."""
    return checkpoint_label(Path(folder) / DIFFUSERS_WEIGHT_NAME), str(folder)


def _cell_image(path) -> Image.Image:
    with Image.open(path) as image:
        image = image.convert("RGB")
        factor = max(1, CELL_DISPLAY // max(image.size))
        return image.resize((image.width * factor, image.height * factor), Image.NEAREST)


def rate_table(metrics: dict) -> list[str]:
    """The concept rate as one row per weight (a narrow table that fits beside the grid): with the trigger and
    without it (the leak) when a trigger was set, else over all rows."""
    sides = (metrics.get("trigger") or {})
    columns = [((sides.get("with") or {}).get("concept_rate_by_weight"), "with the trigger"),
               ((sides.get("without") or {}).get("concept_rate_by_weight"), "without it (leak)")]
    columns = [(rates, name) for rates, name in columns if rates]
    if not columns and metrics.get("concept_rate_by_weight"):
        columns = [(metrics["concept_rate_by_weight"], "concept rate")]
    if not columns:
        return []
    lines = ["**Concept rate by weight** (toy-world checker: share of pictures that show what the prompt names)",
             "", "| weight | " + " | ".join(name for _, name in columns) + " |", "|---:|" + "---:|" * len(columns)]
    for weight in columns[0][0]:
        cells = [rates.get(weight) for rates, _ in columns]
        lines.append(f"| {float(weight):g} | " + " | ".join("-" if r is None else f"{float(r):.0%}" for r in cells)
                     + " |")
    return lines + [""]


def metrics_markdown(result) -> str:
    """Concept rates (with / without the trigger) beside the grid, then each metric with its one-line meaning,
    measured on the rows the verdict reads."""
    metrics = rows_read(result.metrics or {})
    lines = rate_table(metrics)
    if metrics["rows"]:
        lines += [f"Numbers below: the rows {metrics['rows']}.", ""]
    shown = {"change_by_weight": "change_from_base", "monotonic_share": "monotonic_share",
             "steepest_step_share": "steepest_step_share", "seed_spread_by_weight": "seed_spread",
             "clip_score_by_weight": "clip_score"}
    for key, help_key in shown.items():
        value = metrics.get(key)
        if value is None:
            continue
        text = (", ".join(f"{float(w):g}: {v:.3g}" for w, v in value.items()) if isinstance(value, dict)
                else f"{value:.3g}")
        lines.append(f"- **{help_key.replace('_', ' ')}** — {text}  \n  _{METRIC_HELP[help_key]}_")
    return "\n".join(lines)


def report_for_page(report: str, run_folder) -> str:
    """``evaluation.md`` as the page shows it: without its last section, the grid picture, which the page
    already shows beside the numbers (and whose link, relative to the run folder, the page cannot follow)."""
    text = report.split("\n## Grid\n")[0].rstrip()
    return f"{text}\n\n_The full report with the grid: `{Path(run_folder) / 'evaluation.md'}`_"


@guarded(lambda message: (message, None, "", [], None, ""))
def render_grid(studio, run_name, checkpoint, prompts, seeds, weights, trigger, steps, guidance, sampler,
                progress=gr.Progress()):
    result, evaluation = studio.evaluation.render_grid(
        run_name or "", checkpoint, (prompts or "").splitlines(), parse_numbers(seeds, int, "seeds"),
        parse_numbers(weights, float, "weights"), int(steps), float(guidance), sampler=sampler,
        trigger=(trigger or "").strip(), all_checkpoints=checkpoint == ALL_CHECKPOINTS,
        progress=lambda done, total: progress(done / max(total, 1), desc="rendering"),
    )
    items = [(_cell_image(c.path), f"{c.checkpoint} · weight {c.weight:g} · seed {c.seed} · {c.prompt}")
             for c in result.cells]
    note = f"✓ {len(result.cells)} images → {result.grid_png}"
    return (note, str(result.grid_png), metrics_markdown(result), items, str(result.grid_png),
            report_for_page(evaluation, result.run_dir or result.grid_png.parent))


def listen(ui: SimpleNamespace, studio) -> None:
    ui.refresh.click(lambda current: run_choices(studio, current), inputs=ui.run, outputs=ui.run)
    ui.run.change(lambda name: run_details(studio, name), inputs=ui.run,
                  outputs=[ui.checkpoint, ui.trigger, ui.sampler, ui.guidance])
    ui.render.click(
        partial(render_grid, studio),
        inputs=[ui.run, ui.checkpoint, ui.prompts, ui.seeds, ui.weights, ui.trigger, ui.steps, ui.guidance,
                ui.sampler],
        outputs=[ui.message, ui.grid, ui.metrics, ui.cells, ui.download, ui.verdict],
    )
