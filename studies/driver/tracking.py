"""Experiment tracking (`study.tracking: [mlflow, tensorboard]`, off by default): the study in the tools a lab
already uses, fed from the results table so that they say what the table says.

- MLflow: one experiment per study (`<name>-<study id>`), one run per trial tagged with the trial id, study id,
  variant and phase; its hyper-parameters and trainable-parameter figures as params; every epoch's scores,
  loss and throughput as metrics at step = epoch; status and checkpoint path as tags; the run ends with the
  trial (FINISHED, KILLED for stopped early or skipped, FAILED).
- TensorBoard: event files under `<study dir>/tensorboard/<trial id>/` (tensorboardX, no TensorFlow).

A resumed study continues the same runs: a trial's run is found again by its tag, and an epoch MLflow (or the
TensorBoard record) already holds is not logged twice."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune

from analysis.results_contract import COMPLETED, FAILED, PRUNED, SKIPPED, TASK_PREFIX
from analysis.study_layout import RESULTS, TENSORBOARD
from vlpet.errors import ConfigError, holds_password, redact

END_STATUS = {COMPLETED: "FINISHED", PRUNED: "KILLED", SKIPPED: "KILLED", FAILED: "FAILED"}
METRICS = ("epoch", "score", "loss", "params_pct", "examples_per_s", "wall_time_s")


def mlflow_uri(configured: str | None) -> str:
    """The tracking server: study.mlflow_uri, else MLFLOW_TRACKING_URI; refused with a password in it."""
    uri = configured or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        raise ConfigError("study.tracking names mlflow but no server is given; set study.mlflow_uri (e.g. "
                          "http://127.0.0.1:5000) or MLFLOW_TRACKING_URI")
    if holds_password(uri):
        raise ConfigError(f"study.mlflow_uri={redact(uri)} holds a password, which would be saved in study.json; "
                          "give it in MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD instead")
    return uri


def check_mlflow(uri: str, timeout_s: int = 10) -> None:
    """One request to the tracking server before any trial, bounded (MLflow retries for minutes by default)."""
    import requests
    from mlflow import MlflowClient
    from mlflow.environment_variables import MLFLOW_HTTP_REQUEST_MAX_RETRIES, MLFLOW_HTTP_REQUEST_TIMEOUT
    from mlflow.exceptions import MlflowException

    saved = {var.name: os.environ.get(var.name) for var in (MLFLOW_HTTP_REQUEST_MAX_RETRIES,
                                                            MLFLOW_HTTP_REQUEST_TIMEOUT)}
    os.environ.update({MLFLOW_HTTP_REQUEST_MAX_RETRIES.name: "0", MLFLOW_HTTP_REQUEST_TIMEOUT.name: str(timeout_s)})
    try:
        MlflowClient(uri).search_experiments(max_results=1)
    except (MlflowException, requests.RequestException, OSError) as err:
        reason = " ".join(str(err).split())[:200] or type(err).__name__
        raise ConfigError(f"study.mlflow_uri={redact(uri)}: no MLflow tracking server answers ({reason}); start one "
                          "(mlflow server --host 127.0.0.1 --port 5000) or drop mlflow from study.tracking") from None
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def unlogged(rows: list[dict[str, Any]], logged: set[int]) -> list[dict[str, Any]]:
    """The rows of reported epochs (1 and on) that a tracker does not hold yet."""
    return [r for r in rows if int(r["epoch"] or 0) >= 1 and int(r["epoch"]) not in logged]


def epoch_metrics(row: dict[str, Any]) -> dict[str, float]:
    """A table row's figures that are numbers: the score, each task's, loss, params %, throughput, time."""
    keys = [*METRICS, *(k for k in row if k.startswith(TASK_PREFIX))]
    return {k: v for k in keys if (v := _number(row.get(k))) is not None}


class MlflowSink:
    """The study's MLflow experiment; a run per trial, found again after a restart by its trial-id tag."""

    def __init__(self, uri: str, experiment: str, study_id: str):
        from mlflow import MlflowClient

        self.client, self.study_id = MlflowClient(uri), study_id
        found = self.client.get_experiment_by_name(experiment)
        self.experiment = found.experiment_id if found else self.client.create_experiment(
            experiment, tags={"vlpet.study_id": study_id})
        self.runs: dict[str, tuple[str, set[int]]] = {}  # trial id -> (run id, epochs logged)
        self.tags: dict[str, dict[str, str]] = {}

    def _run(self, trial_id: str, first: dict[str, Any]) -> tuple[str, set[int]]:
        if trial_id not in self.runs:
            found = self.client.search_runs([self.experiment], f"tags.`vlpet.trial_id` = '{trial_id}'", max_results=1)
            if found:
                run_id = found[0].info.run_id
                logged = {int(m.step) for m in self.client.get_metric_history(run_id, "epoch")}
            else:
                run_id, logged = self._create(trial_id, first), set()
            self.runs[trial_id] = (run_id, logged)
        return self.runs[trial_id]

    def _create(self, trial_id: str, first: dict[str, Any]) -> str:
        run = self.client.create_run(self.experiment, run_name=f"{first['variant']}-{trial_id}", tags={
            "vlpet.trial_id": trial_id, "vlpet.study_id": self.study_id, "vlpet.variant": first["variant"],
            "vlpet.phase": first["phase"]})
        params = {**json.loads(first["config"] or "{}"), "method": first["method"], "seed": first["seed"],
                  "params": first["params"], "params_pct": first["params_pct"]}
        for key, value in params.items():
            self.client.log_param(run.info.run_id, key, value)
        return run.info.run_id

    def push(self, trial_id: str, rows: list[dict[str, Any]]) -> None:
        from mlflow.entities import Metric

        run_id, logged = self._run(trial_id, rows[0])
        new = unlogged(rows, logged)
        if new:
            now = int(time.time() * 1000)
            self.client.log_batch(run_id, metrics=[Metric(k, v, now, int(r["epoch"])) for r in new
                                                   for k, v in epoch_metrics(r).items()])
            logged.update(int(r["epoch"]) for r in new)
        last = rows[-1]
        tags = {"status": str(last["status"]), "checkpoint_path": str(last.get("checkpoint_path") or "")}
        if self.tags.get(trial_id) != tags:
            for key, value in tags.items():
                self.client.set_tag(run_id, key, value)
            if last["status"] in END_STATUS:
                self.client.set_terminated(run_id, END_STATUS[last["status"]])
            self.tags[trial_id] = tags


