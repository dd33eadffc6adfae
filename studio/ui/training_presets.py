"""The Training tab's presets: five dropdowns and Apply, then what the combination did — the advice it breaks,
which preset set each setting and what a later preset overrode — above each chosen preset's description.
"""
from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from studio.app.configs import list_presets

# (kind, label) in the order the dropdowns are shown; presets apply in the order model, demo, task, rank, epochs.
DROPDOWNS = (("model", "Model preset"), ("task", "Task preset"), ("rank", "Rank preset"),
             ("epochs", "Epoch preset"), ("demo", "Demo preset"))


def render() -> SimpleNamespace:
    """The dropdowns (``preset-<kind>``), the Apply button and the notes under them."""
    with gr.Row():
        dropdowns = {kind: gr.Dropdown(["", *(p.name for p in list_presets(kind))], value="", label=label,
                                       elem_id=f"preset-{kind}") for kind, label in DROPDOWNS}
        apply = gr.Button("Apply presets", elem_id="preset-apply")
    notes = gr.Markdown(elem_id="preset-notes")
    return SimpleNamespace(apply=apply, notes=notes, **dropdowns)


def shown(value) -> str:
    """A setting's value as the form and YAML show it: ``empty``, ``0.003``, ``to_q, to_v``."""
    if value is None or value == "":
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value) or "empty"
    return str(value)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def report_markdown(report) -> str:
    """Warnings first, then one row per setting the presets touched (overridden ones first), then descriptions."""
    if not report.presets:
        return "No preset chosen: pick one or more above, then Apply."
    order = " → ".join(p.name for p in report.presets)
    lines = [f"**⚠ {_cell(warning)}**\n" for warning in report.warnings]  # a paragraph each
    lines += [f"Applied in this order, a later preset winning: {order}.", "",
              "| setting | now | set by | overridden | before |", "| --- | --- | --- | --- | --- |"]
    origins = sorted(report.origins, key=lambda origin: not origin.overridden)
    for origin in origins:
        replaced = ", ".join(f"{name}: {shown(value)}" for name, value in origin.overridden) or "—"
        lines.append(f"| {origin.setting} | {_cell(shown(origin.now))} | {origin.set_by} | "
                     f"{_cell(replaced)} | {_cell(shown(origin.before))} |")
    lines.append("")
    lines += [f"**{p.kind}: {p.name}** — {p.description}\n" for p in report.presets]
    return "\n".join(lines)
