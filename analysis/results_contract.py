"""The study's results contract, in one place: what a row of a study's results table holds and what its
statuses and phases mean. The study driver writes the table (studies/storage/results_table.py) from its trials' epoch
reports (vlpet/train/epoch_report.py); the console, the trackers, the export, the analysis and the benchmarks
read it through these names. It sits in analysis/ because analysis reads what studies/ writes.

The table keeps one row per (trial, epoch) with `ROW_KEYS`, the last row of a trial carrying its final status.
A trial counts as a finished point (`is_full_fidelity`) only when it completed every epoch: an early-stopped
trial has low-fidelity scores only.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from vlpet.train.epoch_report import EPOCH_KEYS, EVAL_KEYS, TASK_PREFIX

# a trial's status, in its rows of the results table
RUNNING = "running"
COMPLETED = "completed"  # trained every epoch
PRUNED = "pruned"  # stopped early (ASHA): low-fidelity scores only
FAILED = "failed"
SKIPPED = "skipped_budget"  # over the trainable-parameter budget: never trained

# a study's Tune experiments, the `phase` of their rows: the search, the paper's hand-picked configurations
# (one per variant, a reference point), the frontier's seed re-runs
SEARCH, REFERENCE, SEEDS = "search", "reference", "seeds"

# added to every report by the process that trained: where it ran and the orchestration clocks
WHERE_KEYS = ("node_id", "pid", "submitted_at", "worker_started_at")
# a results-table row: the trial's description, its report's keys (run_time_s as wall_time_s) and the
# driver's own: when the trial started, when the report arrived, the checkpoint, the last error line
DESCRIPTION_KEYS = ("trial_id", "phase", "search", "variant", "method", "seed", "config", "status", "error")
REPORT_COLUMNS = (*(k for k in EPOCH_KEYS if k not in ("steps", "run_time_s")), *EVAL_KEYS, *WHERE_KEYS)
ROW_KEYS = (*DESCRIPTION_KEYS, *REPORT_COLUMNS, "wall_time_s", "started_at", "reported_at", "checkpoint_path",
            "log_path")


def reached_full_fidelity(fidelity: Any) -> Any:
    """Whether a fidelity (epochs done / epochs; a number or an array) is the whole run. A tolerance,
    since a table read back from CSV need not hold exactly 1.0."""
    return np.asarray(fidelity, dtype=float) >= 1.0 - 1e-9


def is_full_fidelity(status: Any, fidelity: Any) -> Any:
    """Whether trials (a status and fidelity, or their columns) are finished points: completed at fidelity 1."""
    return (np.asarray(status) == COMPLETED) & reached_full_fidelity(fidelity)


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


def final_rows(df: pd.DataFrame) -> pd.DataFrame:
    """One row per trial: its max-epoch report (the last one reported on a tie), in the order trials finished.

    The finishing order is the position of each trial's final report in the table (`report_order`), since the
    driver appends rows as reports arrive. Adds `full_fidelity` (`is_full_fidelity`) and `config_key`.
    """
    rows = df.assign(report_order=np.arange(len(df)))
    last = rows.sort_values("epoch", kind="stable").groupby("trial_id", sort=False).tail(1)
    last = last.sort_values("report_order").reset_index(drop=True)
    return last.assign(full_fidelity=is_full_fidelity(last["status"], last["fidelity"]),
                       config_key=last["config"].map(config_key))
