"""Small inline SVG plots for the quality pages: drawn on the server, no script, no network.

Every function returns markup safe to place in a template; text is escaped here.
"""

from collections.abc import Sequence

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

ACCENT = "#5b4bdb"
MUTED = "#9ca3af"
LINE = "#e5e7eb"
FONT = 'font-family="system-ui, sans-serif" font-size="11"'


def _svg(width: int, height: int, label: str, body: list[str]) -> SafeString:
    return mark_safe(
        f'<svg class="plot" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
        f"<title>{escape(label)}</title>{''.join(body)}</svg>"
    )


def _num(value: float) -> str:
    return f"{value:.4g}"


def bar_chart(
    labels: Sequence[str], counts: Sequence[int], *, title: str, width: int = 360
) -> SafeString:
    """Horizontal bars: one per answer, with its count and share."""
    total = sum(counts) or 1
    peak = max(counts, default=0) or 1
    row, left, right = 20, 110, 80
    height = row * len(labels) + 8
    body = []
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        y = 4 + i * row
        w = (width - left - right) * count / peak
        body.append(
            f'<text x="{left - 6}" y="{y + 13}" text-anchor="end" {FONT}>{escape(label)}</text>'
            f'<rect x="{left}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{ACCENT}">'
            f"<title>{escape(label)}: {count}</title></rect>"
            f'<text x="{left + w + 4:.1f}" y="{y + 13}" {FONT}>{count} '
            f"({100 * count / total:.0f}%)</text>"
        )
    return _svg(width, height, title, body)


def histogram(
    bins: Sequence[int],
    *,
    title: str,
    width: int = 360,
    height: int = 140,
    low: float = 0.0,
    high: float = 1.0,
) -> SafeString:
    """Vertical bars over [low, high] in equal bins, with the axis labelled at both ends."""
    peak = max(bins, default=0) or 1
    pad_x, pad_top, pad_bottom = 28, 8, 22
    plot_w, plot_h = width - 2 * pad_x, height - pad_top - pad_bottom
    step = plot_w / max(len(bins), 1)
    body = [
        f'<line x1="{pad_x}" y1="{pad_top + plot_h}" x2="{pad_x + plot_w}" '
        f'y2="{pad_top + plot_h}" stroke="{MUTED}"/>'
    ]
    for i, count in enumerate(bins):
        h = plot_h * count / peak
        lo = low + (high - low) * i / len(bins)
        hi = low + (high - low) * (i + 1) / len(bins)
        body.append(
            f'<rect x="{pad_x + i * step + 1:.1f}" y="{pad_top + plot_h - h:.1f}" '
            f'width="{step - 2:.1f}" height="{h:.1f}" fill="{ACCENT}">'
            f"<title>{lo:.1f}–{hi:.1f}: {count} items</title></rect>"
        )
    body.append(
        f'<text x="{pad_x}" y="{height - 6}" {FONT}>{_num(low)}</text>'
        f'<text x="{pad_x + plot_w}" y="{height - 6}" text-anchor="end" {FONT}>'
        f"{_num(high)}</text>"
        f'<text x="{pad_x + plot_w / 2}" y="{height - 6}" text-anchor="middle" {FONT}>'
        f"confidence</text>"
        f'<text x="{pad_x - 4}" y="{pad_top + 9}" text-anchor="end" {FONT}>{peak}</text>'
    )
    return _svg(width, height, title, body)


