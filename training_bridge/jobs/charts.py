"""Inline SVG pictures for the pages: loss curves per role and a model version's lineage.

Drawn on the server from stored rows (no script, no chart library); every text is escaped.
"""

from __future__ import annotations

import math

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

ROLE_COLOURS = {
    "train": "#5b4bdb",
    "content": "#5b4bdb",
    "style": "#d97706",
    "first": "#0891b2",
    "second": "#d97706",
    "teacher_selection": "#15803d",
}
FALLBACK_COLOURS = ["#be185d", "#4d7c0f", "#0f766e", "#7c2d12"]


def _colour(role: str, index: int) -> str:
    return ROLE_COLOURS.get(role, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])


def _tick(value: float) -> str:
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def loss_curve_svg(
    curves: dict[str, list[tuple[int, float]]],
    *,
    total_steps: int,
    width: int = 720,
    height: int = 260,
) -> SafeString:
    """A line per role of (step, loss) points over [0, total_steps], with axes and a legend."""
    left, right, top, bottom = 56, 16, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [loss for points in curves.values() for _, loss in points if math.isfinite(loss)]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="loss-chart" '
        f'viewBox="0 0 {width} {height}" width="100%" role="img" '
        f'aria-label="Training loss per role by step">',
        f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fff" '
        f'stroke="#e5e7eb"/>',
    ]
    if not values:
        parts.append(
            f'<text x="{width / 2:.0f}" y="{height / 2:.0f}" text-anchor="middle" '
            f'fill="#6b7280">No losses reported yet.</text></svg>'
        )
        return mark_safe("".join(parts))
    low, high = min(values), max(values)
    if high - low < 1e-12:
        low, high = low - 0.5 * abs(low or 1), high + 0.5 * abs(high or 1)
    pad = (high - low) * 0.05
    low, high = low - pad, high + pad
    span_steps = max(1, total_steps)

    def x(step: float) -> float:
        return left + plot_w * step / span_steps

    def y(loss: float) -> float:
        return top + plot_h * (1 - (loss - low) / (high - low))

    for i in range(5):
        value = low + (high - low) * i / 4
        parts.append(
            f'<line x1="{left}" x2="{left + plot_w}" y1="{y(value):.1f}" y2="{y(value):.1f}" '
            f'stroke="#f1f1f4"/><text x="{left - 6}" y="{y(value) + 4:.1f}" text-anchor="end" '
            f'font-size="11" fill="#6b7280">{escape(_tick(value))}</text>'
        )
    for i in range(5):
        step = round(span_steps * i / 4)
        parts.append(
            f'<text x="{x(step):.1f}" y="{top + plot_h + 16}" text-anchor="middle" font-size="11" '
            f'fill="#6b7280">{step}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.0f}" y="{height - 2}" text-anchor="middle" font-size="11" '
        f'fill="#6b7280">step</text>'
    )
    legend_x = left
    for index, (role, points) in enumerate(sorted(curves.items())):
        colour = _colour(role, index)
        finite = [(s, v) for s, v in points if math.isfinite(v)]
        coords = " ".join(f"{x(s):.1f},{y(v):.1f}" for s, v in finite)
        if len(finite) == 1:
            s, v = finite[0]
            parts.append(
                f'<circle data-role="{escape(role)}" cx="{x(s):.1f}" cy="{y(v):.1f}" '
                f'r="3" fill="{colour}"/>'
            )
        elif finite:
            parts.append(
                f'<polyline data-role="{escape(role)}" data-points="{len(finite)}" fill="none" '
                f'stroke="{colour}" stroke-width="1.6" points="{coords}"/>'
            )
        last = f" {finite[-1][1]:.4g}" if finite else ""
        label = f"{role}{last}"
        parts.append(
            f'<rect x="{legend_x}" y="8" width="10" height="10" fill="{colour}"/>'
            f'<text x="{legend_x + 14}" y="17" font-size="12">{escape(label)}</text>'
        )
        legend_x += 24 + 7 * len(label)
    parts.append("</svg>")
    return mark_safe("".join(parts))


