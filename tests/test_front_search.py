"""The search that uses what is known before training: the front early stopping (`CurveRule` and Tune's
`FrontStopping`), the front sampler's choice by expected hypervolume at a known size, and the seed re-runs
of the front alone."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import optuna
import pandas as pd
import pytest
from optuna.distributions import CategoricalDistribution
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from analysis.results_contract import COMPLETED, SEARCH
from studies.driver.study import frontier_configs
from studies.plan.study_config import StudySettings
from studies.plan.trial_run import RUN
from studies.search.front_model import CurveRule, expected_improvement, front_points
from studies.search.front_sampler import FrontSampler
from studies.search.schedulers import FrontStopping, ParetoASHA, study_scheduler

STOP, CONTINUE = TrialScheduler.STOP, TrialScheduler.CONTINUE

# finished curves (epochs 1-4): a cheap and a large configuration; their gains from epoch 1 to the end are
# 18 and 14 points, from epoch 2 on 8 and 6, and their epoch 1 -> 2 steps 10 and 8
FINISHED = {"cheap": (20_000, [50.0, 60.0, 65.0, 68.0]), "large": (100_000, [60.0, 68.0, 72.0, 74.0])}
# the warm-up trap: weak after epoch 1 (dominated there by "cheap", fewer params, 50 > 40), but it improves
# by 18 points in epoch 2, more than any finished trial did, and ends on the front (76 > 74 at fewer params)
SLOW_STARTER = (60_000, [40.0, 58.0, 70.0, 76.0])
# a configuration that cannot reach the front at its size: 45 + the largest gain seen (8) + margin 1 = 54 < 60
HOPELESS = (60_000, [44.0, 45.0, 46.0, 47.0])


def trial(name: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=name, config={RUN: {"search": "vlpet-large"}})


def feed(scheduler: TrialScheduler, name: str, params: float, curve: list[float]) -> list[str]:
    """Report a trial's epochs one by one until the scheduler stops it; its decisions."""
    t = trial(name)
    scheduler.on_trial_add(None, t)
    out = []
    for epoch, score in enumerate(curve, 1):
        out.append(scheduler.on_trial_result(None, t, {"epoch": epoch, "params": params, "score": score}))
        if out[-1] == STOP:
            break
    if len(out) == len(curve) and out[-1] != STOP:
        scheduler.on_trial_complete(None, t, {"epoch": len(curve)})
    return out


def front_stopping(grace: int = 1) -> FrontStopping:
    scheduler = FrontStopping(CurveRule(max_epochs=4, grace_period=grace, margin=1.0))
    for name, (params, curve) in FINISHED.items():
        assert feed(scheduler, name, params, curve) == [CONTINUE] * 4
    return scheduler


