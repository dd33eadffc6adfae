"""The four-part prompt formula the tutorials teach: [subject] + [attributes] + [scene] + [style].

For hand-written captions: four fields, each a phrase or comma-separated tags, joined into one caption, e.g.
``anime girl`` + ``long silver hair, red eyes, black leather jacket`` + ``rainy neon-lit street, night`` +
``cyberpunk style, sharp focus``.
"""
from __future__ import annotations

from typing import Sequence

from studio.caption.markup import join_tags

FORMULA_FIELDS: tuple[tuple[str, str, str], ...] = (
    ("subject", "Subject: who or what the picture shows", "anime girl"),
    ("attributes", "Attributes: what makes it recognisable (hair, eyes, clothes, colours)",
     "long silver hair, red eyes, black leather jacket"),
    ("scene", "Scene: where and when", "rainy neon-lit street, night"),
    ("style", "Style: the medium and look, the same words in every caption", "cyberpunk style, sharp focus"),
)
"""(name, label, example) for each part, in caption order -- what a form shows."""


def build_caption(subject: str | Sequence[str] = "", attributes: str | Sequence[str] = "",
                  scene: str | Sequence[str] = "", style: str | Sequence[str] = "") -> str:
    """Join the four parts with ``", "``; each part is a string or a list of tags; empty parts are skipped."""
    parts = []
    for part in (subject, attributes, scene, style):
        if isinstance(part, (list, tuple)):
            part = join_tags(*(str(tag) for tag in part))
        parts.append(" ".join(str(part or "").split()))
    return join_tags(*parts)
