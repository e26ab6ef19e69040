"""Plots as inline SVG: no plotting library, no network, every label escaped.

Each function returns one ``<svg>`` element (a string) sized by its viewBox,
so the HTML report stays a single self-contained file that any browser
renders without scripts.
"""

from __future__ import annotations

import math
from html import escape
from typing import Sequence

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
WIDTH = 640
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def _t(x: float, y: float, text: str, anchor: str = "start", extra: str = "") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" {FONT} {extra}>{escape(str(text))}</text>'


def _nice_max(value: float) -> float:
    if value <= 0 or not math.isfinite(value):
        return 1.0
    exp = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * exp:
            return step * exp
    return 10 * exp


def _fmt(v: float) -> str:
    return f"{v:.3g}" if v != 0 else "0"


def hbars(rows: Sequence[tuple[str, float | None, Sequence[float] | None, str]], *, title: str,
          axis: str, lines: Sequence[tuple[float, str]] = (), percent: bool = False) -> str:
    """Horizontal bars with optional CI whiskers and vertical reference lines.

    Args:
        rows: ``(label, value or None, [lo, hi] or None, text when value is None)``.
        title: Title above the plot.
        axis: Label of the x axis.
        lines: ``(x, label)`` vertical reference lines (noise floor, budget, 1× seed noise).
        percent: Show values as percentages.
    """
    left, right, top, bar_h = 170, 30, 34, 22
    height = top + len(rows) * (bar_h + 8) + 40
    values = [v for _, v, _, _ in rows if v is not None] + [hi for *_, ci, _ in rows if ci for hi in ci[1:]]
    values += [x for x, _ in lines if x is not None and math.isfinite(x)]
    xmax = _nice_max(max(values, default=0.0))
    span = WIDTH - left - right

    def sx(v: float) -> float:
        return left + span * max(0.0, min(v, xmax)) / xmax

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" role="img" '
           f'class="plot" aria-label="{escape(title)}">', _t(8, 18, title, extra='font-weight="600"')]
    for i in range(5):
        x = left + span * i / 4
        out.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height - 34}" stroke="#ddd"/>')
        tick = xmax * i / 4
        out.append(_t(x, height - 20, f"{tick:.0%}" if percent else _fmt(tick), "middle"))
    out.append(_t(left + span / 2, height - 4, axis, "middle", 'fill="#555"'))
    for i, (label, value, ci, note) in enumerate(rows):
        y = top + i * (bar_h + 8)
        out.append(_t(left - 8, y + bar_h * 0.7, label, "end"))
        if value is None:
            out.append(_t(left + 6, y + bar_h * 0.7, note, extra='fill="#888" font-style="italic"'))
            continue
        w = max(sx(value) - left, 1.0 if value > 0 else 0.0)
        out.append(f'<rect x="{left}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{PALETTE[0]}" '
                   f'fill-opacity="0.75"><title>{escape(label)}: {escape(_fmt(value))}</title></rect>')
        if ci:
            cy = y + bar_h / 2
            out.append(f'<path d="M{sx(ci[0]):.1f},{cy} H{sx(ci[1]):.1f} M{sx(ci[0]):.1f},{cy - 6} V{cy + 6} '
                       f'M{sx(ci[1]):.1f},{cy - 6} V{cy + 6}" stroke="#222" stroke-width="1.5" fill="none"/>')
        text = f"{value:.1%}" if percent else _fmt(value)
        out.append(_t(min(sx(max(value, ci[1] if ci else value)) + 6, WIDTH - 4), y + bar_h * 0.7, text,
                      "start" if sx(value) < WIDTH - 60 else "end"))
    for j, (x, label) in enumerate(lines):
        if x is None or not math.isfinite(x):
            continue
        color = PALETTE[3 + j % 4]
        out.append(f'<line x1="{sx(x):.1f}" y1="{top - 8}" x2="{sx(x):.1f}" y2="{height - 34}" stroke="{color}" '
                   f'stroke-dasharray="5,3" stroke-width="1.5"/>')
        anchor = "end" if sx(x) > WIDTH - 80 else ("start" if sx(x) < left + 40 else "middle")
        out.append(_t(sx(x), top - 12 - 12 * (j % 2), label, anchor, f'fill="{color}"'))
    out.append("</svg>")
    return "".join(out)


