"""Exact 2-D hypervolume of the efficiency-effectiveness front, and its growth over a study.

Reports use the reference point `DEFAULT_REFERENCE` = (100 % trainable params, score 0): params are in
percent of the model, so 100 is full fine-tuning, and every score is >= 0. The hypervolume is then the
area (in % params x score units) of the region that some configuration beats on both axes.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from analysis.pareto import pareto_front
from analysis.results_contract import RUNNING, final_rows
from analysis.table import check_columns

DEFAULT_REFERENCE = (100.0, 0.0)  # (params in % trainable: full fine-tuning, score)


def hypervolume_2d(params: npt.ArrayLike, scores: npt.ArrayLike, ref_params: float, ref_score: float) -> float:
    """Area dominated by the points (minimise params, maximise score) inside the reference box.

    The box is params <= ref_params and score >= ref_score; points outside it, and NaN points, are ignored.
    Sweeping the front by increasing params, each point adds the strip from its params to the next front
    point's params (or ref_params), of height score - ref_score.
    """
    p, s = np.asarray(params, dtype=float), np.asarray(scores, dtype=float)
    inside = (p <= ref_params) & (s >= ref_score)  # False for NaN
    p, s = p[inside], s[inside]
    on_front = pareto_front(p, s)
    order = np.argsort(p[on_front], kind="stable")
    fp, fs = p[on_front][order], s[on_front][order]
    widths = np.diff(np.append(fp, ref_params))  # duplicates get width 0
    return float(np.sum(widths * (fs - ref_score)))


def hypervolume_history(
    results: pd.DataFrame,
    score_col: str = "score",
    params_col: str = "params_pct",
    reference: tuple[float, float] = DEFAULT_REFERENCE,
) -> pd.DataFrame:
    """Hypervolume after each finished trial, in the order trials finished, with the compute spent so far.

    One row per finished trial (any final status but "running"), so that pruned and failed trials add compute
    without adding hypervolume: columns `n_finished`, `trial_id`, `variant`, `status`, `full_fidelity`,
    `compute_s` (sum of the final `wall_time_s` of all trials finished so far), `epochs` (epochs trained by
    them, the compute measure that does not depend on the machine) and `hypervolume`.
    Each full-fidelity trial is its own point (seeds are not averaged), so the curve is the best found so far
    and never decreases; with one seed per configuration its last value equals `find_fronts(...).hypervolume`.
    """
    df, _ = check_columns(results, score_col, params_col)
    trials = final_rows(df)
    trials = trials[trials["status"] != RUNNING].reset_index(drop=True)
    counted = trials["full_fidelity"].to_numpy()
    p = trials[params_col].to_numpy(float)
    s = np.where(counted, trials[score_col].to_numpy(float), np.nan)  # NaN points count for nothing
    hv = [hypervolume_2d(p[: i + 1], s[: i + 1], *reference) for i in range(len(trials))]
    return pd.DataFrame({
        "n_finished": np.arange(1, len(trials) + 1),
        "trial_id": trials["trial_id"],
        "variant": trials["variant"],
        "status": trials["status"],
        "full_fidelity": counted,
        "compute_s": trials["wall_time_s"].astype(float).fillna(0.0).cumsum(),
        "epochs": trials["epoch"].astype(float).fillna(0.0).cumsum(),
        "hypervolume": hv,
    })
