"""The Dataset tab's quality report: scan the folder for the resolution the user will train at, show the verdict,
the counts per reason and the flagged images (thumbnail, reason badges with their numbers, keep/drop), save the
choices, and prepare a clean copy. A new folder clears the previous folder's report."""
from __future__ import annotations

import html
from functools import partial
from types import SimpleNamespace

import gradio as gr

from studio.app.review import DEFAULT_RESOLUTION, MAX_ROWS, Review, ReviewRow

from .common import error_text, guarded

HEADERS = ["picture", "file", "size", "reasons", "keep"]
KEEP_COLUMN = HEADERS.index("keep")
FILE_COLUMN = HEADERS.index("file")
_BADGE = ("display:inline-block;margin:1px 4px 1px 0;padding:1px 8px;border-radius:10px;font-size:0.85em;"
          "background:{background};color:{colour}")
_COLOURS = {"unreadable": ("#fbd5d5", "#7f1d1d"), "drop": ("#fde8c8", "#7c3f00"), "advice": ("#dbeafe", "#1e3a8a"),
            "clean": ("#dcfce7", "#14532d")}


def render(studio) -> SimpleNamespace:
    gr.Markdown("### Quality report")
    with gr.Row():
        resolution = gr.Number(value=DEFAULT_RESOLUTION, precision=0, minimum=1, scale=1,
                               label="Training resolution (px)", elem_id="dataset-resolution",
                               info="512 for SD 1.x, 1024 for SDXL, 32 for the toy worlds: smaller pictures are "
                                    "flagged, the clean copy is resized to it")
        recursive = gr.Checkbox(label="Include sub-folders", scale=1, elem_id="dataset-recursive")
        show_all = gr.Checkbox(label="List every image, not only flagged ones", scale=2, elem_id="dataset-show-all")
        scan = gr.Button("Scan", variant="primary", scale=1, elem_id="dataset-scan")
    verdict = gr.Markdown(elem_id="dataset-verdict")
    table = gr.Dataframe(headers=HEADERS, datatype=["html", "str", "str", "html", "bool"], static_columns=[0, 1, 2, 3],
                         interactive=True, type="array", wrap=True, max_height=640, elem_id="dataset-report",
                         column_widths=["120px", "22%", "90px", "46%", "80px"],
                         label="Flagged images: untick keep to drop an image, tick it to keep one (saved at once)")
    choice_message = gr.Markdown(elem_id="dataset-choice-message")
    report_file = gr.File(label="JSON report", interactive=False, elem_id="dataset-report-json")
    with gr.Row():
        out = gr.Textbox(label="Folder for the clean copy", scale=4, elem_id="dataset-prepare-out",
                         placeholder="empty: <workspace>/prepared/<dataset name>; a relative path is under the "
                                     "workspace")
        prepare = gr.Button("Prepare clean copy", scale=1, elem_id="dataset-prepare")
    prepare_message = gr.Markdown(elem_id="dataset-prepare-message")
    scanned = gr.State("")  # the folder the table shows: choices and prepare apply to it, whatever the textbox says
    suggested = gr.State(DEFAULT_RESOLUTION)  # the resolution the tab filled in itself, not the user
    settled = gr.State("")  # the folder new_folder last handled
    return SimpleNamespace(resolution=resolution, suggested=suggested, settled=settled, recursive=recursive, show_all=show_all,
                           scan=scan, verdict=verdict, table=table, choice_message=choice_message,
                           report_file=report_file, out=out, prepare=prepare, prepare_message=prepare_message,
                           scanned=scanned)


def _badge(text: str, kind: str, title: str = "", code: str = "") -> str:
    background, colour = _COLOURS[kind]
    return (f'<span class="reason-badge" data-code="{code}" title="{html.escape(title)}" '
            f'style="{_BADGE.format(background=background, colour=colour)}">{html.escape(text)}</span>')


def _reasons_html(row: ReviewRow) -> str:
    if not row.reasons:
        return _badge("no problems found", "clean")
    return "".join(_badge(text, severity, advice, code) for code, text, advice, severity in row.reasons)


def _picture_html(row: ReviewRow) -> str:
    if not row.thumbnail:
        return '<span title="this file cannot be decoded">✕ no preview</span>'
    return (f'<img src="{row.thumbnail}" alt="{html.escape(row.relpath)}" '
            'style="max-height:72px;max-width:96px;object-fit:contain">')


def table_rows(review: Review, show_all: bool) -> list[list]:
    return [[_picture_html(row), row.relpath, row.size, _reasons_html(row), row.keep]
            for row in review.rows(show_all)]


def summary(review: Review, show_all: bool) -> str:
    """The one-line verdict, the counts per reason, and what the table shows."""
    report = review.report
    lines = [f"**{html.escape(report.verdict)}**"]
    counts = review.counts()
    if counts:
        lines.append(" ".join(_badge(f"{label}: {count}", kind) for label, count, kind in counts))
    listed = len(review.listed(show_all))
    shown = min(listed, MAX_ROWS)
    what = "images" if show_all else "flagged images"
    lines.append(f"{len(report.images)} images scanned in `{review.folder}` for training at {review.resolution} px; "
                 f"the table lists {shown} of {listed} {what}"
                 + ("" if shown == listed else " (the JSON report lists them all)") + ".")
    if review.read_only:
        lines.append("This demo dataset is read-only: keep/drop choices cannot be saved for it.")
    notes = "\n".join(f"- ⚠ {html.escape(note)}" for note in review.notes()[:12])
    return "\n\n".join(lines + ([notes] if notes else []))


