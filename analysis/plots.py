"""Plotly figures of a frontier analysis: params vs score with the Pareto staircase, and hypervolume history.

HTML is always written (plotly.js sits once beside the pages, `plotly.min.js`, so they open offline); the
static PNG and SVG images are drawn from the same figures by matplotlib (`analysis.static_images`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from analysis.fronts import FrontierResult, front_mask, mean_std
from analysis.hypervolume import hypervolume_2d
from analysis.results_contract import task_name
from analysis.static_images import write_static

SIZE = {"width": 1100, "height": 640}
FADED = 0.3
# Fixed colours so a variant looks the same in every figure and study; VL-PET variants get the strong hues.
COLOURS = {
    "full": "#7f7f7f", "bitfit": "#bcbd22", "prompt": "#e377c2", "compacter": "#8c564b", "hyperformer": "#9467bd",
    "lora": "#ff7f0e", "adapter": "#2ca02c", "vlpet-small": "#17becf", "vlpet-middlex": "#1f77b4",
    "vlpet-middley": "#393b79", "vlpet-large": "#d62728",
}
EXTRA_COLOURS = qualitative.Dark24  # for variants outside the paper, in alphabetical order
TICKS = [b * 10.0**e for e in range(-3, 3) for b in (1, 2, 5)]  # a 1-2-5 log scale, 0.001 to 500
HOVER = ("<b>%{customdata[0]}</b> %{customdata[1]}<br>params: %{x:.3g} % (%{customdata[2]})<br>"
         "score: %{customdata[3]}<br><span style='font-size:10px'>%{customdata[4]}</span><extra></extra>")


def variant_colours(variants: list[str]) -> dict[str, str]:
    """A colour per variant: the paper's variants fixed (`COLOURS`), others from a palette by name."""
    extra = sorted(set(variants) - set(COLOURS))
    ordered = [v for v in COLOURS if v in set(variants)] + extra
    return {v: COLOURS.get(v) or EXTRA_COLOURS[extra.index(v) % len(EXTRA_COLOURS)] for v in ordered}


def frontier_figure(result: FrontierResult, score_col: str | None = None, title: str | None = None) -> go.Figure:
    """Trainable params (log x; % of the model for `params_pct`) vs `score_col` (default: the result's score).

    Full-fidelity configurations (seed means) are coloured by variant, solid and outlined on the front and
    faded off it; the front is drawn as a Pareto staircase; low-fidelity (pruned or unfinished) trials are
    hollow and faded, and never on the front.
    """
    score_col = score_col or result.score_col
    x = result.params_col
    agg = result.aggregated.assign(on_front=front_mask(result.aggregated, score_col, x))
    agg = _labels(agg.dropna(subset=[x, score_col]), x)
    low = result.trials[~result.trials["full_fidelity"]].dropna(subset=[x, score_col])
    fig = go.Figure([_staircase(agg[agg["on_front"]], x, score_col, pd.concat([agg[x], low[x]]).max())])
    for variant, colour in variant_colours([*agg["variant"], *low["variant"]]).items():
        fig.add_traces([_legend_entry(variant, variant, {"color": colour}),
                        _config_trace(agg[agg["variant"] == variant], x, score_col, variant, colour),
                        _low_fidelity_trace(low[low["variant"] == variant], x, score_col, colour)])
    fig.add_trace(_legend_entry("pruned (low fidelity)", "low", {"symbol": "circle-open", "color": "grey"}))
    label = "average validation score" if score_col == result.score_col else f"{task_name(score_col)} score"
    hv = hypervolume_2d(agg[x], agg[score_col], *result.reference)
    subtitle = (f"{len(agg)} full-fidelity configurations, {int(agg['on_front'].sum())} on the front; "
                f"{len(low)} low-fidelity trials; hypervolume {hv:,.1f} (reference {result.reference[0]:g}, "
                f"{result.reference[1]:g})")
    _layout(fig, title or f"Efficiency-effectiveness frontier: {label}", label, subtitle)
    pct = x == "params_pct"
    fig.update_xaxes(type="log", title="trainable parameters" + (" (% of the model, log scale)" if pct else " (log)"),
                     tickvals=TICKS if pct else None, ticksuffix=" %" if pct else "")
    if agg.empty:
        fig.add_annotation(text="no completed full-fidelity trials", showarrow=False, font={"size": 18},
                           xref="paper", yref="paper", x=0.5, y=0.95)
    return fig


def hypervolume_figure(histories: Mapping[str, pd.DataFrame], reference: tuple[float, float]) -> go.Figure:
    """Hypervolume against compute (hours) for one or more studies (name -> `hypervolume_history` frame).

    Compute falls back to the number of finished trials when no wall time was recorded.
    """
    timed = all(h["compute_s"].gt(0).any() for h in histories.values())
    fig = go.Figure()
    for name, hist in histories.items():
        fig.add_trace(go.Scatter(
            x=hist["compute_s"] / 3600 if timed else hist["n_finished"], y=hist["hypervolume"], name=name,
            mode="lines+markers", line_shape="hv",
            marker={"symbol": np.where(hist["full_fidelity"], "circle", "circle-open"), "size": 7},
            customdata=hist[["trial_id", "variant", "status"]],
            hovertemplate="%{customdata[0]} %{customdata[1]} (%{customdata[2]})<br>hypervolume %{y:.4g}<extra></extra>",
        ))
    _layout(fig, "Hypervolume of the frontier over the study", "hypervolume",
            f"reference point ({reference[0]:g}, {reference[1]:g}); each marker a finished trial, "
            "hollow where it added no full-fidelity point (pruned, failed)")
    fig.update_xaxes(title="compute (hours of trial wall time)" if timed else "finished trials")
    return fig


