"""The task graph and the timeline as SVG markup, written in Python: a run of 500 tasks has
500 boxes, ~1,000 edges and ~600 bars, which a template loop renders several times slower.
Every text value is escaped once here; the result is safe markup for the templates."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from markupsafe import Markup, escape

from arco_api.console.dag_layout import NODE_HEIGHT, NODE_WIDTH, DagLayout
from arco_api.console.run_view import GANTT_WIDTH, AttemptBar

LABEL_WIDTH = 260
BAR_ROW = 18


def state_class(state: str) -> str:
    return escape("state-" + state.lower()) if state else "asset"


def dag_svg(
    layout: DagLayout, label: str, states: Mapping[str, str] | None = None, link: str = ""
) -> Markup:
    """The graph; with ``link``, each box links to ``link`` + its (quoted) key."""
    name = escape(label)
    parts = [
        f'<svg class="dag" width="{layout.width}" height="{layout.height}" '
        f'viewBox="0 0 {layout.width} {layout.height}" role="img" '
        f'aria-label="{name}: {len(layout.nodes)} nodes in {layout.layers} layers">'
        '<defs><marker id="arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" class="arrowhead"/>'
        "</marker></defs>"
    ]
    parts.extend(
        f'<path class="edge" d="{edge.path}" marker-end="url(#arrow)"/>' for edge in layout.edges
    )
    for node in layout.nodes:
        raw_state = (states or {}).get(node.key, "")
        state = escape(raw_state)
        key = escape(node.key)
        title = f"{key}: {state}" if state else key
        box = (
            f'<g class="node {state_class(raw_state)}" transform="translate({node.x},{node.y})">'
            f"<title>{title}</title>"
            f'<rect width="{NODE_WIDTH}" height="{NODE_HEIGHT}" rx="5"/>'
            f'<text x="8" y="16" class="node-key">{escape(node.label)}</text>'
            + (f'<text x="8" y="32" class="node-state">{state}</text>' if state else "")
            + "</g>"
        )
        if link:
            box = f'<a href="{escape(link + quote(node.key, safe=""))}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above is escaped or numeric


def _clock(bar_time: object) -> str:
    return bar_time.strftime("%H:%M:%S.%f")[:-3] if hasattr(bar_time, "strftime") else "-"


def gantt_svg(bars: tuple[AttemptBar, ...], seconds: float) -> Markup:
    """One row per attempt: the queued part, then the running part coloured by its outcome."""
    height = len(bars) * BAR_ROW + 24
    width = GANTT_WIDTH + LABEL_WIDTH
    parts = [
        f'<svg class="gantt" width="{width}" height="{height}" role="img" '
        f'aria-label="{len(bars)} attempts over {seconds:.1f} seconds">'
        f'<text x="{LABEL_WIDTH}" y="12" class="axis">0 s</text>'
        f'<text x="{width - 5}" y="12" class="axis" text-anchor="end">{seconds:.1f} s</text>'
    ]
    for index, bar in enumerate(bars):
        y = index * BAR_ROW + 20
        queued = max(bar.running_x - bar.queued_x, 0)
        running = max(bar.end_x - bar.running_x, 1)
        times = (
            f"queued {_clock(bar.queued_at)}, started {_clock(bar.started_at)}, "
            f"ended {_clock(bar.ended_at)}"
        )
        parts.append(
            f'<g class="bar {state_class(bar.outcome)}">'
            f"<title>{escape(bar.summary)}; {times}</title>"
            f'<text x="0" y="{y + 11}" class="bar-label">'
            f"{escape(bar.task_key[-28:])} #{bar.attempt}</text>"
            f'<rect class="queued" x="{LABEL_WIDTH + bar.queued_x}" y="{y}" '
            f'width="{queued}" height="14"/>'
            f'<rect class="running" x="{LABEL_WIDTH + bar.running_x}" y="{y}" '
            f'width="{running}" height="14"/></g>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every value above is escaped or numeric
