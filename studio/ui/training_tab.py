"""Training tab: presets, the main settings as a form, the full YAML, Start/Stop/Resume and live progress.

The YAML box is the config; the form edits fields of it through the service (``config_yaml_with``), and editing
the YAML updates the form when the box loses focus. Progress comes from polling the job's snapshot.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from studio.jobs import progress_line

from . import training_processes
from .common import error_text

FORM_FIELDS = (
    "train_data_dir", "base_model", "output_name", "resolution", "lora_rank", "lora_alpha", "batch_size",
    "epochs", "max_steps", "learning_rate", "save_steps", "mixed_precision", "train_text_encoder",
    "trigger_word", "prior_data_dir", "prior_count", "prior_prompt", "validation_steps", "sample_steps",
)
POLL_SECONDS = 1.0


def _widget(name: str, spec, value):
    from studio.config import field_help

    label, info = name.replace("_", " "), field_help(name)
    choices = spec.meta.get("choices")
    if choices:
        return gr.Dropdown(choices=list(choices), value=value, label=label, info=info, elem_id=f"form-{name}")
    if spec.kind == "bool":
        return gr.Checkbox(value=value, label=label, info=info, elem_id=f"form-{name}")
    if spec.kind in ("int", "float"):
        return gr.Number(value=value, label=label, info=info, precision=0 if spec.kind == "int" else None,
                         elem_id=f"form-{name}")
    return gr.Textbox(value=value, label=label, info=info, elem_id=f"form-{name}")


def _preset_choices(kind: str) -> list[str]:
    from studio.config import list_presets

    return [p.name for p in list_presets(kind)]


def render(studio) -> SimpleNamespace:
    from studio.config import config_to_dict
    from studio.config.schema import field_specs

    config = studio.default_config()
    values, specs = config_to_dict(config), field_specs()
    with gr.Row():
        model = gr.Dropdown(["", *_preset_choices("model")], value="", label="Model preset", elem_id="preset-model")
        task = gr.Dropdown(["", *_preset_choices("task")], value="", label="Task preset", elem_id="preset-task")
        rank = gr.Dropdown(["", *_preset_choices("rank")], value="", label="Rank preset", elem_id="preset-rank")
        epochs = gr.Dropdown(["", *_preset_choices("epochs")], value="", label="Epoch preset", elem_id="preset-epochs")
        demo = gr.Dropdown(["", *_preset_choices("demo")], value="", label="Demo preset", elem_id="preset-demo")
        apply = gr.Button("Apply presets", elem_id="preset-apply")
    preset_notes = gr.Markdown(elem_id="preset-notes")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Group():
                form = {name: _widget(name, specs[name], values[name]) for name in FORM_FIELDS}
            family = gr.Markdown(family_text(studio, studio.config_yaml(config)), elem_id="model-family")
        with gr.Column(scale=4):
            yaml_box = gr.Code(value=studio.config_yaml(config), language="yaml", label="Full config (YAML)",
                               interactive=True, max_lines=28, elem_id="config-yaml")
            with gr.Row():
                import_file = gr.UploadButton("Import YAML", file_types=[".yaml", ".yml"], elem_id="config-import")
                export = gr.Button("Export YAML", elem_id="config-export")
            export_file = gr.File(label="Exported config", interactive=False, height=80, elem_id="config-file")
    processes_row, processes, effective = training_processes.render()
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        resume = gr.Button("Resume latest", elem_id="train-resume")
    message = gr.Markdown(elem_id="train-message")
    progress = gr.HTML(elem_id="train-progress")
    loss_plot = gr.LinePlot(x="step", y="loss", color="series", title="Loss (training, and validation when on)",
                            height=260, elem_id="train-loss")
    samples = gr.Gallery(label="Samples (fixed prompts and seeds, with and without the trigger)", columns=6,
                         height=220, object_fit="contain", elem_id="train-samples")
    logs = gr.Textbox(label="Log", lines=6, max_lines=12, autoscroll=True, elem_id="train-log")
    timer = gr.Timer(POLL_SECONDS)
    shown_error = gr.State("")
    synced = gr.State(studio.config_yaml(config))  # the YAML as of the last form/YAML sync
    return SimpleNamespace(model=model, family=family, task=task, rank=rank, epochs=epochs, demo=demo, apply=apply, preset_notes=preset_notes,
                           form=form, yaml=yaml_box, import_file=import_file, export=export, export_file=export_file, start=start,
                           stop=stop, resume=resume, message=message, progress=progress, loss_plot=loss_plot,
                           samples=samples, logs=logs, timer=timer, shown_error=shown_error, synced=synced,
                           processes_row=processes_row, processes=processes, effective=effective)


def form_changes(values) -> dict:
    """Form values → config values. gradio's Number shows an empty optional field as 0: that means "not set"."""
    from studio.config.schema import field_specs

    specs = field_specs()
    changes = {}
    for name, value in zip(FORM_FIELDS, values):
        spec = specs[name]
        if spec.optional and spec.kind in ("int", "float") and value in (0, None, ""):
            value = None
        changes[name] = value
    return changes


