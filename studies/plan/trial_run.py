"""What a study trial is given: its `TrialRun`, under the config key `RUN` of its Tune trial (search trials,
the paper's configurations and seed re-runs alike)."""

from __future__ import annotations

from typing import Any, TypedDict

from vlpet.train.config import RunSpec

# the config key under which Tune hands a trial its TrialRun
RUN = "run"


class TrialRun(TypedDict):
    """Everything one trial needs, computed on the driver (`studies.plan.study_config.StudyConfig.describe_trial`)."""

    search: str  # the study variant whose search the trial belongs to
    variant: str  # what it runs: the variant, or for `designs` the drawn combination
    config: dict[str, Any]  # the drawn hyperparameters (the results table's `config`; `params` there counts weights)
    spec: RunSpec  # the full run, typed, built once on the driver and passed on as it is
    trainable: int  # trainable parameters, known before training
    total: int
    params_pct: float


def trial_run(config: dict[str, Any]) -> TrialRun:
    """The TrialRun in a Tune trial's config."""
    return config[RUN]
