"""The study results table: loading, the column contract, and one row per trial.

The table has one row per (trial, epoch) report, appended as reports arrive. Required columns are
`REQUIRED` (plus the score and params columns the caller analyses); `OPTIONAL` columns are filled
with a stand-in and a warning that says what is lost. Per-task scores are every `score_<task>` column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TASK_PREFIX = "score_"
REQUIRED = ("trial_id", "variant", "status", "epoch")
# read as text from CSV, so that ids like "007" and JSON configs survive as written
TEXT_COLUMNS = dict.fromkeys(["trial_id", "variant", "method", "status", "config", "checkpoint_path", "error"], str)
# column -> what is lost when it is absent (the stand-in is filled by `_fill_optional`)
OPTIONAL = {
    "config": "each trial counts as its own configuration (seeds are not aggregated)",
    "seed": "seeds are not listed",
    "method": "the variant name is used as the method",
    "params": "absolute parameter counts are not shown",
    "wall_time_s": "compute is unknown (hypervolume history is plotted against trial count)",
}
# column -> (columns it can be derived from, how)
DERIVABLE = {
    "fidelity": (("epoch", "max_epochs"), lambda df: df["epoch"] / df["max_epochs"]),
    "params_pct": (("params", "total_params"), lambda df: 100.0 * df["params"] / df["total_params"]),
}


class AnalysisError(ValueError):
    """The results table is missing, empty or unusable. The message names the file or column."""


def load_results(study_dir: str | Path) -> pd.DataFrame:
    """Read `<study_dir>/results.parquet` (or `results.csv` when there is no parquet file).

    Raises AnalysisError naming the expected file when the directory or table is missing, unreadable or empty.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise AnalysisError(f"study directory not found: {study_dir}")
    parquet, csv = study_dir / "results.parquet", study_dir / "results.csv"
    path = parquet if parquet.exists() or not csv.exists() else csv
    if not path.exists():
        raise AnalysisError(f"no results table: expected {parquet} (or {csv.name})")
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=TEXT_COLUMNS)
    except Exception as err:  # any reader error means the same thing to the user: the file is unusable
        raise AnalysisError(f"cannot read results table {path}: {err}") from None
    if df.empty:
        raise AnalysisError(f"results table {path} is empty: no trial has reported yet")
    return df


def task_columns(df: pd.DataFrame) -> list[str]:
    """The per-task score columns (`score_<task>`), in table order."""
    return [c for c in df.columns if c.startswith(TASK_PREFIX)]


def task_name(column: str) -> str:
    """'score_vqa' -> 'vqa'."""
    return column.removeprefix(TASK_PREFIX)


def config_key(config: Any) -> str:
    """The configuration JSON without its seed, canonicalised, so that seeds of one config compare equal.

    `seed` keys are dropped at any depth since the seed has its own column. Text that is not JSON is kept as is.
    """
    try:
        parsed = json.loads(config)
    except (TypeError, ValueError):
        return str(config)
    return json.dumps(_drop_seed(parsed), sort_keys=True)


def _drop_seed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_seed(v) for k, v in value.items() if k != "seed"}
    return value


def check_columns(df: pd.DataFrame, score_col: str, params_col: str) -> tuple[pd.DataFrame, list[str]]:
    """Validate the column contract; derive what can be derived and stand in for optional columns.

    Returns the completed copy and warnings; raises AnalysisError naming any missing required column.
    """
    if df.empty:
        raise AnalysisError("results table is empty: no trial has reported yet")
    df, warnings = df.copy(), []
    for col in ("fidelity", params_col):
        if col not in df.columns and col in DERIVABLE and set(DERIVABLE[col][0]) <= set(df.columns):
            sources, derive = DERIVABLE[col]
            df[col] = derive(df)
            warnings.append(f"no `{col}` column: derived from {' and '.join(f'`{s}`' for s in sources)}")
    missing = [c for c in (*REQUIRED, "fidelity", score_col, params_col) if c not in df.columns]
    if missing:
        names = ", ".join(f"`{c}`" for c in dict.fromkeys(missing))
        raise AnalysisError(f"results table lacks required column(s) {names}; has: {', '.join(map(str, df.columns))}")
    for col, lost in OPTIONAL.items():
        if col not in df.columns:
            warnings.append(f"no `{col}` column: {lost}")
    df["trial_id"] = df["trial_id"].astype(str)  # ids are joined and matched as text
    return _fill_optional(df), warnings


def _fill_optional(df: pd.DataFrame) -> pd.DataFrame:
    defaults = {
        "config": df["trial_id"].astype(str),
        "seed": np.nan,
        "method": df["variant"],
        "params": np.nan,
        "wall_time_s": np.nan,
    }
    return df.assign(**{c: v for c, v in defaults.items() if c not in df.columns})


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its max-epoch report (the last one reported on a tie), in the order trials finished.

    The finishing order is the position of each trial's final report in the table (`report_order`), since the
    driver appends rows as reports arrive. Adds `full_fidelity` (completed at fidelity 1) and `config_key`.
    """
    rows = df.assign(report_order=np.arange(len(df)))
    last = rows.sort_values("epoch", kind="stable").groupby("trial_id", sort=False).tail(1)
    last = last.sort_values("report_order").reset_index(drop=True)
    full = (last["status"] == "completed") & np.isclose(last["fidelity"].astype(float), 1.0)
    return last.assign(full_fidelity=full.to_numpy(), config_key=last["config"].map(config_key))