def test_a_slow_starter_that_ends_on_the_front_survives_the_front_rule_and_asha_cuts_it():
    # grace 2: at epoch 2 its best possible final by the curves (58 + 8 + 1 = 67) is beaten by "cheap" (68),
    # but it outran every finished curve over epoch 2, so the rule does not trust them and it goes on
    assert feed(front_stopping(grace=2), "slow", *SLOW_STARTER) == [CONTINUE] * 4
    asha = ASHAScheduler(metric="score", mode="max", time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
    for name, (params, curve) in FINISHED.items():
        feed(asha, name, params, curve)
    assert feed(asha, "slow", *SLOW_STARTER)[-1] == STOP  # rung 1: 40 is below both finished trials' 50 and 60
    pareto = ParetoASHA(max_t=4, grace_period=1, reduction_factor=2)
    for name, (params, curve) in FINISHED.items():
        feed(pareto, name, params, curve)
    assert feed(pareto, "slow", *SLOW_STARTER) == [STOP]  # dominated at rung 1 by "cheap"


def test_a_configuration_that_cannot_reach_the_front_at_its_size_is_stopped_at_the_first_decision():
    rule = front_stopping(grace=1).rule
    scheduler = FrontStopping(rule)
    # epoch 1: 44 + 18 + 1 = 63 < 68 of "cheap" (20k params <= 60k): cannot reach the front
    assert feed(scheduler, "hopeless", *HOPELESS) == [STOP]
    assert rule.best_final("hopeless", 1) == pytest.approx(44 + 18 + 1)


def test_the_front_rule_keeps_what_could_reach_the_front_and_decides_nothing_without_curves():
    scheduler = front_stopping(grace=1)
    # cheaper than every finished point: nothing dominates it, whatever its score
    assert feed(scheduler, "tiny", 5_000, [10.0, 11.0, 12.0, 13.0]) == [CONTINUE] * 4
    empty = FrontStopping(CurveRule(max_epochs=4, grace_period=1, margin=1.0))
    assert feed(empty, "first", *HOPELESS) == [CONTINUE] * 4  # no finished curve yet: no evidence, no stop


def test_study_scheduler_builds_the_front_rule_from_the_settings():
    s = study_scheduler(StudySettings(early_stopping="front", grace_period=2, seed_noise=0.5), max_epochs=4)
    assert isinstance(s, FrontStopping)
    assert (s.rule.max_epochs, s.rule.grace_period, s.rule.margin) == (4, 2, 0.5)


def test_expected_improvement_is_the_area_a_point_adds_when_its_score_is_certain():
    front = front_points([20.0, 60.0], [60.0, 70.0])
    # a point at params 40, score 65, box (100, 0): adds (60 - 40) x (65 - 60) = 100
    gain = expected_improvement([40.0, 80.0], [65.0, 65.0], [1e-6, 1e-6], front, (100.0, 0.0), steps=4001)
    assert gain[0] == pytest.approx(100.0, rel=1e-2)
    assert gain[1] == pytest.approx(0.0, abs=1e-6)  # dominated by (60, 70): adds nothing


def test_the_front_sampler_draws_by_the_hypervolume_a_known_size_could_add():
    """Two completed points of one variant; the study's front also holds a point of another variant at 30k
    params scoring 80. Every candidate above 30k params that the score model does not expect to beat 80
    adds little; the sampler must pick a candidate below that size, never one already tried."""
    sizes = {2: 10_000, 4: 20_000, 8: 40_000, 16: 80_000}
    front = ([10_000.0, 80_000.0, 30_000.0], [60.0, 70.0, 80.0])
    sampler = FrontSampler(lambda p: sizes[p["rank"]], lambda: tuple(np.array(v) for v in front),
                           reference=(100_000.0, 0.0), seed=0)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    space = {"rank": CategoricalDistribution([2, 4, 8, 16]), "lr": CategoricalDistribution([0.001, 0.01])}
    for rank, score in ((2, 60.0), (16, 70.0)):
        study.add_trial(optuna.trial.create_trial(params={"rank": rank, "lr": 0.01}, distributions=space,
                                                  values=[score, sizes[rank]]))
    drawn = study.ask(space).params
    assert sizes[drawn["rank"]] < 30_000 and (drawn["rank"], drawn["lr"]) != (2, 0.01), drawn


def test_the_front_sampler_never_draws_a_candidate_over_the_params_budget():
    """Over `max_params` a candidate would only be skipped: with a budget of 20k only ranks 2 and 4 are
    drawn, even where a larger rank could add more hypervolume."""
    sizes = {2: 10_000, 4: 20_000, 8: 40_000, 16: 80_000}
    sampler = FrontSampler(lambda p: sizes[p["rank"]], lambda: (np.array([10_000.0]), np.array([60.0])),
                           reference=(100_000.0, 0.0), seed=0, max_size=20_000)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=sampler)
    space = {"rank": CategoricalDistribution([2, 4, 8, 16]), "lr": CategoricalDistribution([0.001, 0.01])}
    study.add_trial(optuna.trial.create_trial(params={"rank": 2, "lr": 0.01}, distributions=space,
                                              values=[60.0, sizes[2]]))
    drawn = []
    for _ in range(3):
        trial = study.ask(space)
        drawn.append(trial.params["rank"])
        study.tell(trial, [61.0, sizes[trial.params["rank"]]])
    assert set(drawn) <= {2, 4}, drawn


