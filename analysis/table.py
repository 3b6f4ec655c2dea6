"""Reading a study's results table for analysis: loading it, and checking the columns the analysis needs.

The table has one row per (trial, epoch) report (the contract is `analysis.results_contract`), and may come from
elsewhere (a CSV written by hand). Required columns are `REQUIRED` (plus the score and params columns the
caller analyses); `OPTIONAL` columns are filled with a stand-in and a warning that says what is lost.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from analysis.study_layout import RESULTS, RESULTS_CSV
from vlpet.errors import UserError

REQUIRED = ("trial_id", "variant", "status", "epoch")
# read as text from CSV, so that ids like "007" and JSON configs survive as written
TEXT_COLUMNS = dict.fromkeys(["trial_id", "variant", "method", "status", "config", "checkpoint_path", "log_path",
                               "error"], str)
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


class AnalysisError(UserError):
    """The results table is missing, empty or unusable. The message names the file or column."""


def load_results(study_dir: str | Path) -> pd.DataFrame:
    """Read `<study_dir>/results.parquet` (or `results.csv` when there is no parquet file).

    Raises AnalysisError naming the expected file when the directory or table is missing, unreadable or empty.
    """
    study_dir = Path(study_dir)
    if not study_dir.is_dir():
        raise AnalysisError(f"study directory not found: {study_dir}")
    parquet, csv = study_dir / RESULTS, study_dir / RESULTS_CSV
    path = parquet if parquet.exists() or not csv.exists() else csv
    if not path.exists():
        raise AnalysisError(f"no results table: expected {parquet} (or {csv.name})")
    try:
        df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path, dtype=TEXT_COLUMNS)
    except (OSError, ValueError) as err:  # pandas' and pyarrow's reader errors: the file is unusable
        raise AnalysisError(f"cannot read results table {path}: {err}") from None
    if df.empty:
        raise AnalysisError(f"results table {path} is empty: no trial has reported yet")
    return df


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
    for col in dict.fromkeys(("epoch", "fidelity", score_col, params_col)):
        df[col], note = _numbers(df, col)
        warnings.extend([note] if note else [])
    return _fill_optional(df), warnings


def _numbers(df: pd.DataFrame, col: str) -> tuple[pd.Series, str]:
    """A column as numbers, and a warning for infinite values (read as missing, so off the frontier and
    out of the hypervolume). A value that is not a number at all is an AnalysisError naming it."""
    values = pd.to_numeric(df[col], errors="coerce").astype(float)
    bad = values.isna() & df[col].notna() & (df[col].astype(str).str.strip() != "")
    if bad.any():
        first = bad.idxmax()
        raise AnalysisError(f"results table column `{col}` holds {df.at[first, col]!r} (trial "
                            f"{df.at[first, 'trial_id']}), not a number; fix or remove the row")
    infinite = np.isinf(values)
    if not infinite.any():
        return values, ""
    trials = ", ".join(dict.fromkeys(df.loc[infinite, "trial_id"]))
    return values.mask(infinite), f"`{col}` is infinite for trial(s) {trials}: read as missing"


def _fill_optional(df: pd.DataFrame) -> pd.DataFrame:
    defaults = {
        "config": df["trial_id"].astype(str),
        "seed": np.nan,
        "method": df["variant"],
        "params": np.nan,
        "wall_time_s": np.nan,
    }
    return df.assign(**{c: v for c, v in defaults.items() if c not in df.columns})
