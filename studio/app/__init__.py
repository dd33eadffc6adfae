"""The application layer between the tabs and the engine: the ``Studio`` facade (``studio/app/studio.py``) and the
parts it owns (``configs``, ``datasets``, ``captions``, ``training``, ``evaluation``, ``runs``), the background
jobs and the multi-process runner (``processes``), the errors the user sees, who may touch which files
(``access``, ``confine``) and how remote users bring data in (``uploads``). No gradio here.

``Studio`` is imported on first use, so that importing one module of this package loads no other part.
"""
from __future__ import annotations

__all__ = ["Studio"]


def __getattr__(name: str):
    if name == "Studio":
        from studio.app.studio import Studio

        return Studio
    raise AttributeError(f"module 'studio.app' has no attribute {name!r}")
