"""YAML read safely: no objects, no key given twice, no alias bomb (config and sweep files alike)."""

from __future__ import annotations

from typing import Any

import yaml


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last, silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (lines {seen[key] + 1} and {key_node.start_mark.line + 1})",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


MAX_YAML_NODES = 100_000
"""The most nodes a config or sweep file may hold once its aliases are expanded (a real one has a few hundred)."""
MAX_YAML_DEPTH = 64
"""The deepest nesting a config or sweep file may have (a real one has under ten levels)."""


def read_yaml(text: str) -> Any:
    """Parse YAML safely (no objects), refusing duplicated keys; yaml.YAMLError on bad input. Aliases are allowed,
    but a file that expands through them past :data:`MAX_YAML_NODES` nodes (a "billion laughs" file of a few lines),
    or nests deeper than :data:`MAX_YAML_DEPTH`, is refused before anything walks it."""
    loader = _UniqueKeyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_size(root: yaml.Node) -> None:
    """The expanded node count and depth of a composed document, each node counted once per place it appears;
    computed over the distinct nodes (an alias is the same node object), so a bomb is measured, not expanded."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, depth)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:  # post-order over the distinct nodes: a node is sized once all its children are
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        children = _children(node)
        if not children_done:
            stack.append((node, True))
            stack.extend((child, False) for child in children if id(child) not in sizes)
            continue
        below = [sizes[id(child)] for child in children]
        count = 1 + sum(size for size, _ in below)
        depth = 1 + max((d for _, d in below), default=0)
        if depth > MAX_YAML_DEPTH:
            raise yaml.YAMLError(f"nested {depth} levels deep, more than the {MAX_YAML_DEPTH} a config or sweep allows")
        if count > MAX_YAML_NODES:
            raise yaml.YAMLError(
                f"its aliases expand it past {MAX_YAML_NODES:,} values (a config or sweep file has a few hundred): "
                "refused unread"
            )
        sizes[id(node)] = (count, depth)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return list(node.value) if isinstance(node, yaml.SequenceNode) else []
