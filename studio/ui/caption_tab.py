"""Captioning tab: the ``filename, prompt`` table with lint findings beside each row, the keyword chart, a preview
of structured prompts, bulk edits with Undo and Redo, the four-part prompt helper and BLIP auto-captioning. A change
to a shipped demo's captions is made in a copy in the workspace, and the folder field then names the copy.

The logic lives in the studio's ``captions`` (``studio.app.captions``, and ``studio.app.caption_job``); this module
only lays out widgets and turns results and errors into what the page shows.
"""
from __future__ import annotations

import html
import time
from functools import partial
from types import SimpleNamespace

import gradio as gr

from studio.app.captions import (DEFAULT_BLIP, FORMULA_FIELDS, build_caption, place_caption, structured_preview,
                                 table_rows)

from .common import error_text, guarded

HEADERS = ["filename", "prompt", "lint"]
MISSING, ALL = "images without a caption", "all images (replace their captions)"
TEMPLATE_EXAMPLE = "for example  **{caption}**, high quality, detailed"
POLL_SECONDS = 0.4


def render(studio) -> SimpleNamespace:
    with gr.Row():
        folder = gr.Textbox(label="Dataset folder", scale=4, elem_id="caption-folder")
        load = gr.Button("Load captions", scale=1, elem_id="caption-load")
    required = gr.Textbox(label="Required words (checked in every caption)", elem_id="caption-required",
                          placeholder="your trigger word, e.g. zq star; several separated by commas")
    message = gr.Markdown(elem_id="caption-message")
    lint = gr.Markdown(elem_id="caption-lint")
    table = gr.Dataframe(headers=HEADERS, datatype=["str", "str", "str"], column_count=3, interactive=True,
                         static_columns=[2], wrap=True, column_widths=["16%", "44%", "40%"], max_height=560,
                         label="Captions (edit a cell, then Save; click a row to select it for the prompt helper)",
                         elem_id="caption-table")
    with gr.Row():
        save = gr.Button("Save metadata.csv", variant="primary", elem_id="caption-save")
        check = gr.Button("Check the table (without saving)", elem_id="caption-check")
        undo = gr.Button("Undo", elem_id="caption-undo")
        redo = gr.Button("Redo", elem_id="caption-redo")
        export = gr.Button("Export for a spreadsheet", elem_id="caption-export")
    export_file = gr.File(label="Captions for a spreadsheet (cells that start with = + - @ get a leading ')",
                          interactive=False, height=80, visible=True, elem_id="caption-export-file")
    with gr.Row():
        chart = gr.Image(label="Keyword chart (core tags in orange)", type="filepath", interactive=False,
                         buttons=["download"], elem_id="caption-chart")
        preview = gr.HTML(label="Structured prompts", elem_id="caption-preview", max_height=520)
    ui = SimpleNamespace(folder=folder, load=load, required=required, message=message, lint=lint, table=table,
                         save=save, check=check, undo=undo, redo=redo, export=export, export_file=export_file,
                         chart=chart, preview=preview, desk=studio.captions)
    _render_edits(ui)
    _render_helper(ui)
    _render_auto(ui)
    return ui


def _render_edits(ui: SimpleNamespace) -> None:
    with gr.Accordion("Bulk edits (written to metadata.csv; Undo takes each one back)", open=True):
        with gr.Row():
            ui.template = gr.Textbox(label="Template ({caption} is where each caption goes)", value="", scale=4,
                                     placeholder=TEMPLATE_EXAMPLE, elem_id="caption-template")
            ui.template_apply = gr.Button("Apply template", scale=1, elem_id="caption-template-apply")
        with gr.Row():
            ui.prefix = gr.Textbox(label="Prefix (trigger word)", scale=2, elem_id="caption-prefix")
            ui.prefix_apply = gr.Button("Add prefix", scale=1, elem_id="caption-prefix-apply")
            ui.suffix = gr.Textbox(label="Suffix (style tag)", scale=2, elem_id="caption-suffix")
            ui.suffix_apply = gr.Button("Add suffix", scale=1, elem_id="caption-suffix-apply")
        with gr.Row():
            ui.find = gr.Textbox(label="Find", scale=2, elem_id="caption-find")
            ui.replace = gr.Textbox(label="Replace with", scale=2, elem_id="caption-replace")
            with gr.Column(scale=1, min_width=140):
                ui.regex = gr.Checkbox(label="regular expression", elem_id="caption-regex")
                ui.ignore_case = gr.Checkbox(label="ignore case", elem_id="caption-ignore-case")
            ui.replace_apply = gr.Button("Replace in all captions", scale=1, elem_id="caption-replace-apply")


