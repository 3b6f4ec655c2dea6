"""Static PNG and SVG images of the analysis' plotly figures, drawn with matplotlib: no browser needed.

Each figure is built once, as plotly (interactive HTML); this module redraws what a figure holds (its
scatter traces: points, lines, step lines, labels; axis types and titles; reference lines and notes)
on a matplotlib canvas, so the static images show the same data as the HTML on a machine without
Chrome. Hover text and interactivity are what the HTML adds.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure  # the object API: no pyplot state, no window, any backend-less machine
from matplotlib.transforms import blended_transform_factory

DPI = 100
SYMBOLS = {"circle": "o", "square": "s", "diamond": "D", "x": "x", "cross": "P", "triangle-up": "^", "star": "*"}
DASHES = {"dash": "--", "dot": ":", "dashdot": "-."}
LABEL_OFFSETS = {"top left": ((-5, 5), "right", "bottom"), "bottom right": ((5, -5), "left", "top"),
                 "top center": ((0, 6), "center", "bottom"), "middle right": ((6, 0), "left", "center")}


def write_static(fig: go.Figure, path: Path) -> list[Path]:
    """Draw `fig` and write `<path>.png` and `<path>.svg`; returns the files written."""
    width, height = fig.layout.width or 900, fig.layout.height or 560
    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    ax = figure.subplots()
    for trace in fig.data:
        _draw(ax, trace)
    _axes(ax, fig.layout)
    written = [path.with_suffix(suffix) for suffix in (".png", ".svg")]
    for out in written:
        figure.savefig(out, bbox_inches="tight")
    return written


def colour(value: Any) -> Any:
    """A plotly colour as matplotlib takes it: 'rgba(40,40,40,0.75)' becomes an RGBA tuple."""
    if isinstance(value, str) and value.startswith("rgb"):
        parts = [float(p) for p in re.findall(r"[\d.]+", value)]
        return (*[p / 255 for p in parts[:3]], parts[3] if len(parts) > 3 else 1.0)
    return value


def _draw(ax: Any, trace: Any) -> None:
    """One scatter trace: its line (straight or step), its markers grouped by symbol, its text labels."""
    mode = trace.mode or "lines+markers"
    label = trace.name if trace.showlegend is not False and trace.name else None
    xs = np.array([np.nan if v is None else v for v in (trace.x if trace.x is not None else [])], dtype=float)
    ys = np.array([np.nan if v is None else v for v in (trace.y if trace.y is not None else [])], dtype=float)
    alpha = trace.opacity if trace.opacity is not None else 1.0
    if "lines" in mode:
        line = trace.line
        kwargs = {"color": colour(line.color), "linewidth": line.width or 2, "alpha": alpha,
                  "linestyle": DASHES.get(line.dash, "-"), "label": label if "markers" not in mode else None}
        if line.shape == "hv":
            ax.step(xs, ys, where="post", **kwargs)
        else:
            ax.plot(xs, ys, **kwargs)
    if "markers" in mode:
        _markers(ax, trace, xs, ys, alpha, label)
    if "text" in mode and trace.text is not None:
        _texts(ax, trace, xs, ys)


def _markers(ax: Any, trace: Any, xs: np.ndarray, ys: np.ndarray, alpha: float, label: str | None) -> None:
    marker, n = trace.marker, len(xs)
    if n == 0:
        return
    symbols = _per_point(marker.symbol, "circle", n, object)
    opacity, edge = _per_point(marker.opacity, 1.0, n, float), _per_point(marker.line.width, 0.0, n, float)
    face = colour(marker.color if isinstance(marker.color, str) else (trace.line.color or "C0"))
    size = (marker.size if isinstance(marker.size, int | float) else 8) ** 2 * 0.8
    finite = np.isfinite(xs) & np.isfinite(ys)  # a legend-only entry has one point at None: a handle only
    for k, symbol in enumerate(sorted(set(symbols))):
        hollow = str(symbol).endswith("-open")
        keep = (symbols == symbol) & finite
        outline = face if hollow else colour(marker.line.color or "black")
        # per-point opacity folded into the colours (matplotlib's way); one colour for a bare handle
        alphas = opacity[keep] * alpha if keep.any() else [alpha]
        faces, outlines = [to_rgba(face, a) for a in alphas], [to_rgba(outline, a) for a in alphas]
        ax.scatter(xs[keep], ys[keep], s=size, marker=SYMBOLS.get(str(symbol).removesuffix("-open"), "o"),
                   facecolors="none" if hollow else faces, edgecolors=outlines,
                   linewidths=1.5 if hollow or not keep.any() else edge[keep], label=label if k == 0 else None, zorder=3)


def _per_point(value: Any, default: Any, n: int, dtype: type) -> np.ndarray:
    """A marker or text property (one value for all points, or one per point) as an array of n values."""
    return np.broadcast_to(np.asarray(default if value is None else value, dtype=dtype), (n,))


def _texts(ax: Any, trace: Any, xs: np.ndarray, ys: np.ndarray) -> None:
    positions = _per_point(trace.textposition, "top center", len(xs), object)
    for x, y, text, position in zip(xs, ys, trace.text, positions):
        if text and np.isfinite(x) and np.isfinite(y):
            offset, ha, va = LABEL_OFFSETS.get(position, LABEL_OFFSETS["top center"])
            ax.annotate(text, (x, y), xytext=offset, textcoords="offset points", ha=ha, va=va, fontsize=9,
                        color=colour(trace.textfont.color) or "black", zorder=4)


def _axes(ax: Any, layout: Any) -> None:
    """Axis scales, ticks and titles, the title and subtitle, reference lines and notes, the legend."""
    if layout.xaxis.type == "log":
        ax.set_xscale("log")
        if layout.xaxis.tickvals:
            low, high = ax.get_xlim()
            ticks = [t for t in layout.xaxis.tickvals if low <= t <= high]
            ax.set_xticks(ticks, [f"{t:g}{layout.xaxis.ticksuffix or ''}" for t in ticks])
            ax.minorticks_off()
    ax.set_xlabel(layout.xaxis.title.text or "")
    ax.set_ylabel(layout.yaxis.title.text or "")
    subtitle = layout.title.subtitle.text if layout.title.subtitle else None
    ax.set_title(layout.title.text or "", loc="left", fontsize=12, pad=18 if subtitle else 6)
    if subtitle:
        ax.text(0, 1.01, subtitle, transform=ax.transAxes, fontsize=8, color="dimgrey", va="bottom")
    for shape in layout.shapes or []:
        style = {"color": colour(shape.line.color) or "grey", "linestyle": DASHES.get(shape.line.dash, "-"), "lw": 1}
        if shape.x0 == shape.x1:
            ax.axvline(shape.x0, **style)
        elif shape.y0 == shape.y1:
            ax.axhline(shape.y0, **style)
    for note in layout.annotations or []:  # x and y each in data or in axes fractions ("paper", "x domain")
        on_axes = [ref is not None and ("paper" in ref or "domain" in ref) for ref in (note.xref, note.yref)]
        transform = blended_transform_factory(*(ax.transAxes if frac else ax.transData for frac in on_axes))
        ax.text(note.x, note.y, note.text, transform=transform, fontsize=9, color="dimgrey",
                ha="center" if on_axes[0] else "left", va="top")
    ax.grid(True, color="#e5e5e5", linewidth=0.8)
    ax.set_axisbelow(True)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize=9)