class TensorBoardSink:
    """Event files per trial; `logged.json` beside them records the epochs written (a resume adds none twice)."""

    def __init__(self, directory: Path):
        self.directory, self.writers = directory, {}
        self.record = directory / "logged.json"
        self.logged: dict[str, list[int]] = json.loads(self.record.read_text()) if self.record.is_file() else {}

    def push(self, trial_id: str, rows: list[dict[str, Any]]) -> None:
        done = set(self.logged.get(trial_id, []))
        new = unlogged(rows, done)
        if not new:
            return
        from tensorboardX import SummaryWriter

        if trial_id not in self.writers:
            self.writers[trial_id] = SummaryWriter(str(self.directory / trial_id))
            if not done:
                self.writers[trial_id].add_text("config", f"{rows[0]['variant']}: {rows[0]['config']}", 0)
        for row in new:
            for key, value in epoch_metrics(row).items():
                self.writers[trial_id].add_scalar(key, value, int(row["epoch"]))
        self.writers[trial_id].flush()
        self.logged[trial_id] = sorted(done | {int(r["epoch"]) for r in new})
        tmp = self.record.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.logged))
        os.replace(tmp, self.record)


class Tracking(tune.Callback):
    """A Tune callback after the results table's: after each report and each trial's end, what the table
    holds goes to every tracker. The sinks open lazily in each process (a restored copy opens its own)."""

    def __init__(self, study_dir: Path, trackers: tuple[str, ...], experiment: str, study_id: str,
                 uri: str | None):
        self.study_dir, self.trackers, self.experiment, self.study_id, self.uri = (study_dir, trackers, experiment,
                                                                                   study_id, uri)
        self._sinks: list[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_sinks": None}

    def sinks(self) -> list[Any]:
        if self._sinks is None:
            self._sinks = [*([MlflowSink(self.uri, self.experiment, self.study_id)] if "mlflow" in self.trackers
                             else []),
                           *([TensorBoardSink(self.study_dir / TENSORBOARD)] if "tensorboard" in self.trackers
                             else [])]
        return self._sinks

    def sync(self) -> None:
        path = self.study_dir / RESULTS
        if not path.is_file():
            return
        table = pd.read_parquet(path).sort_values(["trial_id", "epoch"], kind="stable")
        for trial_id, rows in table.groupby("trial_id", sort=False):
            for sink in self.sinks():
                sink.push(trial_id, rows.to_dict("records"))

    def on_trial_result(self, *args: Any, **kwargs: Any) -> None:
        self.sync()

    def on_trial_complete(self, *args: Any, **kwargs: Any) -> None:
        self.sync()

    def on_trial_error(self, *args: Any, **kwargs: Any) -> None:
        self.sync()