def _render_helper(ui: SimpleNamespace) -> None:
    with gr.Accordion("Prompt helper: subject + attributes + scene + style", open=False):
        ui.selected = gr.State(None)
        ui.selected_note = gr.Markdown("No row selected: click a caption in the table.", elem_id="caption-selected")
        with gr.Row():
            ui.formula = [gr.Textbox(label=label, placeholder=example, elem_id=f"caption-formula-{name}")
                          for name, label, example in FORMULA_FIELDS]
        ui.built = gr.Textbox(label="Caption", interactive=False, elem_id="caption-formula-result")
        with gr.Row():
            ui.insert = gr.Button("Replace the selected row's caption", elem_id="caption-formula-insert")
            ui.append = gr.Button("Append to the selected row's caption", elem_id="caption-formula-append")


def _render_auto(ui: SimpleNamespace) -> None:
    with gr.Accordion("Auto-caption with BLIP", open=False):
        with gr.Row():
            ui.model = gr.Textbox(label="BLIP model: a local folder or a hub id", value=DEFAULT_BLIP, scale=3,
                                  elem_id="caption-model")
            ui.batch = gr.Number(label="Batch size", value=8, minimum=1, maximum=256, precision=0, scale=1,
                                 elem_id="caption-batch")
            ui.which = gr.Radio([MISSING, ALL], value=MISSING, label="Caption", scale=2, elem_id="caption-which")
        with gr.Row():
            ui.auto_start = gr.Button("Auto-caption", variant="primary", elem_id="caption-auto-start")
            ui.auto_cancel = gr.Button("Cancel", variant="stop", elem_id="caption-auto-cancel")
        ui.auto_progress = gr.HTML(progress_html(ui.desk.auto.state()), elem_id="caption-auto-progress")


def progress_html(state) -> str:
    bar = f'<progress max="{max(state.total, 1)}" value="{state.done}" style="width:100%"></progress>'
    return (f'<div class="caption-progress" data-status="{state.status}" data-done="{state.done}" '
            f'data-total="{state.total}">{bar if state.total else ""}<div>{html.escape(state.line())}</div></div>')


def shown(view) -> tuple:
    """table, lint summary, chart and preview of a ``CaptionView``."""
    return view.table(), view.summary(), str(view.chart) if view.chart else None, structured_preview(view.rows)


def written(view, message: str) -> tuple:
    """After a change to the files: the folder it went to (a copy, for a shipped demo), the message (with where the
    copy is) and the view."""
    return (str(view.folder), f"{message}\n\n{view.copied}" if view.copied else message, *shown(view))


UNCHANGED = (gr.update(),) * 4


def message_only(message: str) -> tuple:
    """A failure's outputs for (message, table, lint, chart, preview): the message, the rest as it was."""
    return (message, *UNCHANGED)


def folder_and_message(message: str) -> tuple:
    """A failure's outputs for (folder, message, table, lint, chart, preview)."""
    return (gr.update(), message, *UNCHANGED)


@guarded(message_only)
def load_table(desk, text: str, required: str):
    view = desk.open(text, required)
    return (view.note or f"{len(view.rows)} captions from {view.csv_path}", *shown(view))


@guarded(folder_and_message)
def save_table(desk, text: str, value, required: str):
    path, view = desk.save(text, table_rows(value), required)
    return written(view, f"✓ saved {path} (the previous version is kept as {path.name}.bak; Undo puts it back)")


@guarded(message_only)
def check_table(desk, text: str, value, required: str):
    view = desk.check(text, table_rows(value), required)
    return ("checked the table as shown (not saved)", *shown(view))


@guarded(folder_and_message)
def bulk_edit(desk, kind: str, text: str, value, required: str, *args):
    result, view = desk.edit(text, table_rows(value), kind, *args, required=required)
    if not result.changed_rows:
        return written(view, f"nothing changed: no caption needed this edit; {result.path.name} was not touched")
    names = ", ".join(result.changed_files[:3]) + (" …" if result.changed_rows > 3 else "")
    return written(view, f"✓ changed {result.changed_rows} of {len(view.rows)} captions ({names}) in {result.path}; "
                   "Undo takes it back")


