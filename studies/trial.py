"""The Tune trial function. Kept free of heavy imports (no transformers, no model code): every
trial runs in a fresh process, and only its Train workers need those."""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from vlpet.train.ray_trainer import make_trainer

SKIPPED = "skipped_budget"


def trial_config(config: dict[str, Any]) -> dict[str, Any]:
    """{search, variant, params, spec, trainable, total, params_pct} of a trial: search trials carry it flat,
    seed re-runs under "run"."""
    return config["run"] if "run" in config else config


def run_trial(config: dict[str, Any], max_params: int | None, train_storage: str) -> None:
    """Skip a configuration over the parameter budget (no compute spent), else fit its TorchTrainer,
    whose per-epoch reports reach Tune through TuneReportCallback. A retried or resumed trial (same
    trial id, so same run name) continues from its latest checkpoint."""
    config = trial_config(config)
    if max_params is not None and config["trainable"] > max_params:
        tune.report({"status": SKIPPED, "epoch": 0, "fidelity": 0.0, "score": 0.0, "params": config["trainable"],
                     "total_params": config["total"], "params_pct": config["params_pct"]})
        return
    trial_id = tune.get_context().get_trial_id()
    make_trainer(config["spec"], train_storage, f"trial_{trial_id}", callbacks=[TuneReportCallback()]).fit()