def curves(series: Sequence[tuple[str, Sequence[float]]], *, title: str, axis: str = "epoch",
           width: int = 310, height: int = 200) -> str:
    """Overlaid line plot (one line per run) with a legend; identical lines draw on top of each other."""
    left, right, top, bottom = 46, 8, 26, 30
    ys = [y for _, s in series for y in s if math.isfinite(y)]
    n = max((len(s) for _, s in series), default=0)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height + 14 * len(series)}" '
           f'role="img" class="plot small" aria-label="{escape(title)}">', _t(6, 16, title, extra='font-weight="600"')]
    if not ys or n == 0:
        out.append(_t(width / 2, height / 2, "no loss curves recorded", "middle", 'fill="#888"'))
        out.append("</svg>")
        return "".join(out)
    lo, hi = min(ys), max(ys)
    if hi - lo <= 1e-12 * max(abs(hi), 1.0):
        lo, hi = lo - 0.5 * max(abs(lo), 1e-3), hi + 0.5 * max(abs(hi), 1e-3)

    def sx(i: int) -> float:
        return left + (width - left - right) * (i / max(n - 1, 1))

    def sy(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - lo) / (hi - lo))

    out.append(f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
               f'fill="none" stroke="#ccc"/>')
    for v in (lo, (lo + hi) / 2, hi):
        out.append(_t(left - 4, sy(v) + 4, f"{v:.3g}", "end", 'font-size="10"'))
    out.append(_t(left, height - 12, "1", "middle", 'font-size="10"'))
    out.append(_t(width - right, height - 12, str(n), "middle", 'font-size="10"'))
    out.append(_t((left + width) / 2, height - 2, axis, "middle", 'fill="#555" font-size="10"'))
    for k, (label, s) in enumerate(series):
        color = PALETTE[k % len(PALETTE)]
        pts = " ".join(f"{sx(i):.1f},{sy(v):.1f}" for i, v in enumerate(s) if math.isfinite(v))
        out.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="1.6" '
                   f'stroke-opacity="0.8"><title>{escape(label)}</title></polyline>')
        ly = height + 10 + 14 * k
        out.append(f'<rect x="{left}" y="{ly - 8}" width="10" height="3" fill="{color}"/>')
        out.append(_t(left + 16, ly, label, extra='font-size="11"'))
    out.append("</svg>")
    return "".join(out)


def heatmap(labels: Sequence[str], values: Sequence[Sequence[float | None]], *, title: str,
            percent: bool = True) -> str:
    """A square matrix of pairwise values; darker is larger, empty cells say "—"."""
    n = len(labels)
    left, top, cell = 150, 40, max(36, min(80, 420 // max(n, 1)))
    width, height = max(left + n * cell + 20, 7 * len(title) + 20), top + n * cell + 110
    flat = [v for row in values for v in row if v is not None]
    vmax = max(flat, default=0.0) or 1.0
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" role="img" '
           f'class="plot" aria-label="{escape(title)}">', _t(8, 18, title, extra='font-weight="600"')]
    for i, row in enumerate(values):
        out.append(_t(left - 6, top + i * cell + cell * 0.6, labels[i], "end"))
        for j, v in enumerate(row):
            x, y = left + j * cell, top + i * cell
            shade = 0.0 if v is None else v / vmax
            fill = "#f4f4f4" if v is None else f"rgba(214,39,40,{0.08 + 0.85 * shade:.3f})"
            text = "—" if v is None else (f"{v:.1%}" if percent else f"{v:.2g}")
            out.append(f'<rect x="{x}" y="{y}" width="{cell - 2}" height="{cell - 2}" fill="{fill}">'
                       f'<title>{escape(labels[i])} vs {escape(labels[j])}: {escape(text)}</title></rect>')
            out.append(_t(x + (cell - 2) / 2, y + cell * 0.58, text, "middle",
                          'font-size="11"' + (' fill="#fff"' if shade > 0.6 else "")))
    for j, label in enumerate(labels):
        x, y = left + j * cell + cell / 2, top + n * cell + 8
        out.append(f'<text x="{x:.1f}" y="{y:.1f}" transform="rotate(35 {x:.1f} {y:.1f})" {FONT}>'
                   f'{escape(label)}</text>')
    out.append("</svg>")
    return "".join(out)
