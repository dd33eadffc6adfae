"""A keyword chart: the most frequent keywords of a caption set (tags, or the words of sentence captions), with the
``**core**`` tags highlighted."""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from studio.caption.markup import core_tags, keyword_frequency
from studio.util.fs import atomic_write_bytes

if TYPE_CHECKING:
    from studio.data import CaptionRecord

CORE_COLOUR, OTHER_COLOUR = "#d9480f", "#868e96"


def keyword_chart(records: Iterable[CaptionRecord | str], out_png: str | os.PathLike, top: int = 20) -> Path:
    """Draw a horizontal bar chart of the ``top`` keywords of ``records`` into ``out_png``; returns it.

    ``records`` are CaptionRecord rows or plain caption strings; the bars are :func:`chart_bars`. Core tags (marked
    ``**…**`` in any caption) are drawn in orange, the others in grey. Uses matplotlib's Agg canvas directly: no
    global pyplot state, so it is safe to call from a UI thread.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    captions = [getattr(record, "prompt", record) for record in records]
    frequency = chart_bars(captions, top)
    core = core_tags(captions)
    height = 1.6 + 0.32 * max(len(frequency), 1)
    figure = Figure(figsize=(7.5, height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    if frequency:
        tags = [tag for tag, _count in reversed(frequency)]
        counts = [count for _tag, count in reversed(frequency)]
        colours = [CORE_COLOUR if tag in core else OTHER_COLOUR for tag in tags]
        axes.barh(range(len(tags)), counts, color=colours)
        axes.set_yticks(range(len(tags)), labels=tags)
        axes.set_xlabel(f"captions using the keyword (of {len(captions)})")
        axes.xaxis.get_major_locator().set_params(integer=True)
        if core:
            figure.legend(handles=[Patch(color=CORE_COLOUR, label="core tag (**…**)"),
                                   Patch(color=OTHER_COLOUR, label="other keyword")], loc="outside lower center",
                          ncols=2)
    else:
        axes.text(0.5, 0.5, "no keywords yet", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
    axes.set_title(f"Top {len(frequency)} keywords")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return atomic_write_bytes(out_png, buffer.getvalue())


def chart_bars(captions: Iterable[str], top: int = 20) -> list[tuple[str, int]]:
    """The chart's bars, most frequent first: ``(keyword, captions using it)`` (:func:`keyword_frequency`)."""
    return list(keyword_frequency(captions).items())[:max(top, 1)]