def save_figures(figures: Mapping[Path, go.Figure], static: bool = True) -> None:
    """Write each figure as `<path>.html` (interactive) and, when `static`, as `<path>.png` and `<path>.svg`
    (drawn by matplotlib: no browser needed)."""
    for path, fig in figures.items():
        fig.write_html(path.with_suffix(".html"), include_plotlyjs="directory")
        if static:
            write_static(fig, path)


def _staircase(front: pd.DataFrame, x: str, y: str, x_right: float) -> go.Scatter:
    """The Pareto staircase through the front, held flat to the right edge of the data."""
    front = front.sort_values([x, y])
    xs, ys = front[x].tolist(), front[y].tolist()
    if xs and x_right > xs[-1]:
        xs, ys = [*xs, x_right], [*ys, ys[-1]]
    return go.Scatter(x=xs, y=ys, mode="lines", line_shape="hv", name="Pareto frontier",
                      line={"color": "rgba(40,40,40,0.75)", "width": 2}, hoverinfo="skip")


def _labels(agg: pd.DataFrame, x: str) -> pd.DataFrame:
    """Label the front with variant names: once per run of one variant along the front, alternately above-left
    (always free: a point there would dominate) and below-right, so that neighbours do not write over each other."""
    front = agg.loc[agg["on_front"], [x, "variant"]].sort_values(x, kind="stable")
    labelled = front[front["variant"].ne(front["variant"].shift())].index
    pos = pd.Series("top left", index=agg.index, dtype=object)
    pos[labelled[1::2]] = "bottom right"
    return agg.assign(label=agg["variant"].where(agg.index.isin(labelled), ""), label_pos=pos)


def _legend_entry(name: str, group: str, marker: dict) -> go.Scatter:
    """A legend-only entry, so that the legend shows one plain marker whatever its group's points look like."""
    return go.Scatter(x=[None], y=[None], mode="markers", name=name, legendgroup=group,
                      marker={"size": 11, **marker}, hoverinfo="skip")


def _config_trace(agg: pd.DataFrame, x: str, y: str, variant: str, colour: str) -> go.Scatter:
    """One variant's configurations: solid and outlined on the front, faded off it."""
    front = agg["on_front"].to_numpy()
    score = [mean_std(m, s, n) for m, s, n in zip(agg[y], agg[f"{y}_std"], agg["n_seeds"])]
    what = [f"{variant} (seeds {s})" if s else variant for s in agg["seeds"]]
    return go.Scatter(
        x=agg[x], y=agg[y], mode="markers+text", name=variant, legendgroup=variant, showlegend=False,
        text=agg["label"], textposition=agg["label_pos"],
        textfont={"size": 11, "color": colour, "shadow": "0 0 2px white, 0 0 2px white"},
        marker={"color": colour, "size": 12, "opacity": np.where(front, 1.0, FADED),
                "line": {"color": "black", "width": np.where(front, 1.5, 0.0)}},
        customdata=_hover(agg, agg["trial_ids"], what, score), hovertemplate=HOVER,
    )


def _low_fidelity_trace(low: pd.DataFrame, x: str, y: str, colour: str) -> go.Scatter:
    what = [f"{v} ({s}, fidelity {f:.2f})" for v, s, f in zip(low["variant"], low["status"], low["fidelity"])]
    return go.Scatter(
        x=low[x], y=low[y], mode="markers", legendgroup="low", showlegend=False, opacity=0.45,
        marker={"symbol": "circle-open", "color": colour, "size": 9, "line": {"width": 1.5}},
        customdata=_hover(low, low["trial_id"], what, [f"{s:.2f} (low fidelity)" for s in low[y]]),
        hovertemplate=HOVER,
    )


def _hover(df: pd.DataFrame, ids: pd.Series, what: list[str], score: list[str]) -> np.ndarray:
    """Hover columns: trial id(s), what the point is, absolute params, score, the config as lines."""
    params = df["params"].map(lambda p: "n/a" if pd.isna(p) else f"{p:,.0f} params")
    return np.column_stack([ids, what, params, score, df["config"].map(_config_lines)])


def _config_lines(config: str) -> str:
    """A config JSON as 'key: value' hover lines, nested keys dotted."""
    try:
        flat = pd.json_normalize(json.loads(config)).iloc[0].to_dict()
    except (TypeError, ValueError, AttributeError, IndexError):
        return str(config)
    return "<br>".join(f"{k}: {v}" for k, v in flat.items())


def _layout(fig: go.Figure, title: str, y_title: str, subtitle: str = "") -> None:
    fig.update_layout(template="plotly_white", title={"text": title, "x": 0.01, "subtitle": {"text": subtitle}},
                      yaxis_title=y_title, legend={"itemsizing": "constant"}, hovermode="closest",
                      margin={"l": 70, "r": 20, "t": 80, "b": 60}, **SIZE)
