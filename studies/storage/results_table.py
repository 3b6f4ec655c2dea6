"""The study's results table: one row per (trial, epoch) report in a Parquet file, written as reports
arrive (a Tune callback). Its columns are `analysis.results_contract.ROW_KEYS`."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from ray import tune

from analysis.results_contract import (
    COMPLETED,
    FAILED,
    PRUNED,
    REPORT_COLUMNS,
    RUNNING,
    SKIPPED,
    TASK_PREFIX,
    reached_full_fidelity,
)
from analysis.study_layout import RESULTS, trial_log_path
from studies.plan.trial_run import trial_run

STUDY_ID_KEY = b"vlpet.study_id"  # Parquet metadata: the study (study.json's id) the table belongs to


def results_study_id(path: Path) -> str | None:
    """The id of the study a results table belongs to (None: no table, or one written without an id)."""
    if not path.is_file():
        return None
    value = (pq.read_schema(path).metadata or {}).get(STUDY_ID_KEY)
    return value.decode() if value else None


class ResultsTable(tune.Callback):
    """One row per (trial, epoch) report; the final row of a trial carries its final status (completed /
    pruned / failed / skipped_budget). `phase` names the Tune experiment the rows come from.

    The file is the only state: every event reads it, changes it and atomically replaces it (temp
    file + rename). A crash never leaves half a table, and the copy of this callback that Tune
    unpickles when a study is restored writes to the same table instead of an outdated one.

    A report that comes with a checkpoint is written once Tune has registered the checkpoint (`on_checkpoint`,
    which follows `on_trial_result`): a driver stopped between the two would resume the trial from its previous
    checkpoint and train that epoch again. So a row in the table is an epoch that a resumed or retried trial
    goes on from, never one it trains twice.
    """

    def __init__(self, study_dir: Path, phase: str, devices_per_trial: float, study_id: str | None = None):
        self.path = study_dir / RESULTS
        self.phase, self.devices_per_trial, self.study_id = phase, devices_per_trial, study_id
        self._awaiting: dict[str, dict[str, Any]] = {}  # trial id -> the row of its report awaiting its checkpoint

    def __getstate__(self) -> dict[str, Any]:
        # a restored study's trials report their unregistered epochs again: it must not write the old rows
        return {**self.__dict__, "_awaiting": {}}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({"_awaiting": {}, **state})  # a table pickled before rows awaited their checkpoints

    def _rows(self) -> dict[tuple[str, int], dict[str, Any]]:
        if not self.path.is_file():
            return {}
        return {_key(r): r for r in pd.read_parquet(self.path).to_dict("records")}

    def _row(self, trial: Any, result: dict[str, Any]) -> dict[str, Any]:
        run = trial_run(trial.config)
        row = {"trial_id": trial.trial_id, "phase": self.phase, "search": run["search"], "variant": run["variant"],
               "method": run["spec"].method.method, "seed": run["spec"].train.seed,
               "config": json.dumps(run["config"], sort_keys=True), "status": result.get("status", RUNNING),
               "error": ""}
        row.update({k: result.get(k) for k in REPORT_COLUMNS})
        row.update({k: v for k, v in result.items() if k.startswith(TASK_PREFIX)})
        row["wall_time_s"] = result.get("run_time_s", result.get("time_total_s"))
        # driver clock: when Tune started the trial and when this report arrived (orchestration overhead)
        row["started_at"], row["reported_at"] = trial.run_metadata.start_time, time.time()
        # a worker group's checkpoint is Train's (its path in the result); an in-process trial's is Tune's
        tune_checkpoint = result.get("checkpoint_dir_name")
        row["checkpoint_path"] = result.get("checkpoint_path") or (f"{trial.path}/{tune_checkpoint}" if tune_checkpoint
                                                                   else "")
        row["log_path"] = str(trial_log_path(self.path.parent, trial.trial_id))
        return row

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        row = self._row(trial, result)
        if result.get("checkpoint_dir_name"):  # a Tune checkpoint, registered after this callback
            self._awaiting[trial.trial_id] = row
            return
        self._put(row)

    def on_checkpoint(self, iteration: int, trials: list, trial: Any, checkpoint: Any, **info: Any) -> None:
        row = self._awaiting.pop(trial.trial_id, None)
        if row is not None:
            self._put(row)

    def _put(self, row: dict[str, Any]) -> None:
        rows = self._rows()
        rows[_key(row)] = row
        self._write(rows)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Close the rows of a trial lost with a killed driver: the table says it runs, the restored
        experiment does not know it (Tune had not saved it yet), and the searcher hands its configuration to
        this new trial (`studies.search.searcher`). Its finished epochs stay, marked failed, naming the new trial."""
        live = {t.trial_id for t in trials}
        config = json.dumps(trial_run(trial.config)["config"], sort_keys=True)
        rows = self._rows()
        lost = [row for tid, row in _last_rows(rows).items() if tid not in live
                and row["status"] == RUNNING and row["phase"] == self.phase and row["config"] == config]
        for row in lost:
            row["status"], row["error"] = FAILED, (f"lost with the killed driver before Tune saved it; "
                                                   f"re-run as trial {trial.trial_id}")
        if lost:
            self._write(rows)

    def _finish(self, trial: Any, status: str, error: str = "") -> None:
        rows = self._rows()
        awaiting = self._awaiting.pop(trial.trial_id, None)
        if awaiting is not None:  # a trial that failed before its last checkpoint was registered: keep the epoch
            rows[_key(awaiting)] = awaiting
        own = [r for (tid, _), r in rows.items() if tid == trial.trial_id]
        if not own:  # failed before its first report
            own = [self._row(trial, {"epoch": 0, "fidelity": 0.0})]
            rows[(trial.trial_id, 0)] = own[0]
        _close(max(own, key=lambda r: r["epoch"] or 0), status, error)
        self._write(rows)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, COMPLETED)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = ""
        if trial.error_file and Path(trial.error_file).is_file():
            error = Path(trial.error_file).read_text().strip().splitlines()[-1][:500]
        self._finish(trial, FAILED, error)

    def close_unfinished(self, why: str) -> None:
        """Close the rows of this phase's trials that Tune ended without a completion callback (a spent
        `gpu_hours` or `time_budget_s` stops the experiment with trials running): the last epoch is what
        they reached, completed at full fidelity, else pruned, with `why`."""
        rows = self._rows()
        open_rows = [row for row in _last_rows(rows).values() if row["phase"] == self.phase and row["status"] == RUNNING]
        for row in open_rows:
            _close(row, COMPLETED)
            if row["status"] == PRUNED:
                row["error"] = why
        if open_rows:
            self._write(rows)

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame (one row per trial and epoch)."""
        return pd.DataFrame(list(self._rows().values()))

    def _write(self, rows: dict[tuple[str, int], dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".parquet.tmp")
        table = pa.Table.from_pandas(pd.DataFrame(list(rows.values())), preserve_index=False)
        if self.study_id:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), STUDY_ID_KEY: self.study_id})
        pq.write_table(table, tmp)
        os.replace(tmp, self.path)

    def device_hours(self) -> float:
        """Sum over trials of wall time x devices (GPUs, or workers on CPU runs), in hours."""
        last: dict[str, float] = {}
        for (tid, _), row in self._rows().items():
            last[tid] = max(last.get(tid, 0.0), float(row.get("wall_time_s") or 0.0))
        return sum(last.values()) * self.devices_per_trial / 3600


def _key(row: dict[str, Any]) -> tuple[str, int]:
    """A row's place in the table: its trial and epoch."""
    return row["trial_id"], int(row["epoch"] or 0)


def _last_rows(rows: dict[tuple[str, int], dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each trial's row of its latest epoch."""
    last: dict[str, tuple[int, dict[str, Any]]] = {}
    for (tid, epoch), row in rows.items():
        if tid not in last or epoch > last[tid][0]:
            last[tid] = (epoch, row)
    return {tid: row for tid, (_, row) in last.items()}


def _close(row: dict[str, Any], status: str, error: str = "") -> None:
    """Close a trial at its last row: `status`, except that a trial that completed below full fidelity was
    stopped early (pruned) and a trial skipped for the params budget stays skipped."""
    if row["status"] != SKIPPED:
        row["status"] = PRUNED if status == COMPLETED and not reached_full_fidelity(row["fidelity"] or 0) else status
    row["error"] = error
