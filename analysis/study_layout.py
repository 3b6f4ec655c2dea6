"""The study directory's layout: the name of every file and folder a study writes, in one place. The driver,
the trials, the home sync, the dashboard, the report and the benchmarks all find a study's files through
these names (analysis/ reads what studies/ writes, so the layout sits below both)."""

from __future__ import annotations

from pathlib import Path

STUDY_JSON = "study.json"  # the study's config, id and directory (what --resume reads)
RESULTS = "results.parquet"  # every trial x epoch (studies.storage.results_table)
RESULTS_CSV = "results.csv"  # the same table as CSV, for people
OPTUNA_DB = "optuna.db"  # the Optuna studies when study.optuna_storage names no database
LOGS = "logs"  # each trial's output and the driver's log
DRIVER_LOG = "driver.log"  # in LOGS: Ray's, Tune's and Optuna's messages on the driver
REPORT = "report"  # the report's folder (analysis.report)
TENSORBOARD = "tensorboard"  # study.tracking: tensorboard: event files per trial (studies.driver.tracking)
EXPORT = "export"  # vlpet-export's default output (studies.export)


def trial_log_path(study_dir: str | Path, trial_id: str) -> Path:
    """Where trial `trial_id` of the study in `study_dir` writes its output (on the node that runs it: on a
    multi-node cluster, the study directory is the driver's path, shared or on that node's disk)."""
    return Path(study_dir) / LOGS / f"trial_{trial_id}.log"
