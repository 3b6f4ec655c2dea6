"""Early stopping: the Pareto-rank scheduler (MO-ASHA) against Tune's ASHA on the same rung, and the
non-dominated sorting it uses."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from ray.tune.schedulers import TrialScheduler

from analysis.pareto import pareto_ranks
from studies.plan.study_config import StudySettings
from studies.plan.trial_run import RUN
from studies.search.schedulers import ParetoASHA, study_scheduler

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE


def trial(name: str) -> SimpleNamespace:
    """What a scheduler reads of a Tune trial: its id and config (the variant it searches)."""
    return SimpleNamespace(trial_id=name, config={RUN: {"search": "vlpet-large"}})


def decisions(scheduler: TrialScheduler, reports: list[tuple[str, int, float, float]]) -> dict[str, str]:
    """Feed (trial, epoch, params, score) reports in order; each trial's last decision."""
    trials, out = {}, {}
    for name, epoch, params, score in reports:
        if name not in trials:
            trials[name] = trial(name)
            scheduler.on_trial_add(None, trials[name])
        out[name] = scheduler.on_trial_result(None, trials[name], {"epoch": epoch, "params": params, "score": score})
    return out


# rung 1 (epoch 1): two large configurations, then a cheap one with a lower score that no point dominates,
# then a configuration dominated by the second (more params, lower score)
RUNG_1 = [("large", 1, 100_000, 50.0), ("medium", 1, 90_000, 48.0), ("cheap", 1, 10_000, 30.0),
          ("dominated", 1, 95_000, 40.0)]


def settings(early_stopping: str) -> StudySettings:
    return StudySettings(early_stopping=early_stopping, grace_period=1, reduction_factor=2)


def test_a_cheap_configuration_on_the_front_survives_pareto_and_is_cut_by_asha():
    pareto = decisions(study_scheduler(settings("pareto"), max_epochs=4), RUNG_1)
    asha = decisions(study_scheduler(settings("asha"), max_epochs=4), RUNG_1)
    assert pareto == {"large": CONTINUE, "medium": CONTINUE, "cheap": CONTINUE, "dominated": STOP}
    assert asha["cheap"] == STOP and asha["large"] == CONTINUE  # score only: 30 is below the rung's median


def test_pareto_rungs_follow_grace_period_and_reduction_factor():
    scheduler = ParetoASHA(max_t=8, grace_period=1, reduction_factor=2)
    assert list(scheduler.rungs) == [4, 2, 1]
    # the rung's first trial always goes on; a trial past the last rung is never stopped
    assert decisions(scheduler, [("a", 1, 10.0, 1.0), ("a", 2, 10.0, 2.0), ("b", 1, 10.0, 0.5),
                                 ("c", 8, 10.0, 0.0)]) == {"a": CONTINUE, "b": STOP, "c": CONTINUE}


def test_a_nan_score_ranks_last_and_is_stopped():
    out = decisions(ParetoASHA(max_t=4), [("a", 1, 10.0, 5.0), ("b", 1, 1.0, float("nan"))])
    assert out["b"] == STOP


@pytest.mark.parametrize("seed", range(5))
def test_pareto_ranks_peel_fronts_and_rank_extremes_first(seed):
    rng = np.random.default_rng(seed)
    params, scores = rng.integers(1, 20, 30).astype(float), rng.integers(1, 20, 30).astype(float)
    ranks, crowding = pareto_ranks(params, scores)
    for i in range(30):
        dominated_by = [j for j in range(30) if params[j] <= params[i] and scores[j] >= scores[i]
                        and (params[j] < params[i] or scores[j] > scores[i])]
        assert (ranks[i] == 0) == (not dominated_by)
        assert all(ranks[j] < ranks[i] for j in dominated_by)
    for front in set(ranks):
        members = np.flatnonzero(ranks == front)
        for end in (params[members].min(), params[members].max()):  # (exact duplicates: one of them)
            assert np.isinf(crowding[members[params[members] == end]]).any()
