"""A histogram as inline SVG, in the style of :mod:`driftlab.report.svg` (no scripts, labels escaped)."""

from __future__ import annotations

from html import escape
from typing import Sequence

from driftlab.report.svg import PALETTE, _fmt, _nice_max


def _t(x: float, y: float, text: str, anchor: str = "start", extra: str = "", size: int = 12) -> str:
    # svg._t always writes font-size 12, so a smaller size there duplicates the attribute (invalid XML).
    return (f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-family="system-ui, sans-serif" '
            f'font-size="{size}" {extra}>{escape(str(text))}</text>')


def histogram(edges: Sequence[float], counts: Sequence[int], *, title: str, axis: str, percent: bool = False,
              width: int = 310, height: int = 200) -> str:
    """Vertical bars, one per bin ``[edges[i], edges[i+1])``; the y axis counts evaluation rows."""
    left, right, top, bottom = 46, 10, 26, 34
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
           f'class="plot small" aria-label="{escape(title)}">', _t(6, 16, title, extra='font-weight="600"')]
    if not counts or len(edges) != len(counts) + 1:
        out.append(_t(width / 2, height / 2, "no rows", "middle", 'fill="#888"'))
        return "".join(out) + "</svg>"
    ymax = _nice_max(float(max(counts)))
    span_x, span_y = width - left - right, height - top - bottom
    bw = span_x / len(counts)
    out.append(f'<rect x="{left}" y="{top}" width="{span_x}" height="{span_y}" fill="none" stroke="#ccc"/>')
    for v in (0.0, ymax / 2, ymax):
        y = top + span_y * (1 - v / ymax)
        out.append(_t(left - 4, y + 4, _fmt(v), "end", size=10))
    for i, c in enumerate(counts):
        h = span_y * c / ymax
        label = (f"{edges[i]:.0%}–{edges[i + 1]:.0%}" if percent else f"{_fmt(edges[i])}–{_fmt(edges[i + 1])}")
        out.append(f'<rect x="{left + i * bw + 1:.1f}" y="{top + span_y - h:.1f}" width="{max(bw - 2, 1):.1f}" '
                   f'height="{h:.1f}" fill="{PALETTE[0]}" fill-opacity="0.75">'
                   f'<title>{escape(label)}: {c} rows</title></rect>')
    lo, hi = edges[0], edges[-1]
    out.append(_t(left, height - 20, f"{lo:.0%}" if percent else _fmt(lo), "middle", size=10))
    out.append(_t(width - right, height - 20, f"{hi:.0%}" if percent else _fmt(hi), "middle", size=10))
    out.append(_t((left + width) / 2, height - 4, axis, "middle", 'fill="#555"', size=10))
    return "".join(out) + "</svg>"
