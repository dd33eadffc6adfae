"""The labelled grid PNG: a title, the column axis title and headers, a label per row, and the pictures.

Small pictures (the toy world's 32 px) are enlarged with nearest-neighbour so every cell is at least
``MIN_CELL`` pixels wide and the pixels stay sharp. PIL's default font is used (scalable in Pillow >= 10.1).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

from PIL import Image, ImageDraw, ImageFont

MIN_CELL = 128
GAP = 4
LABEL_WIDTH = 260
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
MUTED = (110, 110, 110)
MISSING = (225, 225, 225)


@dataclass
class SheetLayout:
    """Where things were drawn (pixel boxes as (left, top, right, bottom)), for the UI and the tests."""

    cell_size: tuple[int, int]
    title_box: tuple[int, int, int, int]
    axis_box: tuple[int, int, int, int]
    header_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    label_boxes: list[tuple[int, int, int, int]] = field(default_factory=list)
    cell_boxes: dict[tuple[int, int], tuple[int, int, int, int]] = field(default_factory=dict)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one fixed-size bitmap font
        return ImageFont.load_default()


def wrap(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: int,
         max_lines: int = 4) -> list[str]:
    """Words of ``text`` in lines no wider than ``width`` pixels; the last line ends in "…" when cut."""
    lines: list[str] = []
    current = ""
    for word in text.split():
        candidate = f"{current} {word}".strip()
        if draw.textlength(candidate, font=font) <= width or not current:
            current = candidate
        else:
            lines.append(current)
            current = word
    if current:
        lines.append(current)
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        last = lines[-1]
        while last and draw.textlength(last + " …", font=font) > width:
            last = last[:-1]
        lines[-1] = last.rstrip() + " …"
    return lines


def cell_size(image_size: tuple[int, int]) -> tuple[int, int]:
    """Displayed (width, height) of a cell: the picture enlarged by a whole factor to at least ``MIN_CELL``."""
    width, height = image_size
    scale = max(1, math.ceil(MIN_CELL / max(1, min(width, height))))
    return width * scale, height * scale


def draw_sheet(images: list[list[Image.Image | None]], column_labels: list[str], row_labels: list[list[str]],
               title: str, axis_title: str, corner: str = "",
               group_starts: Iterable[int] = ()) -> tuple[Image.Image, SheetLayout]:
    """Draw ``images[row][column]`` (None = not drawn) under headers, with ``row_labels[row]`` (lines) beside.

    ``group_starts``: row indices that begin a new group (a checkpoint); a rule is drawn above them.
    """
    sample = next((im for row in images for im in row if im is not None), None)
    cell_w, cell_h = cell_size(sample.size if sample is not None else (MIN_CELL, MIN_CELL))
    title_font, axis_font, label_font, small = _font(18), _font(15), _font(13), _font(12)
    columns, rows = len(column_labels), len(images)
    title_h, axis_h, header_h = 30, 22, 22
    top = title_h + axis_h + header_h
    width = LABEL_WIDTH + columns * (cell_w + GAP) + GAP
    height = top + rows * (cell_h + GAP) + GAP
    sheet = Image.new("RGB", (max(width, 480), height), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    grid_left = LABEL_WIDTH + GAP
    layout = SheetLayout((cell_w, cell_h), (GAP, 4, sheet.width - GAP, title_h),
                         (grid_left, title_h, width - GAP, title_h + axis_h))
    draw.text((GAP + 2, 6), title, fill=INK, font=title_font)
    axis_w = draw.textlength(axis_title, font=axis_font)
    axis_x = grid_left + (columns * (cell_w + GAP) - axis_w - 34) / 2
    draw.text((axis_x, title_h + 2), axis_title, fill=INK, font=axis_font)
    _arrow(draw, axis_x + axis_w + 8, title_h + 11)
    if corner:
        draw.text((GAP + 2, title_h + axis_h + 4), corner, fill=MUTED, font=small)
    for c, label in enumerate(column_labels):
        left = grid_left + c * (cell_w + GAP)
        text = wrap(draw, label, label_font, cell_w, max_lines=1)[0] if label else ""
        draw.text((left + (cell_w - draw.textlength(text, font=label_font)) / 2, title_h + axis_h + 4), text,
                  fill=INK, font=label_font)
        layout.header_boxes.append((left, title_h + axis_h, left + cell_w, top))
    for r, row in enumerate(images):
        y = top + r * (cell_h + GAP)
        if r in group_starts and r:
            draw.line([(GAP, y - GAP // 2 - 1), (width - GAP, y - GAP // 2 - 1)], fill=MUTED, width=2)
        _draw_label(draw, row_labels[r], (GAP + 2, y + 2), cell_h, label_font, small)
        layout.label_boxes.append((GAP, y, LABEL_WIDTH, y + cell_h))
        for c, image in enumerate(row):
            box = (grid_left + c * (cell_w + GAP), y, grid_left + c * (cell_w + GAP) + cell_w, y + cell_h)
            layout.cell_boxes[(r, c)] = box
            if image is None:
                draw.rectangle(box, fill=MISSING)
                draw.text((box[0] + 6, box[1] + 6), "not drawn", fill=MUTED, font=small)
            else:
                sheet.paste(image.convert("RGB").resize((cell_w, cell_h), Image.NEAREST), box[:2])
    return sheet, layout


def _arrow(draw, x: float, y: float, length: int = 26) -> None:
    """A right-pointing arrow after the axis title (the default font has no arrow glyph)."""
    draw.line([(x, y), (x + length, y)], fill=INK, width=2)
    draw.polygon([(x + length + 2, y), (x + length - 6, y - 5), (x + length - 6, y + 5)], fill=INK)


def _draw_label(draw, lines: list[str], origin: tuple[int, int], height: int, font, small) -> None:
    """First line (the prompt) wrapped in the label column, the rest (seed, checkpoint) in smaller type."""
    x, y = origin
    bottom = origin[1] + height
    first, rest = (lines[0], lines[1:]) if lines else ("", [])
    budget = max(1, (height - 16 * len(rest)) // 16)
    for line in wrap(draw, first, font, LABEL_WIDTH - 12, max_lines=budget):
        draw.text((x, y), line, fill=INK, font=font)
        y += 16
    for line in rest:
        if y + 14 > bottom:
            break
        draw.text((x, y), line, fill=MUTED, font=small)
        y += 15