def row(trial_id: str, params: int, score: float, phase: str = SEARCH) -> dict:
    return {"trial_id": trial_id, "phase": phase, "search": "lora", "variant": "lora", "epoch": 4, "fidelity": 1.0,
            "status": COMPLETED, "params": params, "score": score, "config": json.dumps({"rank": params})}


def test_only_the_front_and_what_is_within_seed_noise_of_it_get_a_second_seed():
    table = pd.DataFrame([row("a", 10, 60.0), row("b", 20, 70.0), row("near", 30, 69.5), row("far", 40, 65.0),
                          row("ref", 15, 59.5, phase="reference")])
    picked = lambda noise: sorted(p["config"]["rank"] for p in frontier_configs(table, noise))
    assert picked(0.0) == [10, 20]
    # "near" is 0.5 under "b" (fewer params), the paper's "ref" 0.5 under "a": within 1 point one seed does not
    # establish that they are off the front, so they get a seed too; "far" is 5 under "b" and does not
    assert picked(1.0) == [10, 15, 20, 30]
    # a configuration the search trained twice (its space ran out of unseen points) gets its extra seeds once
    assert picked(0.0) == [10, 20] and sorted(p["config"]["rank"] for p in frontier_configs(
        pd.concat([table, pd.DataFrame([row("b again", 20, 70.0)])]), 0.0)) == [10, 20]


def test_the_report_names_paper_configurations_stopped_because_they_could_not_reach_the_front():
    from analysis import find_fronts
    from analysis.report import summary_lines
    from tests.test_analysis import study

    table = study({"trial_id": "s1", "variant": "lora", "pct": 2.0, "score": 70.0, "wall": 10.0},
                  {"trial_id": "s2", "variant": "lora", "pct": 4.0, "score": 60.0, "status": "pruned", "wall": 10.0},
                  {"trial_id": "r1", "variant": "bitfit", "pct": 3.0, "score": 65.0},
                  {"trial_id": "r2", "variant": "adapter", "pct": 5.0, "score": 50.0, "status": "pruned", "epochs": 2})
    table["phase"] = table["trial_id"].map({"s1": "search", "s2": "search", "r1": "reference", "r2": "reference"})
    lines = summary_lines(find_fronts(table))
    assert ("the paper's hand-picked configurations: the search dominated 1 of 2 (bitfit); 1 more could not "
            "reach its front and were stopped early (adapter)") in lines
    # what stopping saved: s2 stopped after 1 of 3 epochs (2 x 10 s), r2 after 2 (1 x 100 s): 3 of 3 + 1 + 3 + 2 + 3
    # epochs, 120 s
    assert ("early stopping: 2 trials stopped, 3 of 12 epochs not trained (25 % of training every drawn "
            "configuration to the end; 0.03 h)") in lines


def test_a_trial_is_judged_by_its_own_variants_curves_alone():
    """BitFit's curves jump (a gain of 30 after epoch 1); LoRA's do not (at most 6). A LoRA trial at 60 after
    epoch 1 can reach 67 by LoRA's curves, short of the cheaper finished LoRA point's 70: stopped. A variant
    with no finished curve of its own is not judged by the others' (BitFit's would let it reach 91, full
    fine-tuning's flat ones might cut it): it goes on."""
    rule = CurveRule(max_epochs=3, grace_period=1, margin=1.0)
    for name, group, params, curve in (("b1", "bitfit", 1_000, [30.0, 50.0, 60.0]), ("b2", "bitfit", 1_000, [20.0, 40.0, 50.0]),
                                       ("l1", "lora", 5_000, [64.0, 68.0, 70.0]), ("l2", "lora", 9_000, [60.0, 64.0, 66.0])):
        rule.add_finished(name, params, dict(enumerate(curve, 1)), group)
    rule.add_report("l3", 1, 8_000, 60.0, "lora")
    assert rule.best_final("l3", 1) == pytest.approx(60 + 6 + 1) and rule.should_stop("l3", 1)
    rule.add_report("x", 1, 8_000, 60.0, "adapter")
    assert rule.best_final("x", 1) is None and not rule.should_stop("x", 1)