def form_values(studio, yaml_text: str) -> list:
    from studio.config import config_to_dict

    values = config_to_dict(studio.parse_config(yaml_text))
    return [values[name] for name in FORM_FIELDS]


def progress_html(snapshot) -> str:
    percent = round(100 * snapshot.fraction)
    colour = {"failed": "#c62828", "stopped": "#ef6c00", "finished": "#2e7d32"}.get(snapshot.status, "#1565c0")
    return (
        f'<div class="train-progress" data-status="{snapshot.status}" data-step="{snapshot.step}" '
        f'data-total="{snapshot.total_steps}">'
        f'<div style="background:#e0e0e0;border-radius:4px;height:14px">'
        f'<div style="width:{percent}%;background:{colour};height:14px;border-radius:4px"></div></div>'
        f'<div style="margin-top:4px">{progress_line(snapshot)}</div></div>'
    )


def poll(studio, shown_error: str = ""):
    """Progress, loss plot, samples and log; a failure message is shown once (then the user's own messages stay)."""
    snapshot = studio.training.snapshot()
    rows = [(step, loss, "training") for step, loss in snapshot.losses]
    rows += [(step, loss, "validation") for step, loss in snapshot.val_losses]
    frame = pd.DataFrame(rows, columns=["step", "loss", "series"])
    failure = f"{snapshot.started_at}:{snapshot.error}" if snapshot.status == "failed" else ""
    message = error_text(snapshot.error) if failure and failure != shown_error else gr.update()
    return (progress_html(snapshot), frame, sample_items(snapshot), "\n".join(snapshot.logs[-40:]), message,
            failure or shown_error)


def sample_items(snapshot) -> list:
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


def _start(studio, yaml_text: str, resume: bool, processes=1):
    count = int(processes or 1)
    try:
        studio.start_training(yaml_text, resume=resume, num_processes=count)
    except Exception as error:
        return error_text(error)
    return ("▶ training started" + (f" in {count} processes" if count > 1 else "")
            + (" (resuming the latest checkpoint)" if resume else ""))


def _stop(studio):
    return "■ stopping after this step; a checkpoint will be saved" if studio.training.stop() else "nothing is running"


def current_yaml(studio, yaml_text: str, synced: str, values) -> str:
    """The config to act on: the YAML box, plus every form field edited since the two were last in sync.

    Clicking Start right after typing in a field (or in the YAML) must not lose the edit: gradio reads the inputs
    when the click happens, possibly before the field's own update has come back. ``synced`` is the YAML as of
    the last sync; a form value that differs from it is newer than the YAML.
    """
    from studio.config import config_to_dict

    baseline = config_to_dict(studio.parse_config(synced or yaml_text))
    edited = {k: v for k, v in form_changes(values).items() if v != baseline[k]}
    return studio.config_yaml_with(yaml_text, edited) if edited else yaml_text


