"""Reading YAML config text into values that remember their line, with clear errors and a size budget.

The text is composed into a node graph with ``yaml.compose`` (safe loader), which keeps line numbers and does not
expand aliases: an alias is just a second reference to the same node, so composing a "billion laughs" document is
cheap. Values are then built by walking that graph with a budget on the number of nodes visited, aliases
counted every time they are used, so an alias bomb is refused in milliseconds instead of filling memory.
PyYAML composes nested collections by recursion; :class:`_Loader` stops at ``MAX_DEPTH`` levels, long before
Python's recursion limit (about 330 levels of ``[[[…]]]``), so deep nesting is a ConfigError, not a traceback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from studio.util.reading import size_text

from .errors import ConfigError
from .validate import show

MAX_BYTES = 1 << 20
MAX_NODES = 10_000
MAX_DEPTH = 50
MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class Pair:
    """One ``key: value`` of a mapping, with the 1-based line of its key."""

    key: Any
    line: int
    node: Node


def check_tabs(text: str, source: str) -> None:
    """Refuse tab indentation with the lines that have it (PyYAML's own message is cryptic)."""
    lines = [number for number, line in enumerate(text.splitlines(), 1)
             if line.strip() and "\t" in line[: len(line) - len(line.lstrip(" \t"))]]
    if lines:
        where = f"line {lines[0]}" if len(lines) == 1 else f"lines {', '.join(map(str, lines[:5]))}"
        raise ConfigError([f"{source} {where}: indented with a tab; YAML allows only spaces for indentation — "
                           f"replace the tabs with spaces"])


class _Loader(yaml.SafeLoader):
    """The safe loader, refusing collections nested more than ``MAX_DEPTH`` deep while it composes them."""

    source = "the YAML"
    depth = 0

    def compose_node(self, parent, index):
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH and self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent):
                line = self.peek_event().start_mark.line + 1
                raise ConfigError([f"{self.source} line {line}: the YAML is nested deeper than {MAX_DEPTH} levels; "
                                   "a config needs at most 4 (a section, a setting, a list and its items) — "
                                   "check that this is the right file"])
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def compose(text: str, source: str) -> Node | None:
    """The document's root node (``None`` for an empty document), or ``ConfigError`` naming file and line."""
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise ConfigError([f"{source} is larger than {size_text(MAX_BYTES)}; a config file is a few kB — "
                           f"check that this is the right file"])
    check_tabs(text, source)
    loader = _Loader(text)
    loader.source = source
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{source} line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = error.problem or "invalid YAML"
        context = ""
        if "expected a single document" in str(error):
            problem = "the file holds more than one YAML document ('---'); keep one"
        elif error.context and error.context_mark and mark and error.context_mark.line != mark.line:
            context = f" ({error.context} that starts on line {error.context_mark.line + 1})"
        elif error.context and error.context not in problem:
            context = f" ({error.context})"
        raise ConfigError([f"{where}: YAML syntax error: {problem}{context}. Check the indentation, the quotes "
                           f"and that each setting is written 'key: value'"]) from None
    except yaml.YAMLError as error:
        raise ConfigError([f"{source}: YAML error: {error}"]) from None
    finally:
        loader.dispose()


class NodeReader:
    """Turns nodes into plain Python values, spending a shared budget of visited nodes."""

    def __init__(self, source: str, max_nodes: int = MAX_NODES) -> None:
        self.source = source
        self.left = max_nodes
        self.max_nodes = max_nodes
        self._scalars = SafeConstructor()
        self._line: int | None = None

    def where(self, node: Node) -> str:
        return f"{self.source} line {node.start_mark.line + 1}"

    def read(self, node: Node, depth: int = 1, line: int | None = None) -> Any:
        """``value(node)`` for the setting on ``line``: budget errors name that line rather than a line deep
        inside an anchor defined elsewhere (an alias and its anchor are the same node)."""
        self._line = line
        try:
            return self.value(node, depth)
        finally:
            self._line = None

    def _spend(self, node: Node, depth: int) -> None:
        self.left -= 1
        where = f"{self.source} line {self._line}" if self._line else self.where(node)
        if self.left < 0:
            raise ConfigError([f"{where}: the YAML expands to more than {self.max_nodes} values "
                               f"(aliases '*name' repeating anchors '&name'); a config never needs that — "
                               f"write the values out without anchors and aliases"])
        if depth > MAX_DEPTH:
            raise ConfigError([f"{where}: values are nested more than {MAX_DEPTH} levels deep "
                               f"(or an alias refers to itself); a setting is a single value or a list"])

    def value(self, node: Node, depth: int = 0) -> Any:
        """The plain value of ``node``: str/int/float/bool/None/date, list or dict."""
        self._spend(node, depth)
        if isinstance(node, SequenceNode):
            return [self.value(item, depth + 1) for item in node.value]
        if isinstance(node, MappingNode):
            return {pair.key: self.value(pair.node, depth + 1) for pair in self.pairs(node, depth)}
        try:
            return self._scalars.construct_object(node)
        except yaml.YAMLError:
            raise ConfigError([f"{self.where(node)}: the YAML tag {node.tag!r} is not allowed in a config; "
                               f"remove it"]) from None

    def pairs(self, node: MappingNode, depth: int = 0) -> list[Pair]:
        """The ``key: value`` pairs of a mapping node, keys as text (other keys are refused)."""
        result = []
        for key_node, value_node in node.value:
            self._spend(key_node, depth + 1)
            if key_node.tag == MERGE_TAG:
                raise ConfigError([f"{self.where(key_node)}: merge keys ('<<') are not supported in a config; "
                                   f"write the settings out"])
            key = self.value(key_node, depth + 1) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                shown = show(key) if isinstance(key_node, ScalarNode) else "a list or mapping"
                raise ConfigError([f"{self.where(key_node)}: {shown} is not a setting name; keys are names such "
                                   f"as lora_rank (quote a key such as 'yes' or 'on' that YAML reads as true/false)"])
            result.append(Pair(key, key_node.start_mark.line + 1, value_node))
        return result
