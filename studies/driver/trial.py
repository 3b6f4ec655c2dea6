"""The Tune trial function: a trial trains in its own process (`train.runner` trial, the default for one
worker) or waits on a Ray Train worker group (`workers`, for DDP). Module import stays light (no
transformers, no model code): a worker-group trial never needs them, and an in-process trial imports
them once per process, which then serves the study's next trials (Tune's `reuse_actors`).

Each trial's output (progress, warnings, the caption tokenizer's) goes to its own log, `trial_log_path`: the
study's console shows one line per trial and the table's `log_path` says where the rest is."""

from __future__ import annotations

import functools
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from analysis.results_contract import SKIPPED
from analysis.study_layout import LOGS, trial_log_path
from studies.plan.trial_run import trial_run
from vlpet.output import output_to
from vlpet.train.ray_trainer import make_trainer

if TYPE_CHECKING:
    from vlpet.train.config import RunSpec


def run_trial(config: dict[str, Any], max_params: int | None, train_storage: str, in_process: bool,
              study_dir: str | None = None, home: str | None = None) -> None:
    """Skip a configuration over the parameter budget (no compute spent), else train it, reporting every
    epoch to Tune with its checkpoint. A retried or resumed trial continues from its latest checkpoint.
    With `study_dir`, the trial's output goes to its log there (`trial_log_path`), uploaded to the study's
    `home` (`studies.storage.study_home`) when the trial ends: the node that ran it may not be the driver's."""
    submitted_at = time.time()
    run = trial_run(config)
    if max_params is not None and run["trainable"] > max_params:
        tune.report({"status": SKIPPED, "epoch": 0, "fidelity": 0.0, "score": 0.0, "params": run["trainable"],
                     "total_params": run["total"], "params_pct": run["params_pct"]})
        return
    trial_id = tune.get_context().get_trial_id()
    log = trial_log_path(study_dir, trial_id) if study_dir else None
    try:
        if in_process:
            with output_to(log):
                train_in_process(run["spec"], submitted_at)
            return
        # a worker group: its checkpoints live under the run name (the trial id), its reports reach Tune
        # through TuneReportCallback, its workers write to the trial's log
        make_trainer(run["spec"], train_storage, f"trial_{trial_id}", callbacks=[TuneReportCallback()],
                     log_path=log).fit()
    finally:
        if log and home:
            upload_logs(log, home)


def upload_logs(log: Path, home: str) -> None:
    """Upload a trial's log (and its workers' `.rank<k>` logs written on this node) to the study's home. A
    failed upload costs the log, not the trial."""
    from studies.storage.study_home import join, upload

    for path in sorted(log.parent.glob(f"{log.stem}*.log")):
        try:
            upload(path, join(home, LOGS, path.name))
        except OSError as err:
            print(f"warning: could not upload {path} to the study's home ({err})", file=sys.stderr)


def train_in_process(spec: RunSpec, submitted_at: float) -> None:
    """Train in this trial process on the trial's own resources (its CPUs; its GPU, made visible by Ray
    as device 0), with checkpoints in the trial's Tune storage, where a retried or restored trial finds
    them. The backbone is loaded once per process and copied for every trial."""
    import torch

    from vlpet.train.loop import WorkerContext
    from vlpet.train.ray_trainer import train_and_report

    device = torch.device("cuda" if spec.train.gpus_per_worker > 0 else "cpu")
    ctx = WorkerContext(device=device, backbones=_process_backbones())
    train_and_report(spec, ctx, tune.report, tune.Checkpoint, tune.get_checkpoint(),
                     {"submitted_at": submitted_at, "worker_started_at": submitted_at})


@functools.cache
def _process_backbones() -> Any:
    """This process's BackboneCache, shared by the trials it serves."""
    from vlpet.train.loop import BackboneCache

    return BackboneCache()
