"""The check that a fault or a resume kept the epochs finished before it: by the identity of the process
that wrote each row, since a deterministic rerun reproduces the scores and would pass a score comparison."""

from __future__ import annotations

import pandas as pd

IDENTITY = ["pid", "worker_started_at", "score"]


def assert_finished_epochs_kept(before: pd.DataFrame, after: pd.DataFrame) -> set[str]:
    """Every row of `before` is in `after` as its first process wrote it (same pid and worker start);
    returns the trials that went on in another process after `before` was read."""
    kept = before.merge(after, on=["trial_id", "epoch"], suffixes=("_before", ""))
    assert len(kept) == len(before), "an epoch reported before the fault is gone"
    old, new = kept[[f"{c}_before" for c in IDENTITY]].fillna(-1).to_numpy(), kept[IDENTITY].fillna(-1).to_numpy()
    again = kept[(old != new).any(axis=1)]
    shown = ["trial_id", "epoch", *(c for name in IDENTITY for c in (f"{name}_before", name))]
    assert again.empty, f"epochs finished before the fault were trained again:\n{again[shown].to_string()}"
    first = before.groupby("trial_id")["worker_started_at"].agg(set)
    later = after[after["trial_id"].isin(first.index)]
    return {str(t) for t, rows in later.groupby("trial_id") if not set(rows["worker_started_at"]) <= first[t]}
