"""A layered drawing of a task or asset graph, computed on the server.

Columns are layers (the longest path from a root, so every edge points right); the order
inside a column comes from a few barycenter sweeps, which untangles most crossings of the
graphs this stack runs (a few hundred nodes) in milliseconds. The template draws the result
as SVG: boxes at ``(x, y)`` and cubic curves between them.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

NODE_WIDTH = 200
NODE_HEIGHT = 40
COLUMN_GAP = 70
ROW_GAP = 14
MARGIN = 10
SWEEPS = 4
LABEL_CHARS = 26


@dataclass(frozen=True)
class PlacedNode:
    key: str
    x: int
    y: int
    layer: int

    @property
    def label(self) -> str:
        """The key, shortened to fit the box (the full key is the node's tooltip)."""
        if len(self.key) <= LABEL_CHARS:
            return self.key
        return "…" + self.key[-(LABEL_CHARS - 1) :]


@dataclass(frozen=True)
class PlacedEdge:
    upstream: str
    downstream: str
    path: str


@dataclass(frozen=True)
class DagLayout:
    width: int
    height: int
    nodes: tuple[PlacedNode, ...]
    edges: tuple[PlacedEdge, ...]
    layers: int


def _layers(keys: Sequence[str], edges: Sequence[tuple[str, str]]) -> dict[str, int]:
    """Longest path from a root (Kahn's order). Nodes on a cycle, which a valid plan never
    has, keep the layer they reached so the drawing still shows them."""
    downstream: dict[str, list[str]] = defaultdict(list)
    indegree = dict.fromkeys(keys, 0)
    for upstream, down in edges:
        downstream[upstream].append(down)
        indegree[down] += 1
    layer = dict.fromkeys(keys, 0)
    ready = deque(key for key in keys if indegree[key] == 0)
    while ready:
        key = ready.popleft()
        for down in downstream[key]:
            layer[down] = max(layer[down], layer[key] + 1)
            indegree[down] -= 1
            if indegree[down] == 0:
                ready.append(down)
    return layer


def _ordered_columns(
    keys: Sequence[str], edges: Sequence[tuple[str, str]], layer: dict[str, int]
) -> list[list[str]]:
    columns: list[list[str]] = [[] for _ in range(max(layer.values(), default=-1) + 1)]
    for key in sorted(keys):
        columns[layer[key]].append(key)
    upstreams: dict[str, list[str]] = defaultdict(list)
    downstreams: dict[str, list[str]] = defaultdict(list)
    for upstream, down in edges:
        upstreams[down].append(upstream)
        downstreams[upstream].append(down)

    position = {key: i for column in columns for i, key in enumerate(column)}

    def barycenter(key: str, own: int, neighbours: dict[str, list[str]]) -> float:
        linked = [position[other] for other in neighbours[key]]
        return sum(linked) / len(linked) if linked else float(own)

    def sweep(order: Iterable[int], neighbours: dict[str, list[str]]) -> None:
        for index in order:
            scored = [
                (barycenter(key, i, neighbours), i, key) for i, key in enumerate(columns[index])
            ]
            columns[index] = [key for _, _, key in sorted(scored)]
            position.update({key: i for i, key in enumerate(columns[index])})

    for _ in range(SWEEPS):
        sweep(range(1, len(columns)), upstreams)
        sweep(range(len(columns) - 2, -1, -1), downstreams)
    return columns


def layout(keys: Sequence[str], edges: Iterable[tuple[str, str]]) -> DagLayout:
    """Place ``keys`` and the ``upstream -> downstream`` edges between them; edges naming an
    unknown key are left out."""
    known = set(keys)
    kept = [(up, down) for up, down in edges if up in known and down in known and up != down]
    layer = _layers(keys, kept)
    columns = _ordered_columns(keys, kept, layer)
    placed: dict[str, PlacedNode] = {}
    for index, column in enumerate(columns):
        for row, key in enumerate(column):
            placed[key] = PlacedNode(
                key=key,
                x=MARGIN + index * (NODE_WIDTH + COLUMN_GAP),
                y=MARGIN + row * (NODE_HEIGHT + ROW_GAP),
                layer=index,
            )
    drawn = []
    for up, down in kept:
        start, end = placed[up], placed[down]
        x1, y1 = start.x + NODE_WIDTH, start.y + NODE_HEIGHT // 2
        x2, y2 = end.x, end.y + NODE_HEIGHT // 2
        bend = max(COLUMN_GAP // 2, (x2 - x1) // 3)
        path = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
        drawn.append(PlacedEdge(up, down, path))
    tallest = max((len(column) for column in columns), default=0)
    return DagLayout(
        width=2 * MARGIN + max(len(columns), 1) * (NODE_WIDTH + COLUMN_GAP) - COLUMN_GAP,
        height=2 * MARGIN + max(tallest, 1) * (NODE_HEIGHT + ROW_GAP) - ROW_GAP,
        nodes=tuple(placed[key] for column in columns for key in column),
        edges=tuple(drawn),
        layers=len(columns),
    )
