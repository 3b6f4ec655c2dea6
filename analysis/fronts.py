"""Efficiency-effectiveness frontier of a study: trials, seed-aggregated configurations, fronts, hypervolume.

Only full-fidelity trials (final report "completed" at fidelity 1) enter a front: pruned trials have
low-fidelity scores only. Seeds of one configuration (same `config` JSON but for the seed) are averaged
and the front is computed on the means; trials with a NaN score are left out and reported in `warnings`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.hypervolume import DEFAULT_REFERENCE, hypervolume_2d
from analysis.pareto import pareto_front
from analysis.results_contract import FAILED, PRUNED, REFERENCE, SEARCH, final_rows, task_columns, task_name
from analysis.table import check_columns


@dataclass
class FrontierResult:
    """The frontier analysis of one results table (see `frontier`)."""

    trials: pd.DataFrame  # one row per trial (its final report) + full_fidelity, on_front, config_key
    # one row per (variant, config without seed) over its full-fidelity trials with a score:
    # score means, <score>_std, n_seeds, seeds, trial_ids, config, on_front
    aggregated: pd.DataFrame
    front: pd.DataFrame  # the aggregated rows on the front, by increasing params
    hypervolume: float  # of the aggregated front, w.r.t. `reference`
    per_task: dict[str, pd.DataFrame]  # task -> aggregated rows on that task's front, by increasing params
    best_per_variant: pd.DataFrame  # per variant its best aggregated configuration, by decreasing score
    warnings: list[str] = field(default_factory=list)  # what is missing or left out, for the report
    score_col: str = "score"
    params_col: str = "params_pct"
    reference: tuple[float, float] = DEFAULT_REFERENCE

    @property
    def tasks(self) -> list[str]:
        """The per-task score columns (`score_<task>`)."""
        return task_columns(self.trials)


def find_fronts(
    results: pd.DataFrame,
    score_col: str = "score",
    params_col: str = "params_pct",
    reference: tuple[float, float] = DEFAULT_REFERENCE,
) -> FrontierResult:
    """Analyse a results table (one row per trial and epoch; column contract in `analysis.table`).

    `reference` is the hypervolume reference point in (params_col, score_col) units. Raises AnalysisError
    for an empty table or a missing required column; anything else missing becomes a warning.
    """
    df, warnings = check_columns(results, score_col, params_col)
    trials = final_rows(df)
    full = trials["full_fidelity"].to_numpy()
    trials["on_front"] = pareto_front(np.where(full, trials[params_col], np.nan), trials[score_col])
    scores = [score_col, *(c for c in task_columns(trials) if c != score_col)]
    agg = _aggregate(trials[full & trials[score_col].notna()], scores, params_col)
    agg["on_front"] = pareto_front(agg[params_col], agg[score_col])
    per_task = {task_name(c): _front_rows(agg, c, params_col) for c in task_columns(trials)}
    best = agg.sort_values(score_col, ascending=False).drop_duplicates("variant")
    warnings += _warnings(trials, score_col, params_col)
    return FrontierResult(
        trials=trials,
        aggregated=agg,
        front=_front_rows(agg, score_col, params_col),
        hypervolume=hypervolume_2d(agg[params_col], agg[score_col], *reference),
        per_task=per_task,
        best_per_variant=best.reset_index(drop=True),
        warnings=warnings,
        score_col=score_col,
        params_col=params_col,
        reference=reference,
    )


def front_mask(agg: pd.DataFrame, score_col: str, params_col: str) -> np.ndarray:
    """Which aggregated configurations are on the front of `score_col` (e.g. a per-task score)."""
    return pareto_front(agg[params_col], agg[score_col])


def mean_std(mean: float, std: float, n: int) -> str:
    """'71.20 ± 0.31 (3 seeds)', or '71.20 (1 seed)' where the std is undefined."""
    return f"{mean:.2f} ± {std:.2f} ({n} seeds)" if n > 1 else f"{mean:.2f} (1 seed)"


def _front_rows(agg: pd.DataFrame, score_col: str, params_col: str) -> pd.DataFrame:
    return agg[front_mask(agg, score_col, params_col)].sort_values([params_col, score_col]).reset_index(drop=True)


def _aggregate(ff: pd.DataFrame, scores: list[str], params_col: str) -> pd.DataFrame:
    """Mean and std over the seeds of each (variant, configuration-without-seed). A configuration run again on
    a seed it already has (a search that ran out of unseen points draws a known one) is no new evidence: each
    (configuration, seed) counts once, by its last run."""
    ff = ff[~(ff["seed"].notna() & ff.duplicated(["variant", "config_key", "seed"], keep="last"))]
    groups = ff.groupby(["variant", "config_key"], sort=False)
    out = groups.agg(
        method=("method", "first"),
        **{c: (c, "mean") for c in dict.fromkeys(["params", params_col])},
        n_seeds=("trial_id", "size"),
        seeds=("seed", lambda s: ", ".join(str(int(x)) for x in sorted(s.dropna()))),
        trial_ids=("trial_id", ", ".join),
        wall_time_s=("wall_time_s", "sum"),
    )
    out = out.join(groups[scores].mean()).join(groups[scores].std().add_suffix("_std"))
    return out.reset_index().rename(columns={"config_key": "config"})


def _warnings(trials: pd.DataFrame, score_col: str, params_col: str) -> list[str]:
    """What the frontier leaves out: no usable trials, failures, NaN values, variants without a result."""
    full, status = trials[trials["full_fidelity"]], trials["status"]
    failed = trials[status == FAILED]
    errors = failed["error"].dropna().astype(str).str.strip() if "error" in trials else pd.Series(dtype=str)
    errors = errors[errors != ""]
    first_error = f": {errors.iloc[0].splitlines()[-1]}" if len(errors) else ""
    out = []
    if full.empty:
        others = ", ".join(f"{n} {s}" for s, n in status[status != FAILED].value_counts().items())
        out.append(f"no completed full-fidelity trials; {len(failed)} failed{first_error}"
                   + (f" ({others})" if others else ""))
    elif len(failed):
        out.append(f"{len(failed)} trial(s) failed{first_error}")
    nan = full[full[[score_col, params_col]].isna().any(axis=1)]
    if len(nan):
        out.append(f"{len(nan)} completed full-fidelity trial(s) have a NaN `{score_col}` or `{params_col}` and are "
                   f"left off the frontier: {', '.join(nan['trial_id'])}")
    task_nan = {c: int(full[c].isna().sum()) for c in task_columns(trials) if full[c].isna().any()}
    if task_nan:
        out.append("NaN per-task scores, left off that task's frontier: "
                   + ", ".join(f"`{c}` {n} trial(s)" for c, n in task_nan.items()))
    if not task_columns(trials):
        out.append("no per-task `score_<task>` columns: per-task frontiers are skipped")
    missing = sorted(set(trials["variant"]) - set(full.dropna(subset=[score_col])["variant"]))
    if missing and not full.empty:
        out.append(f"no completed full-fidelity trial with a score for variant(s): {', '.join(missing)}")
    return out


def paper_references(result: FrontierResult) -> pd.DataFrame:
    """Each finished reference trial (a paper variant's hand-picked configuration, phase `reference`) with
    the cheapest search trial that dominates it (params <=, score >=, one of them strictly), if any:
    columns variant, params, score, dominated_by, by_params, by_score (the last three empty if none) and
    stopped_at: the epoch at which front early stopping stopped a reference that could not reach the
    search's front at its size (its score is then that epoch's; empty for one trained to the end)."""
    t, p, s = result.trials, result.params_col, result.score_col
    if "phase" not in t:
        return pd.DataFrame()
    done = t[t["full_fidelity"] & t[s].notna()]
    searched = done[done["phase"] == SEARCH].sort_values(p)
    rows = []
    for _, ref in done[done["phase"] == REFERENCE].iterrows():
        better = searched[(searched[p] <= ref[p]) & (searched[s] >= ref[s])
                          & ((searched[p] < ref[p]) | (searched[s] > ref[s]))]
        by = better.iloc[0] if len(better) else None
        rows.append({"variant": ref["variant"], "params": ref[p], "score": ref[s],
                     "dominated_by": None if by is None else by["variant"],
                     "by_params": None if by is None else by[p], "by_score": None if by is None else by[s],
                     "stopped_at": None})
    stopped = t[(t["phase"] == REFERENCE) & (t["status"] == PRUNED)]
    rows += [{"variant": r["variant"], "params": r[p], "score": r[s], "dominated_by": None, "by_params": None,
              "by_score": None, "stopped_at": int(r["epoch"])} for _, r in stopped.iterrows()]
    return pd.DataFrame(rows)
