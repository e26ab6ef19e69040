"""YAML as an experiment file is read: safe tags only, no key given twice, the line of every field.

``parse`` composes the node tree once, walks it (each node once, so an alias bomb costs
what its text costs) to record each field's line and find repeated keys, then builds
the data. Field paths are spelled as the loader reports them: ``model.epochs``,
``profiles.pools[0].name``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

MERGE_TAG = "tag:yaml.org,2002:merge"


@dataclass
class Parsed:
    data: Any
    lines: dict[str, int] = field(default_factory=dict)  # field path -> 1-based line of its key (or item)
    repeated: dict[str, list[int]] = field(default_factory=dict)  # key path -> the lines it is given on


def _join(prefix: str, key: Any) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


def _key(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """The key as the mapping will hold it (so ``1`` and ``true`` collide, as in the dict); else the node."""
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_object(node, deep=True)
    return node  # a complex key: constructing the mapping refuses it


def _walk(loader: yaml.SafeLoader, root: yaml.Node, parsed: Parsed) -> None:
    seen: set[int] = set()
    stack: list[tuple[yaml.Node, str]] = [(root, "")]
    while stack:
        node, prefix = stack.pop()
        if id(node) in seen or isinstance(node, yaml.ScalarNode):
            continue  # an alias of a node already walked: its fields keep their first path
        seen.add(id(node))
        children: list[tuple[yaml.Node, str]] = []
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                parsed.lines.setdefault(f"{prefix}[{i}]", item.start_mark.line + 1)
                children.append((item, f"{prefix}[{i}]"))
            stack.extend(reversed(children))  # walked in the file's order: a field's first path is its own
            continue
        given: dict[Any, list[int]] = {}
        for key_node, value_node in node.value:
            if key_node.tag == MERGE_TAG:  # ``<<: *base`` or ``<<: [*a, *b]``: their keys may be overridden here
                merged = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                children.extend((m, prefix) for m in merged)
                continue
            key = _key(loader, key_node)
            if isinstance(key, yaml.Node):
                continue
            try:
                lines = given.setdefault(key, [])
            except TypeError:  # unhashable: constructing the mapping refuses it
                continue
            lines.append(key_node.start_mark.line + 1)
            if len(lines) == 1:
                parsed.lines.setdefault(_join(prefix, key), lines[0])
                children.append((value_node, _join(prefix, key)))
        stack.extend(reversed(children))
        for key, lines in given.items():
            if len(lines) > 1:
                parsed.repeated[_join(prefix, key)] = lines


def parse(text: str) -> Parsed:
    """Compose, walk and construct ``text``; raises ``yaml.YAMLError`` (or RecursionError when nested too deep)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return Parsed(None)
        parsed = Parsed(None)
        _walk(loader, node, parsed)
        if parsed.repeated:
            return parsed
        parsed.data = loader.construct_document(node)
        return parsed
    finally:
        loader.dispose()


def line_of(path: str, lines: dict[str, int]) -> int | None:
    """The line of ``path``, else of its nearest enclosing field that the file spells out."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None