NODE_W, NODE_H, ROW = 230, 46, 96
LABEL_W = 170  # left of the chain: "job 12 · style_tailoring"
DATASET_W, DATASET_H = 250, 18


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lineage_svg(lineage, *, url_for=None) -> SafeString:
    """The parent chain top-down to the current version, its children in a row below.

    Each edge of the chain is labelled with the job that trained the lower version (its
    recipe), and the dataset versions that job trained on hang off the edge with their roles.
    ``lineage`` is a ``selectors.Lineage``; ``url_for(version)`` makes nodes links.
    """
    chain = [*lineage.ancestors, lineage.current]
    children = lineage.children
    chain_x = LABEL_W + NODE_W / 2
    width = int(LABEL_W + NODE_W + 40 + DATASET_W + 10)
    width = max(width, len(children) * (NODE_W + 20) + 20)
    rows = len(chain) + (1 if children else 0)
    height = rows * ROW + 10
    positions: dict[int, tuple[float, float]] = {}
    for row, node in enumerate(chain):
        positions[node.version.pk] = (chain_x, 10 + row * ROW)
    child_y = 10 + len(chain) * ROW
    for index, node in enumerate(children):
        positions[node.version.pk] = (20 + NODE_W / 2 + index * (NODE_W + 20), child_y)
    # An image's content is one picture to a screen reader: with links in it, it is a group
    # whose links the reader lists and the keyboard reaches (axe: nested-interactive).
    role = "img" if url_for is None else "group"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" viewBox="0 0 {width} {height}" '
        f'width="{width}" role="{role}" aria-label="Model version lineage">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'fill="#9ca3af"/></marker></defs>',
    ]
    edges = [(chain[i], chain[i + 1], True) for i in range(len(chain) - 1)]
    edges += [(lineage.current, child, False) for child in children]
    for parent, child, in_chain in edges:
        px, py = positions[parent.version.pk]
        cx, cy = positions[child.version.pk]
        parts.append(
            f'<line class="edge" x1="{px:.1f}" y1="{py + NODE_H:.1f}" x2="{cx:.1f}" '
            f'y2="{cy - 2:.1f}" stroke="#9ca3af" stroke-width="1.5" marker-end="url(#arrow)"/>'
        )
        if child.job is None:
            continue
        mid_y = (py + NODE_H + cy) / 2
        label = f"job {child.job.pk} · {child.job.recipe}"
        if in_chain:
            parts.append(
                f'<text x="{px - 8:.1f}" y="{mid_y + 4:.1f}" text-anchor="end" font-size="11" '
                f'fill="#6b7280">{escape(label)}</text>'
            )
            top = mid_y - len(child.datasets) * (DATASET_H + 4) / 2
            box_x = px + NODE_W / 2 + 40
            for k, link in enumerate(child.datasets):
                y = top + k * (DATASET_H + 4)
                text = _short(f"{link.role}: {link.dataset_version}", 38)
                parts.append(
                    f'<g class="dataset" data-dataset-version="{link.dataset_version_id}">'
                    f'<line x1="{px:.1f}" y1="{mid_y:.1f}" x2="{box_x:.1f}" '
                    f'y2="{y + DATASET_H / 2:.1f}" stroke="#c4b5fd" stroke-dasharray="3 3"/>'
                    f'<rect x="{box_x:.1f}" y="{y:.1f}" width="{DATASET_W}" height="{DATASET_H}" '
                    f'rx="9" fill="#f5f3ff" stroke="#c4b5fd"/>'
                    f'<text x="{box_x + 9:.1f}" y="{y + 13:.1f}" font-size="11">'
                    f"{escape(text)}</text>"
                    f"<title>{escape(link.manifest_sha256)}</title></g>"
                )
        else:
            parts.append(
                f'<text x="{(px + cx) / 2 + 8:.1f}" y="{mid_y + 4:.1f}" font-size="11" '
                f'fill="#6b7280">{escape(label)}</text>'
            )
    for node in [*chain, *children]:
        x, y = positions[node.version.pk]
        current = node.version.pk == lineage.current.version.pk
        fill, stroke = ("#ede9fe", "#5b4bdb") if current else ("#fff", "#d1d5db")
        box = (
            f'<g class="node" data-version="{node.version.pk}">'
            f"<title>{escape(node.version.name)}</title>"
            f'<rect x="{x - NODE_W / 2:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="8" '
            f'fill="{fill}" stroke="{stroke}"/>'
            f'<text x="{x:.1f}" y="{y + 19:.1f}" text-anchor="middle" font-size="13" '
            f'font-weight="600">{escape(_short(node.version.name, 30))}</text>'
            f'<text x="{x:.1f}" y="{y + 36:.1f}" text-anchor="middle" font-size="11" '
            f'fill="#6b7280">{escape(node.version.kind)} · {escape(node.version.role)}</text></g>'
        )
        if url_for is not None:
            box = f'<a href="{escape(url_for(node.version))}">{box}</a>'
        parts.append(box)
    parts.append("</svg>")
    return mark_safe("".join(parts))  # built from escaped parts only
