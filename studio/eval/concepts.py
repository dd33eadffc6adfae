"""Concept checkers: programs that read a picture and say whether it shows what its prompt names.

A grid's concept rate is the share of its pictures a checker reads as what their prompts name. The engine
knows no concept itself: a world whose pictures can be read (shapes, faces, logos) supplies a
``ConceptChecker`` and registers it by name, either as an object (``register_checker``) or as an import path
that is only imported when a grid first asks for a checker, so that ``import studio.eval`` stays cheap.

``GridSpec.checker`` picks one: "off" none, "on" the first registered, "auto" the first registered checker
whose ``applies`` accepts the grid's base model and weight-0 pictures.
"""
from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image


class ConceptChecker(ABC):
    """Reads pictures of one kind and tells, per prompt, whether a reading shows what the prompt names.

    ``name`` identifies the checker in the registry; ``help`` is the one-line meaning of its concept rate, shown
    with the other metrics' help.
    """

    name: str = ""
    help: str = ""

    @abstractmethod
    def applies(self, base_model: str, base_pictures: list[Image.Image]) -> bool:
        """Whether this checker can read the pictures of ``base_model`` ("" = the embedded model), judged by the
        model itself or by its weight-0 ``base_pictures`` (the "auto" choice)."""

    @abstractmethod
    def read(self, image: Image.Image) -> Any:
        """What the checker sees in ``image``; never raises on odd content."""

    @abstractmethod
    def shows(self, prompt: str, reading: Any) -> bool | None:
        """Whether ``reading`` shows what ``prompt`` names; None when the prompt names no concept it knows."""

    @abstractmethod
    def fields(self, reading: Any) -> dict:
        """The parts of ``reading`` kept per cell in ``grid.json`` (JSON-safe)."""


# Checkers shipped with the studio, as "module:attribute" paths imported on first use.
BUILT_IN: dict[str, str] = {"toy-world": "studio.toyworld.concepts:TOY_WORLD_CHECKER"}
_registry: dict[str, ConceptChecker | str] = dict(BUILT_IN)


def register_checker(name: str, checker: ConceptChecker | str) -> None:
    """Add (or replace) the checker called ``name``: an object, or a "module:attribute" path to import later."""
    _registry[name] = checker


def checker_names() -> list[str]:
    """Registered checkers in the order "auto" tries them."""
    return list(_registry)


def get_checker(name: str) -> ConceptChecker:
    """The checker registered as ``name``, imported on first use."""
    entry = _registry[name]
    if isinstance(entry, str):
        module, _, attribute = entry.partition(":")
        entry = getattr(importlib.import_module(module), attribute)
        _registry[name] = entry
    return entry


def default_checker() -> ConceptChecker | None:
    """The checker "on" uses: the first registered one (None when none is)."""
    names = checker_names()
    return get_checker(names[0]) if names else None


def pick_checker(choice: str, base_model: str, base_pictures: list[Image.Image]) -> ConceptChecker | None:
    """The checker that reads a grid's cells for ``choice`` ("auto", "on" or "off"); None for no checker."""
    if choice == "off":
        return None
    if choice == "on":
        return default_checker()
    for name in checker_names():
        checker = get_checker(name)
        if checker.applies(base_model, base_pictures):
            return checker
    return None
