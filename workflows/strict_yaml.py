"""A PyYAML loader that reads manifests as strictly as Kubernetes reads them.

PyYAML's ``SafeLoader`` builds no arbitrary objects, but it keeps the last of two equal
keys (a second ``schedule`` silently wins), composes nodes recursively (a document
20,000 levels deep ends in ``RecursionError``), and lets aliases share nodes, so that a
"billion laughs" of nine levels of ten aliases is a few hundred bytes that expand to
10^9 values once anything serializes them. ``StrictLoader`` refuses all three while
composing, before anything is built: a hostile file costs at most ``MAX_NODES`` nodes
(all its documents together) and ``MAX_DEPTH`` levels of recursion, and the error says
on which line.

Counting aliases expanded costs nothing extra: a running count of the nodes composed so
far, where an alias adds what its anchor stood for (remembered per anchor, as the count
it added), equals the expanded count of everything read so far.
"""

from __future__ import annotations

from collections.abc import Hashable

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode

from workflows.bounds import MAX_DEPTH, MAX_NODES

#: Longest key quoted back in a duplicate-key error, in characters.
MAX_SHOWN_KEY_CHARS = 80
MERGE_TAG = "tag:yaml.org,2002:merge"


class Refused(yaml.MarkedYAMLError):
    """A well-formed document StashQ will not read; ``problem`` says why."""

    def __init__(self, problem: str, mark: object) -> None:
        super().__init__(problem=problem, problem_mark=mark if isinstance(mark, yaml.Mark)
                         else None)
        self.problem: str = problem


class StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses duplicate keys, excessive aliasing and deep nesting."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0  #: mappings and lists open around the node being composed
        self._nodes = 0  #: nodes composed in this file, aliases expanded
        self._anchored: dict[str, int] = {}  #: nodes each finished anchor stands for

    def compose_document(self) -> Node | None:
        self._anchored = {}  # anchors are per document; the node count is not
        return super().compose_document()

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        event: yaml.NodeEvent = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, yaml.AliasEvent):
            return self._compose_alias(event, parent, index)
        before = self._nodes
        if self._count(1):
            raise Refused(f"more than {MAX_NODES:,} nodes in one file (split it)",
                          event.start_mark)
        nested = isinstance(event, yaml.CollectionStartEvent)
        self._depth += nested
        if self._depth > MAX_DEPTH:
            raise Refused(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= nested
        if event.anchor is not None:
            self._anchored[event.anchor] = self._nodes - before
        if isinstance(node, MappingNode):
            self._refuse_duplicate_keys(node)
        return node

    def _compose_alias(self, event: yaml.AliasEvent, parent: Node | None,
                       index: int) -> Node | None:
        node = super().compose_node(parent, index)  # PyYAML refuses undefined aliases
        if event.anchor not in self._anchored:
            raise Refused(f'alias "*{event.anchor}" refers to a node that contains it',
                          event.start_mark)
        if self._count(self._anchored[event.anchor]):
            raise Refused(f'excessive aliasing: "*{event.anchor}" takes the file past '
                          f"{MAX_NODES:,} nodes, aliases expanded", event.start_mark)
        return node

    def _count(self, nodes: int) -> bool:
        """Count ``nodes`` more; True if that passes ``MAX_NODES``."""
        self._nodes += nodes
        return self._nodes > MAX_NODES

    def _refuse_duplicate_keys(self, node: MappingNode) -> None:
        """Keys compared as the values they become (``a`` and ``"a"`` are one key);
        a merge (``<<: *base``) may override what it merges, as YAML allows."""
        first_line: dict[Hashable, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode) or key_node.tag == MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if key in first_line:
                shown = str(key)[:MAX_SHOWN_KEY_CHARS]
                raise Refused(f'duplicate key "{shown}" (first on line {first_line[key]})',
                              key_node.start_mark)
            first_line[key] = line
