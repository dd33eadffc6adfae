"""Training tab: presets, the main settings as a form, the full YAML, Start/Stop/Resume, Save now and Sample now
(while a run is active) and live progress.

The YAML box is the config; the form edits fields of it through ``studio.configs.yaml_with``, and editing
the YAML updates the form when the box loses focus. Progress comes from polling the job's snapshot.
"""
from __future__ import annotations

from functools import partial
from types import SimpleNamespace

import gradio as gr


from studio.app.configs import config_to_dict, field_help, field_specs

from . import training_presets, training_processes, training_progress
from .common import guarded
from .training_progress import poll  # noqa: F401 - the app polls through this module on page load

FORM_FIELDS = (
    "train_data_dir", "base_model", "output_name", "resolution", "lora_rank", "lora_alpha", "batch_size",
    "epochs", "max_steps", "learning_rate", "save_steps", "mixed_precision", "base_weights", "train_text_encoder",
    "trigger_word", "prior_data_dir", "prior_count", "prior_prompt", "validation_steps", "sample_steps",
)

FAMILY_FIELDS = ("base_model", "base_weights", "mixed_precision")  # what the family line under the form depends on


def _optional_number(spec) -> bool:
    """A number setting that may be empty (``lora_alpha``, ``max_steps``): a text field, empty when unset."""
    return spec.optional and spec.kind in ("int", "float")


def _widget(name: str, spec, value):
    label, info = name.replace("_", " "), field_help(name)
    choices = spec.meta.get("choices")
    if _optional_number(spec):  # gradio's Number shows an empty value as 0, which is no "empty"
        empty = info.partition("empty = ")[2].rstrip(".")
        return gr.Textbox(value=_field_text(value), label=label, info=info, elem_id=f"form-{name}",
                          placeholder=f"empty = {empty}" if empty else "empty")
    if choices:
        return gr.Dropdown(choices=list(choices), value=value, label=label, info=info, elem_id=f"form-{name}")
    if spec.kind == "bool":
        return gr.Checkbox(value=value, label=label, info=info, elem_id=f"form-{name}")
    if spec.kind in ("int", "float"):
        return gr.Number(value=value, label=label, info=info, precision=0 if spec.kind == "int" else None,
                         elem_id=f"form-{name}")
    return gr.Textbox(value=value, label=label, info=info, elem_id=f"form-{name}")


def render(studio) -> SimpleNamespace:
    config = studio.configs.default()
    values, specs = config_to_dict(config), field_specs()
    presets = training_presets.render()
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Group():
                form = {name: _widget(name, specs[name], values[name]) for name in FORM_FIELDS}
            family = gr.Markdown(family_text(studio, studio.configs.yaml(config)), elem_id="model-family")
        with gr.Column(scale=4):
            yaml_box = gr.Code(value=studio.configs.yaml(config), language="yaml", label="Full config (YAML)",
                               interactive=True, max_lines=28, elem_id="config-yaml")
            with gr.Row():
                import_file = gr.UploadButton("Import YAML", file_types=[".yaml", ".yml"], elem_id="config-import")
                export = gr.Button("Export YAML", elem_id="config-export")
            export_file = gr.File(label="Exported config", interactive=False, height=80, elem_id="config-file")
    processes_row, processes, effective = training_processes.render()
    with gr.Row():
        start = gr.Button("Start training", variant="primary", elem_id="train-start")
        stop = gr.Button("Stop", variant="stop", elem_id="train-stop")
        save_now = gr.Button("Save now", interactive=False, elem_id="train-save-now")
        sample_now = gr.Button("Sample now", interactive=False, elem_id="train-sample-now")
        resume = gr.Button("Resume latest", elem_id="train-resume")
    message = gr.Markdown(elem_id="train-message")
    progress = gr.HTML(elem_id="train-progress")
    loss_plot = gr.LinePlot(None, x="step", y="loss", color="series", color_map=training_progress.SERIES_COLOURS,
                            title="Loss (training, and validation when on)", height=260, elem_id="train-loss")
    samples = gr.Gallery(label="Samples (fixed prompts and seeds, with and without the trigger)", columns=6,
                         height=220, object_fit="contain", elem_id="train-samples")
    logs = gr.Textbox(label="Log", lines=6, max_lines=12, autoscroll=True, elem_id="train-log")
    timer = gr.Timer(training_progress.POLL_SECONDS)
    shown_end = gr.State("")  # the run end the message line has told (see training_progress.poll)
    synced = gr.State(studio.configs.yaml(config))  # the YAML as of the last form/YAML sync
    return SimpleNamespace(presets=presets, family=family, form=form, data_dir=form["train_data_dir"], yaml=yaml_box,
                           import_file=import_file, export=export, export_file=export_file, start=start, stop=stop,
                           save_now=save_now, sample_now=sample_now, resume=resume, message=message,
                           progress=progress, loss_plot=loss_plot, samples=samples, logs=logs, timer=timer,
                           shown_end=shown_end, synced=synced, processes_row=processes_row, processes=processes,
                           effective=effective)


