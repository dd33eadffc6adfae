"""The Training tab's process count: offered when more than one GPU is present (or ``$LORA_STUDIO_MAX_PROCESSES``
is above 1), with the effective batch it gives. More than one process trains data-parallel in subprocesses.
"""
from __future__ import annotations

import gradio as gr

from studio.app.processes import env_max_processes, max_processes

from .common import guarded


def render() -> tuple[gr.Row, gr.Dropdown, gr.Markdown]:
    """Hidden until the page loads and the device count is known (counting GPUs imports torch: not at start-up)."""
    env_max_processes()  # a bad $LORA_STUDIO_MAX_PROCESSES stops the studio at start, with the reason
    with gr.Row(visible=False, elem_id="train-processes-row") as row:
        processes = gr.Dropdown(
            [1], value=1, label="Processes (GPUs)", elem_id="train-processes", scale=1,
            info="data-parallel, one process per GPU: each trains on its slice of every batch",
        )
        effective = gr.Markdown(elem_id="train-effective-batch")
    return row, processes, effective


def on_page_load():
    """(row, dropdown) updates: 1 … the device count, defaulting to all of them; hidden with one device."""
    count = max_processes()
    return gr.update(visible=count > 1), gr.update(choices=list(range(1, count + 1)), value=count)


@guarded(lambda _message: "")  # a config that does not parse: the YAML box's own check tells why, once
def effective_batch(studio, yaml_text: str, processes) -> str:
    """``effective batch 8 = 4 per device × 2 processes × 1 accumulation`` for the YAML box's config."""
    config = studio.configs.parse(yaml_text)
    count, accumulation = int(processes or 1), config.gradient_accumulation_steps
    return (f"effective batch **{config.batch_size * count * accumulation}** = {config.batch_size} per device × "
            f"{count} process{'es' if count > 1 else ''} × {accumulation} accumulation")


def listen(ui, studio) -> None:
    """The effective batch follows the process count and the Training tab's config (``ui.yaml``)."""
    for event in (ui.processes.change, ui.yaml.change):
        event(lambda text, count: effective_batch(studio, text, count), inputs=[ui.yaml, ui.processes],
              outputs=ui.effective, show_progress="hidden")
