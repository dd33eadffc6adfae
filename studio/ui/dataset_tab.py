"""Dataset tab: pick a folder (a path or a demo dataset), see its pictures with their captions, and check its
quality (the scan report, keep/drop choices and a clean copy: :mod:`studio.ui.dataset_review`)."""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr
from PIL import Image

from studio.app.review import thumbnail

from . import dataset_review
from .common import guarded

THUMBNAIL = 192


def render(studio) -> SimpleNamespace:
    demos = list(studio.datasets.demos())
    with gr.Row():
        folder = gr.Textbox(label="Dataset folder", placeholder="/path/to/images (with metadata.csv)", scale=4,
                            elem_id="dataset-folder")
        demo = gr.Dropdown(choices=demos, value=None, label="…or a demo dataset", scale=2, elem_id="dataset-demo")
        load = gr.Button("Load", variant="primary", scale=1, elem_id="dataset-load")
    upload = gr.File(label="…or upload a dataset: a .zip of the pictures with their metadata.csv (or .txt captions)",
                     file_types=[".zip"], height=120, elem_id="dataset-upload")
    message = gr.Markdown(elem_id="dataset-message")
    gallery = gr.Gallery(label="Pictures and captions", columns=6, height=520, object_fit="contain",
                         elem_id="dataset-gallery")
    use = gr.Button("Use this dataset for training", elem_id="dataset-use")
    review = dataset_review.render(studio)
    return SimpleNamespace(folder=folder, demo=demo, load=load, upload=upload, message=message, gallery=gallery,
                           use=use, review=review)


def _thumbnail(path) -> Image.Image:
    """Upright, tiny toy-world pictures enlarged without blurring; a grey square for a file that cannot be read."""
    return thumbnail(path, THUMBNAIL) or Image.new("RGB", (THUMBNAIL, THUMBNAIL), (200, 200, 200))


@guarded(lambda message: ([], message))
def show_dataset(studio, text: str):
    """Gallery items (thumbnail, caption) and a summary line for the folder named in ``text``."""
    view = studio.datasets.load(text)
    by_name = dict(view.rows)
    items = [(_thumbnail(path), by_name.get(path.name, "(no caption)")) for path in view.images]
    captions = f"{len(view.rows)} captions" if view.rows else "no captions yet"
    summary = f"**{view.folder}** — {len(view.images)} pictures, {captions}"
    notes = view.problems + view.warnings
    if notes:
        summary += "\n\n" + "\n".join(f"- ⚠ {n}" for n in notes[:20])
    return items, summary


@guarded(lambda message: (gr.update(), gr.update(), message))
def import_zip(studio, file):
    """An uploaded zip unpacked into the workspace: (folder text, gallery, message)."""
    if not file:
        return gr.update(), gr.update(), gr.update()
    result = studio.datasets.import_zip(file)
    items, summary = show_dataset(studio, str(result.folder))
    return str(result.folder), items, f"{result.summary()}\n\n{summary}"


def listen(ui: SimpleNamespace, studio) -> None:
    ui.upload.upload(lambda file: import_zip(studio, file), inputs=ui.upload,
                     outputs=[ui.folder, ui.gallery, ui.message])
    demos = studio.datasets.demos()
    ui.demo.input(lambda name: str(demos[name]) if name in demos else gr.update(), inputs=ui.demo,
                  outputs=ui.folder).then(
        lambda text: show_dataset(studio, text), inputs=ui.folder, outputs=[ui.gallery, ui.message]
    )
    ui.load.click(lambda text: show_dataset(studio, text), inputs=ui.folder, outputs=[ui.gallery, ui.message])
    ui.folder.submit(lambda text: show_dataset(studio, text), inputs=ui.folder, outputs=[ui.gallery, ui.message])
    dataset_review.listen(ui.review, studio, ui.folder)