def listen(ui: SimpleNamespace, studio) -> None:
    fields = [ui.form[name] for name in FORM_FIELDS]

    def on_form(yaml_text, synced, *values):
        try:
            new_yaml = current_yaml(studio, yaml_text, synced, values)
            return new_yaml, new_yaml, ""
        except Exception as error:
            return gr.update(), gr.update(), error_text(error)

    def show_family(yaml_text):
        return family_text(studio, yaml_text)

    for widget in fields:
        typed = isinstance(widget, (gr.Textbox, gr.Number))
        events = (widget.blur, widget.submit) if typed else (widget.input,)  # not on every keystroke
        for event in events:
            synced = event(on_form, inputs=[ui.yaml, ui.synced, *fields], outputs=[ui.yaml, ui.synced, ui.message])
            if widget is ui.form["base_model"]:
                synced.then(show_family, inputs=ui.yaml, outputs=ui.family)

    def on_yaml(yaml_text):
        try:
            return [*form_values(studio, yaml_text), yaml_text, ""]
        except Exception as error:
            return [*(gr.update() for _ in FORM_FIELDS), gr.update(), error_text(error)]

    ui.yaml.blur(on_yaml, inputs=ui.yaml, outputs=[*fields, ui.synced, ui.message]).then(
        show_family, inputs=ui.yaml, outputs=ui.family)

    _listen_presets_and_import(ui, studio, fields, show_family)

    state = [ui.yaml, ui.synced, *fields]

    def start(resume: bool):
        def handler(processes, yaml_text, synced, *values):
            try:
                text = current_yaml(studio, yaml_text, synced, values)
            except Exception as error:
                return error_text(error)
            return _start(studio, text, resume, processes)
        return handler

    def export(yaml_text, synced, *values):
        try:
            return _export(studio, current_yaml(studio, yaml_text, synced, values))
        except Exception as error:
            return gr.update(), error_text(error)

    ui.export.click(export, inputs=state, outputs=[ui.export_file, ui.message])
    ui.start.click(start(False), inputs=[ui.processes, *state], outputs=ui.message)
    ui.resume.click(start(True), inputs=[ui.processes, *state], outputs=ui.message)
    training_processes.listen(ui, studio)
    ui.stop.click(lambda: _stop(studio), outputs=ui.message)
    ui.timer.tick(lambda shown: poll(studio, shown), inputs=ui.shown_error,
                  outputs=[ui.progress, ui.loss_plot, ui.samples, ui.logs, ui.message, ui.shown_error])


def _listen_presets_and_import(ui: SimpleNamespace, studio, fields: list, show_family) -> None:
    """Apply presets and Import YAML: both replace the YAML box and refill the form from it."""

    def on_presets(yaml_text, synced, model, task, rank, epochs, demo, *values):
        try:
            new_yaml = studio.apply_presets(current_yaml(studio, yaml_text, synced, values), task=task, rank=rank,
                                            epochs=epochs, demo=demo, model=model)
        except Exception as error:
            return [gr.update(), gr.update(), *(gr.update() for _ in FORM_FIELDS), error_text(error)]
        return [new_yaml, new_yaml, *form_values(studio, new_yaml), _preset_descriptions(model, task, rank, epochs, demo)]

    ui.apply.click(on_presets, inputs=[ui.yaml, ui.synced, ui.model, ui.task, ui.rank, ui.epochs, ui.demo, *fields],
                   outputs=[ui.yaml, ui.synced, *fields, ui.preset_notes]).then(
        show_family, inputs=ui.yaml, outputs=ui.family)

    def on_import(file):
        try:
            new_yaml = studio.import_config(file, uploaded=True)
        except Exception as error:
            return [gr.update(), gr.update(), *(gr.update() for _ in FORM_FIELDS), error_text(error)]
        return [new_yaml, new_yaml, *form_values(studio, new_yaml), "imported"]

    ui.import_file.upload(on_import, inputs=ui.import_file, outputs=[ui.yaml, ui.synced, *fields, ui.message]).then(
        show_family, inputs=ui.yaml, outputs=ui.family)


def family_text(studio, yaml_text: str) -> str:
    """The line under the form naming the base model's family, or why the base model cannot be used."""
    try:
        return studio.model_family_line(yaml_text)
    except Exception as error:
        return f"Model family: not recognised — {error_text(error)}"


def _export(studio, yaml_text):
    path = studio.export_config(yaml_text)
    return str(path), f"exported to {path}"


def _preset_descriptions(*names) -> str:
    from studio.config import list_presets

    chosen = [p for p in list_presets() if p.name in names and p.name]
    return "\n\n".join(f"**{p.kind}: {p.name}** — {p.description}" for p in chosen)
