"""Captioning tab: the dataset's ``filename, prompt`` table, edited in place and saved to ``metadata.csv``."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from .common import error_text

HEADERS = ["filename", "prompt"]


def render(studio) -> SimpleNamespace:
    with gr.Row():
        folder = gr.Textbox(label="Dataset folder", scale=4, elem_id="caption-folder")
        load = gr.Button("Load captions", scale=1, elem_id="caption-load")
    table = gr.Dataframe(headers=HEADERS, datatype=["str", "str"], column_count=2, interactive=True,
                         wrap=True, label="Captions (edit a cell, then Save)", elem_id="caption-table")
    with gr.Row():
        save = gr.Button("Save metadata.csv", variant="primary", elem_id="caption-save")
    message = gr.Markdown(elem_id="caption-message")
    return SimpleNamespace(folder=folder, load=load, table=table, save=save, message=message)


def _rows(value) -> list[tuple[str, str]]:
    """Rows of the Dataframe's value (a pandas DataFrame or a list of lists)."""
    if hasattr(value, "values"):
        value = value.values.tolist()
    return [(str(r[0] if r[0] is not None else ""), str(r[1] if r[1] is not None else "")) for r in value or []]


def load_table(studio, text: str):
    try:
        view = studio.load_dataset(text)
    except Exception as error:
        return gr.update(), error_text(error)
    note = f"{len(view.rows)} captions from {view.folder / 'metadata.csv'}"
    return [list(row) for row in view.rows], note


def save_table(studio, text: str, value):
    try:
        path = studio.save_captions(text, _rows(value))
    except Exception as error:
        return error_text(error)
    return f"✅ saved {path} (the previous version is kept as {path.name}.bak)"


def listen(ui: SimpleNamespace, studio) -> None:
    ui.load.click(lambda t: load_table(studio, t), inputs=ui.folder, outputs=[ui.table, ui.message])
    ui.folder.submit(lambda t: load_table(studio, t), inputs=ui.folder, outputs=[ui.table, ui.message])
    ui.save.click(lambda t, v: save_table(studio, t, v), inputs=[ui.folder, ui.table], outputs=ui.message)