def form_changes(values) -> dict:
    """Form values → config values (an optional number's empty text means "not set")."""
    specs = field_specs()
    changes = {}
    for name, value in zip(FORM_FIELDS, values):
        if _optional_number(specs[name]):
            value = _field_number(value)
        changes[name] = value
    return changes


def _field_text(value) -> str:
    """An optional number as its text field shows it: "" when unset, ``32`` rather than ``32.0``."""
    if value is None:
        return ""
    return str(value) if isinstance(value, int) else f"{value:g}"


def _field_number(text):
    """An optional number's text as a value: None when empty, else the number (text that is no number is passed on
    as it is, so the config's own message names the field)."""
    text = "" if text is None else str(text).strip()
    if not text:
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def form_values(studio, yaml_text: str) -> list:
    """The form's values for the YAML's config, in ``FORM_FIELDS`` order."""
    values, specs = config_to_dict(studio.configs.parse(yaml_text)), field_specs()
    return [_field_text(values[name]) if _optional_number(specs[name]) else values[name] for name in FORM_FIELDS]


def current_yaml(studio, yaml_text: str, synced: str, values) -> str:
    """The config to act on: the YAML box, plus every form field edited since the two were last in sync.

    Clicking Start right after typing in a field (or in the YAML) must not lose the edit: gradio reads the inputs
    when the click happens, possibly before the field's own update has come back. ``synced`` is the YAML as of
    the last sync; a form value that differs from it is newer than the YAML.
    """
    baseline = config_to_dict(studio.configs.parse(synced or yaml_text))
    edited = {k: v for k, v in form_changes(values).items() if v != baseline[k]}
    return studio.configs.yaml_with(yaml_text, edited) if edited else yaml_text


def with_data_dir(studio, yaml_text: str, folder) -> tuple[str, object]:
    """The YAML with ``train_data_dir`` set to ``folder``, and the value the form's field shows for it (what the
    Dataset tab's "use for training" puts into this tab: ``ui.yaml`` and ``ui.data_dir``)."""
    new_yaml = studio.configs.yaml_with(yaml_text, {"train_data_dir": str(folder)})
    return new_yaml, form_values(studio, new_yaml)[FORM_FIELDS.index("train_data_dir")]


def _unchanged(count: int) -> list:
    return [gr.update() for _ in range(count)]


@guarded(lambda message: (gr.update(), gr.update(), message))
def synced_yaml(studio, yaml_text: str, synced: str, *values):
    """After a form edit: (the YAML with it, the same as the new sync point, no message)."""
    new_yaml = current_yaml(studio, yaml_text, synced, values)
    return new_yaml, new_yaml, ""


@guarded(lambda message: [*_unchanged(len(FORM_FIELDS) + 1), message])
def form_from_yaml(studio, yaml_text: str):
    """After a YAML edit: (the form's values, the YAML as the new sync point, no message)."""
    return [*form_values(studio, yaml_text), yaml_text, ""]


@guarded(lambda message: (message, *_unchanged(4)))
def start_run(studio, resume: bool, processes, yaml_text: str, synced: str, *values):
    """Start or Resume: the config with the latest edits, started; (message, the new run's view)."""
    return training_progress.start(studio, current_yaml(studio, yaml_text, synced, values), resume, processes)


@guarded(lambda message: (gr.update(), message))
def export_yaml(studio, yaml_text: str, synced: str, *values):
    """(the exported file, the message naming it)."""
    path = studio.configs.export(current_yaml(studio, yaml_text, synced, values))
    return str(path), f"exported to {path}"