def interval_chart(
    rows: Sequence[tuple[str, float, float, float]],
    *,
    title: str,
    width: int = 520,
    domain: tuple[float, float] | None = None,
    reference: float = 0.0,
) -> SafeString:
    """One line per model: the estimate as a dot and its 95% interval as a bar, on a shared
    axis with ``reference`` marked (zero for strengths, one half for win rates). The axis
    spans the rows and the reference, or ``domain`` where given (rates: 0 to 1)."""
    if not rows:
        return _svg(width, 20, title, [])
    row, left, right = 22, 170, 20
    if domain is None:
        lo = min(min(r[2] for r in rows), reference)
        hi = max(max(r[3] for r in rows), reference)
    else:
        lo, hi = domain
    span = (hi - lo) or 1.0
    plot_w = width - left - right

    def x(value: float) -> float:
        return left + plot_w * (value - lo) / span

    height = row * len(rows) + 26
    body = [
        f'<line x1="{x(reference):.1f}" y1="2" x2="{x(reference):.1f}" y2="{height - 22}" '
        f'stroke="{MUTED}" stroke-dasharray="3 3"/>'
    ]
    for i, (name, value, low, high) in enumerate(rows):
        y = 4 + i * row + row / 2
        body.append(
            f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" {FONT}>{escape(name)}</text>'
            f'<line x1="{x(low):.1f}" y1="{y}" x2="{x(high):.1f}" y2="{y}" stroke="{ACCENT}" '
            f'stroke-width="3" stroke-linecap="round"><title>{escape(name)}: 95% interval '
            f"{_num(low)} to {_num(high)}</title></line>"
            f'<circle cx="{x(value):.1f}" cy="{y}" r="4" fill="#1d1f24">'
            f"<title>{escape(name)}: {_num(value)}</title></circle>"
        )
    axis_y = height - 8
    body.append(f'<text x="{left}" y="{axis_y}" {FONT}>{_num(lo)}</text>')
    body.append(
        f'<text x="{left + plot_w}" y="{axis_y}" text-anchor="end" {FONT}>{_num(hi)}</text>'
    )
    if lo < reference < hi:
        body.append(
            f'<text x="{x(reference):.1f}" y="{axis_y}" text-anchor="middle" {FONT}>'
            f"{_num(reference)}</text>"
        )
    return _svg(width, height, title, body)


def win_rate_matrix(
    names: Sequence[str], rates: dict[tuple[int, int], tuple[float, int]], *, title: str
) -> SafeString:
    """Row model's win rate against the column model (ties count half), shaded from red (0)
    through white (0.5) to the accent (1); empty where the two never met."""
    n = len(names)
    cell, left, top = 34, 150, 110
    # Column names are written at an angle and reach past the last column.
    width, height = left + cell * n + 110, top + cell * n + 4
    body = []
    for j, name in enumerate(names):
        cx = left + j * cell + cell / 2
        body.append(
            f'<text transform="translate({cx:.1f},{top - 6}) rotate(-50)" {FONT}>'
            f"{escape(name)}</text>"
        )
    for i, name in enumerate(names):
        y = top + i * cell
        body.append(
            f'<text x="{left - 6}" y="{y + cell / 2 + 4:.1f}" text-anchor="end" {FONT}>'
            f"{escape(name)}</text>"
        )
        for j in range(n):
            x = left + j * cell
            if (i, j) not in rates:
                body.append(
                    f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                    f'fill="#f9fafb" stroke="{LINE}"/>'
                )
                continue
            rate, total = rates[(i, j)]
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell - 1}" height="{cell - 1}" '
                f'fill="{_shade(rate)}"><title>{escape(name)} vs {escape(names[j])}: '
                f"{rate:.0%} of {total}</title></rect>"
                f'<text x="{x + cell / 2:.1f}" y="{y + cell / 2 + 4:.1f}" text-anchor="middle" '
                f"{FONT}>{100 * rate:.0f}</text>"
            )
    return _svg(width, height, title, body)


def _shade(rate: float) -> str:
    """White at 0.5, red toward 0, the accent colour toward 1."""
    rate = min(max(rate, 0.0), 1.0)
    if rate >= 0.5:
        t = (rate - 0.5) * 2
        target = (0x5B, 0x4B, 0xDB)
    else:
        t = (0.5 - rate) * 2
        target = (0xB9, 0x1C, 0x1C)
    r, g, b = (round(255 + (c - 255) * t * 0.8) for c in target)
    return f"#{r:02x}{g:02x}{b:02x}"