@guarded(lambda message: (gr.update(), message, gr.update(), gr.update(), "", ""))
def scan(studio, text: str, resolution, recursive: bool, show_all: bool, progress=gr.Progress()):
    """Scan button: (scanned folder, verdict, table, JSON report, choice message, prepare message)."""

    def report_progress(done: int, total: int) -> None:
        progress((done, total), desc="Scanning", unit="images")

    review = studio.datasets.scan(text, resolution=int(resolution or DEFAULT_RESOLUTION),
                                  recursive=recursive, progress=report_progress)
    return (str(review.folder), summary(review, show_all), table_rows(review, show_all), str(review.report_path), "",
            "")


def new_folder(studio, text: str, resolution, suggested, settled: str):
    """The folder changed: the previous folder's report, choices and clean-copy lines go, and the training
    resolution follows the folder when it says what it is for (a demo, a clean copy). A value the user typed stays;
    one the tab filled in goes back to the default for a folder that says nothing.

    The folder box reports every keystroke and every programmatic set, and a change can be handled after a Scan or
    a resolution the user typed since; so a change to the folder already handled changes nothing, rather than
    clearing that scan's report or resetting that resolution.

    Returns (resolution, suggested, scanned, verdict, table, JSON report, choice message, prepare message,
    settled)."""
    if text == settled:
        return (*[gr.update()] * 8, settled)
    suggestion = studio.datasets.suggested_resolution(text)
    current = int(resolution or DEFAULT_RESOLUTION)
    note = ""
    if suggestion is not None:
        current, why = suggestion
        suggested = current
        note = f"Training resolution set to {current} px: {why}. Press Scan to check the pictures."
    elif current == suggested:
        current = suggested = DEFAULT_RESOLUTION
    return current, suggested, "", note, [], None, "", "", text


@guarded(lambda message: (gr.update(), message))
def relist(studio, folder: str, show_all: bool):
    """The show-all box: the stored report's table again (no new scan)."""
    if not folder:
        return gr.update(), gr.update()
    review = studio.datasets.load_review(folder)
    return table_rows(review, show_all), summary(review, show_all)


@guarded(lambda message: (gr.update(), message))
def save_choices(studio, folder: str, value, show_all: bool):
    """A keep box changed: save the differences; the table is redrawn only when a change was refused."""
    if not folder:
        return gr.update(), error_text("scan a folder first")
    choices = {str(row[FILE_COLUMN]): _truthy(row[KEEP_COLUMN]) for row in value or [] if row and row[FILE_COLUMN]}
    result = studio.datasets.save_choices(folder, choices)
    lines = [f"✓ {relpath}: {'keep' if keep else 'drop'}" for relpath, keep in result.saved.items()]
    if result.path is not None:
        lines.append(f"saved in `{result.path}` (the previous choices are in `{result.path.name}.bak`)")
    lines += [f"⚠ {relpath} {why}" for relpath, why in result.refused.items()]
    table = gr.update()
    if result.refused:
        table = table_rows(studio.datasets.load_review(folder), show_all)
    return table, "\n\n".join(lines) or "no change"


def _truthy(value) -> bool:
    return value is True or str(value).strip().lower() in ("true", "1", "yes")


@guarded(lambda message: message)
def prepare(studio, folder: str, out_text: str, progress=gr.Progress()):
    if not folder:
        return error_text("scan a folder first")

    def report_progress(done: int, total: int) -> None:
        progress((done, total), desc="Writing the clean copy", unit="images")

    result = studio.datasets.prepare_copy(folder, out_text, progress=report_progress)
    lines = [f"{'✓' if result.written else '✗'} {result.summary()}"]
    lines += [f"- {html.escape(relpath)}: {html.escape(why)}" for relpath, why in list(result.skipped.items())[:30]]
    return "\n".join(lines)


def listen(ui: SimpleNamespace, studio, folder) -> None:
    ui.scan.click(partial(scan, studio), inputs=[folder, ui.resolution, ui.recursive, ui.show_all],
                  outputs=[ui.scanned, ui.verdict, ui.table, ui.report_file, ui.choice_message, ui.prepare_message])
    folder.change(partial(new_folder, studio), inputs=[folder, ui.resolution, ui.suggested, ui.settled],
                  outputs=[ui.resolution, ui.suggested, ui.scanned, ui.verdict, ui.table, ui.report_file,
                           ui.choice_message, ui.prepare_message, ui.settled], trigger_mode="always_last")
    ui.show_all.input(partial(relist, studio), inputs=[ui.scanned, ui.show_all],
                      outputs=[ui.table, ui.verdict])
    ui.table.input(partial(save_choices, studio), inputs=[ui.scanned, ui.table, ui.show_all],
                   outputs=[ui.table, ui.choice_message])
    ui.prepare.click(partial(prepare, studio), inputs=[ui.scanned, ui.out],
                     outputs=ui.prepare_message)
