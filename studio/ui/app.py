"""The studio's Gradio Blocks: four tabs around one ``Studio`` (``studio.app``)."""
from __future__ import annotations

from functools import partial

import gradio as gr

from . import caption_tab, dataset_tab, evaluation_tab, training_processes, training_tab
from .common import guarded

TITLE = "LoRA Studio"
CSS = """
.train-progress { font-family: ui-monospace, monospace; }
footer { display: none !important; }
"""


def build_app(studio) -> gr.Blocks:
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}\nFrom a folder of pictures to a tested LoRA · workspace `{studio.workspace}`"
                    + _access_note(studio), elem_id="studio-header")
        with gr.Tabs():
            with gr.Tab("Dataset", id="dataset", elem_id="tab-dataset"):
                dataset = dataset_tab.render(studio)
            with gr.Tab("Captioning", id="captioning", elem_id="tab-captioning"):
                captions = caption_tab.render(studio)
            with gr.Tab("Training", id="training", elem_id="tab-training"):
                training = training_tab.render(studio)
            with gr.Tab("Evaluation", id="evaluation", elem_id="tab-evaluation") as evaluation_page:
                evaluation = evaluation_tab.render(studio)
        dataset_tab.listen(dataset, studio)
        caption_tab.listen(captions, studio)
        training_tab.listen(training, studio)
        evaluation_tab.listen(evaluation, studio)
        _link_tabs(studio, dataset, captions, training)
        evaluation_page.select(lambda current: evaluation_tab.run_choices(studio, current), inputs=evaluation.run,
                               outputs=evaluation.run)
        app.load(lambda: training_tab.poll(studio), outputs=[training.progress, training.loss_plot, training.samples,
                                                             training.logs, training.message, training.shown_end])
        app.load(lambda: evaluation_tab.run_choices(studio), outputs=evaluation.run)
        app.load(training_processes.on_page_load, outputs=[training.processes_row, training.processes])
    app.css = CSS
    return app


def _access_note(studio) -> str:
    """For a studio reachable from other machines: which folders its pages may use."""
    lines = studio.access.describe()
    if not lines:
        return ""
    return ("\n\nThis studio is shared: its pages read and write only these folders (upload a dataset zip in the "
            "Dataset tab to bring pictures in):\n" + "\n".join(f"- {line}" for line in lines))


@guarded(lambda message: (gr.update(), gr.update(), message))
def use_for_training(studio, folder_text: str, yaml_text: str):
    """The Dataset tab's folder as the Training tab's ``train_data_dir``: (YAML, the form's field, message)."""
    folder = studio.datasets.folder(folder_text)
    new_yaml, field = training_tab.with_data_dir(studio, yaml_text, folder)
    return new_yaml, field, f"training will use {folder}"


def _link_tabs(studio, dataset, captions, training) -> None:
    """The dataset picked in one tab follows the user to the others."""
    dataset.use.click(partial(use_for_training, studio), inputs=[dataset.folder, training.yaml],
                      outputs=[training.yaml, training.data_dir, dataset.message])
    dataset.folder.change(lambda text: text, inputs=dataset.folder, outputs=captions.folder,
                          trigger_mode="always_last")