@guarded(lambda message: f"Model family: not recognised — {message}")
def family_text(studio, yaml_text: str) -> str:
    """The line under the form naming the base model's family, or why the base model cannot be used."""
    return studio.configs.model_family_line(yaml_text)


def listen(ui: SimpleNamespace, studio) -> None:
    fields = [ui.form[name] for name in FORM_FIELDS]
    show_family = partial(family_text, studio)
    for widget in fields:
        typed = isinstance(widget, (gr.Textbox, gr.Number))
        events = (widget.blur, widget.submit) if typed else (widget.input,)  # not on every keystroke
        for event in events:
            synced = event(partial(synced_yaml, studio), inputs=[ui.yaml, ui.synced, *fields],
                           outputs=[ui.yaml, ui.synced, ui.message])
            if any(widget is ui.form[name] for name in FAMILY_FIELDS):
                synced.then(show_family, inputs=ui.yaml, outputs=ui.family)

    ui.yaml.blur(partial(form_from_yaml, studio), inputs=ui.yaml, outputs=[*fields, ui.synced, ui.message]).then(
        show_family, inputs=ui.yaml, outputs=ui.family)

    _listen_presets_and_import(ui, studio, fields, show_family)

    state = [ui.yaml, ui.synced, *fields]
    ui.export.click(partial(export_yaml, studio), inputs=state, outputs=[ui.export_file, ui.message])
    live = [ui.progress, ui.loss_plot, ui.samples, ui.logs]
    ui.start.click(partial(start_run, studio, False), inputs=[ui.processes, *state], outputs=[ui.message, *live])
    ui.resume.click(partial(start_run, studio, True), inputs=[ui.processes, *state], outputs=[ui.message, *live])
    training_processes.listen(ui, studio)
    ui.stop.click(lambda: training_progress.stop(studio), outputs=ui.message)
    ui.save_now.click(lambda: training_progress.save_now(studio), outputs=ui.message)
    ui.sample_now.click(lambda: training_progress.sample_now(studio), outputs=ui.message)
    ui.timer.tick(lambda shown: training_progress.tick(studio, shown), inputs=ui.shown_end,
                  outputs=[*live, ui.message, ui.shown_end, ui.save_now, ui.sample_now])


@guarded(lambda message: [*_unchanged(2 + len(FORM_FIELDS)), message])
def presets_applied(studio, yaml_text: str, synced: str, *values):
    """Apply presets: ``values`` are the chosen presets (``training_presets.DROPDOWNS`` order), then the form's.
    Returns (YAML, sync point, the form's values, the presets' report)."""
    kinds = [kind for kind, _ in training_presets.DROPDOWNS]
    names = dict(zip(kinds, values))
    text = current_yaml(studio, yaml_text, synced, values[len(kinds):])
    new_yaml, report = studio.configs.apply_presets(text, **names)
    return [new_yaml, new_yaml, *form_values(studio, new_yaml), training_presets.report_markdown(report)]


@guarded(lambda message: [*_unchanged(2 + len(FORM_FIELDS)), message])
def imported(studio, file):
    """Import YAML: (YAML, sync point, the form's values, message)."""
    new_yaml = studio.configs.import_file(file, uploaded=True)
    return [new_yaml, new_yaml, *form_values(studio, new_yaml), "imported"]


def _listen_presets_and_import(ui: SimpleNamespace, studio, fields: list, show_family) -> None:
    """Apply presets and Import YAML: both replace the YAML box and refill the form from it."""
    presets = ui.presets
    chosen = [getattr(presets, kind) for kind, _ in training_presets.DROPDOWNS]
    presets.apply.click(partial(presets_applied, studio), inputs=[ui.yaml, ui.synced, *chosen, *fields],
                        outputs=[ui.yaml, ui.synced, *fields, presets.notes]).then(
        show_family, inputs=ui.yaml, outputs=ui.family)
    ui.import_file.upload(partial(imported, studio), inputs=ui.import_file,
                          outputs=[ui.yaml, ui.synced, *fields, ui.message]).then(
        show_family, inputs=ui.yaml, outputs=ui.family)