@guarded(folder_and_message)
def step_edit(desk, direction: str, text: str, value, required: str):
    """Undo or Redo one step of the caption history."""
    result, view = getattr(desk, direction)(text, table_rows(value), required)
    undo_left, redo_left = desk.history(view.folder).steps()
    done = "went back one step" if direction == "undo" else "went forward one step"
    return written(view, f"✓ {done} in {result.path} ({result.changed_rows} captions differ); {undo_left} more "
                   f"step(s) to undo, {redo_left} to redo")


@guarded(lambda message: (message, gr.update()))
def export_table(desk, text: str, value):
    path = desk.export_spreadsheet(text, table_rows(value))
    return f"exported the table for a spreadsheet to {path} (formulas disarmed; metadata.csv is unchanged)", str(path)


@guarded(message_only)
def place(desk, append: bool, text: str, value, required: str, index, *parts):
    rows = place_caption(table_rows(value), index, build_caption(*parts), append)
    view = desk.check(text, rows, required)
    verb = "appended to" if append else "put into"
    return (f"the caption was {verb} {rows[index][0]} in the table (not saved yet): click Save to write it",
            *shown(view))


def select_row(value, event: gr.SelectData):
    rows = table_rows(value)
    index = event.index[0] if isinstance(event.index, (list, tuple)) else event.index
    if index is None or not 0 <= index < len(rows):
        return None, "No row selected: click a caption in the table."
    return index, f"Selected row {index + 1}: **{html.escape(rows[index][0])}**"


@guarded(lambda message: (gr.update(), *folder_and_message(message)))
def auto_caption(desk, text: str, value, required: str, model: str, batch, which: str):
    """Auto-caption button: (progress, folder, message, table, lint, chart, preview) while it runs and at the end."""
    same = (gr.update(),) * 6
    folder = desk.start_auto_caption(text, table_rows(value), model, batch or 0, which == ALL)
    state = desk.auto.state()
    while state.active:
        yield (progress_html(state), *same)
        time.sleep(POLL_SECONDS)
        state = desk.auto.state()
    yield (progress_html(state), str(folder), *(gr.update(),) * 5)  # how it ended, and the folder it captioned
    if state.status == "failed":
        yield (gr.update(), *folder_and_message(error_text(state.message)))
        return
    view = desk.open(str(folder), required)
    yield (gr.update(), *written(view, ("✓ " if state.status == "finished" else "■ ") + state.message))


def cancel_auto(desk):
    if desk.auto.cancel():
        return progress_html(desk.auto.state())
    return gr.update()


def listen(ui: SimpleNamespace, studio) -> None:
    desk, views = ui.desk, [ui.message, ui.table, ui.lint, ui.chart, ui.preview]
    changed = [ui.folder] + views  # after a change to the files: the folder may now be a demo's copy
    named, with_table = [ui.folder, ui.required], [ui.folder, ui.table, ui.required]
    for trigger in (ui.load.click, ui.folder.submit, ui.required.submit):
        trigger(partial(load_table, desk), inputs=named, outputs=views)
    ui.save.click(partial(save_table, desk), inputs=with_table, outputs=changed)
    ui.check.click(partial(check_table, desk), inputs=with_table, outputs=views)
    ui.undo.click(partial(step_edit, desk, "undo"), inputs=with_table, outputs=changed)
    ui.redo.click(partial(step_edit, desk, "redo"), inputs=with_table, outputs=changed)
    ui.export.click(partial(export_table, desk), inputs=[ui.folder, ui.table], outputs=[ui.message, ui.export_file])
    edits = {"template": (ui.template_apply, [ui.template]), "prefix": (ui.prefix_apply, [ui.prefix]),
             "suffix": (ui.suffix_apply, [ui.suffix]),
             "replace": (ui.replace_apply, [ui.find, ui.replace, ui.regex, ui.ignore_case])}
    for kind, (button, fields) in edits.items():
        button.click(partial(bulk_edit, desk, kind), inputs=with_table + fields, outputs=changed)
    ui.table.select(select_row, inputs=ui.table, outputs=[ui.selected, ui.selected_note])
    for field in ui.formula:
        field.change(build_caption, inputs=ui.formula, outputs=ui.built)
    for button, append in ((ui.insert, False), (ui.append, True)):
        button.click(partial(place, desk, append), inputs=with_table + [ui.selected] + ui.formula, outputs=views)
    ui.auto_start.click(partial(auto_caption, desk), inputs=with_table + [ui.model, ui.batch, ui.which],
                        outputs=[ui.auto_progress] + changed)
    ui.auto_cancel.click(partial(cancel_auto, desk), outputs=ui.auto_progress)
