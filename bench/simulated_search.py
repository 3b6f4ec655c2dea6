"""Searches replayed on a benchmark instead of trained: asynchronous parallel workers on a simulated
clock, each epoch costing the benchmark's own recorded time, so a result does not depend on this
machine's speed or load.

A search is a `Search`: it suggests a configuration when a worker is free, hears every epoch's
result and says whether the trial goes on. The project's own searches are driven through the same
interfaces the study's Tune experiment calls (`TuneSearch`: a Ray Tune `Searcher` and `TrialScheduler`,
here `studies.search.searcher.OptunaVariantSearch` and `studies.search.schedulers.study_scheduler`'s schedulers, in the
order Tune's controller calls them); Syne Tune's schedulers through Syne Tune's (`SyneTuneSearch`).

`simulate` returns one row per epoch reported before the budget ran out; `hypervolume_curve` turns the
finished (full-fidelity) rows into the hypervolume reached against simulated time.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
import itertools
from collections.abc import Callable
from datetime import datetime
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np
import optuna
import pandas as pd

from analysis.hypervolume import hypervolume_2d
from studies.plan.trial_run import RUN


class Problem(Protocol):
    """What a benchmark gives a simulated search (bench/peer_problems.py): its space, its epochs, the size
    of a configuration (known before training) and its recorded per-epoch scores and cumulative cost."""

    name: str
    space: dict[str, optuna.distributions.BaseDistribution]
    max_epochs: int
    min_epoch: int
    size: Callable[[dict[str, Any]], float]
    evaluate: Callable[[dict[str, Any]], tuple[np.ndarray, np.ndarray]]


class Search(Protocol):
    """One search: `suggest` a configuration for trial `trial` (None: nothing left to try); `report` one
    epoch's score and whether the trial goes on; `finish` a trial that stopped (early or at its last epoch)."""

    def suggest(self, trial: int) -> dict[str, Any] | None: ...

    def report(self, trial: int, epoch: int, score: float, size: float) -> bool: ...

    def finish(self, trial: int, epoch: int, score: float, size: float) -> None: ...


def simulate(problem: Problem, search: Search, workers: int, budget: float) -> pd.DataFrame:
    """Run `search` on `problem` with `workers` asynchronous workers until the simulated clock passes
    `budget` seconds (or the search has nothing left to suggest and every trial has ended).

    A free worker starts the next suggested trial at once; epoch e of a trial ends cost[e] - cost[e-1]
    seconds after epoch e-1 (cost[0] after its start). Events at the same time are taken in the order they
    were scheduled. Rows: trial, epoch, score, size, time (the clock at the epoch's end), final (the trial
    ended there at its last epoch)."""
    events: list[tuple[float, int, int, int]] = []  # (time, order, trial, epoch)
    order, trials = itertools.count(), itertools.count()
    runs: dict[int, tuple[float, np.ndarray, np.ndarray]] = {}  # trial -> (size, scores, cumulative cost)
    rows = []

    def start(now: float) -> None:
        trial = next(trials)
        config = search.suggest(trial)
        if config is None:
            return
        scores, cost = problem.evaluate(config)
        runs[trial] = (float(problem.size(config)), np.asarray(scores, float), np.asarray(cost, float))
        heapq.heappush(events, (now + max(0.0, float(runs[trial][2][0])), next(order), trial, 1))

    for _ in range(workers):
        start(0.0)
    while events:
        now, _, trial, epoch = heapq.heappop(events)
        if now > budget:
            break
        size, scores, cost = runs[trial]
        score = float(scores[epoch - 1])
        last = epoch >= problem.max_epochs
        rows.append({"trial": trial, "epoch": epoch, "score": score, "size": size, "time": now, "final": last})
        if not last and search.report(trial, epoch, score, size):
            step = max(0.0, float(cost[epoch] - cost[epoch - 1]))
            heapq.heappush(events, (now + step, next(order), trial, epoch + 1))
            continue
        if last:
            search.report(trial, epoch, score, size)
        search.finish(trial, epoch, score, size)
        start(now)
    return pd.DataFrame(rows, columns=["trial", "epoch", "score", "size", "time", "final"])


def hypervolume_curve(rows: pd.DataFrame, times: np.ndarray, reference: tuple[float, float]) -> np.ndarray:
    """The hypervolume of the full-fidelity points finished by each of `times` (reference: the box's
    (size, score) corner), as a study counts it: a trial stopped early has no final point."""
    done = rows[rows["final"]].sort_values("time")
    return np.array([hypervolume_2d(done.loc[done["time"] <= t, "size"], done.loc[done["time"] <= t, "score"],
                                    *reference) for t in times])


# -- the project's searches, through Tune's interfaces ----------------------------------------------------


class ProblemSpace:
    """The define-by-run space of a problem in the study's trial-config shape (`RUN`: the search's name and
    its parameters), so the study's schedulers read the trial's group as they do in a study."""

    def __init__(self, problem: Problem):
        self.problem = problem

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        params = {name: suggest(trial, name, d) for name, d in self.problem.space.items()}
        return {RUN: {"search": self.problem.name, "config": params}}


def suggest(trial: optuna.Trial, name: str, d: optuna.distributions.BaseDistribution) -> Any:
    """One parameter of `trial` from its Optuna distribution."""
    if isinstance(d, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, d.choices)
    if isinstance(d, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
    return trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)


class TuneSearch:
    """A Ray Tune searcher and scheduler driven as Tune's controller drives them: the scheduler hears every
    result first (`on_trial_result`); if it says go on, the searcher hears it too; a trial that stops, early
    or at its last epoch, is completed at both (`on_trial_complete`), the scheduler first. Results carry what
    a study trial reports: epoch, score, params (its size) and fidelity."""

    def __init__(self, searcher: Any, scheduler: Any, max_epochs: int):
        self.searcher, self.scheduler, self.max_epochs = searcher, scheduler, max_epochs
        self.trials: dict[int, SimpleNamespace] = {}
        self.last: dict[int, dict[str, Any]] = {}

    def suggest(self, trial: int) -> dict[str, Any] | None:
        config = self.searcher.suggest(str(trial))
        if config is None:
            return None
        self.trials[trial] = SimpleNamespace(trial_id=str(trial), config=config)
        self.scheduler.on_trial_add(None, self.trials[trial])
        return config[RUN]["config"]

    def report(self, trial: int, epoch: int, score: float, size: float) -> bool:
        from ray.tune.schedulers import TrialScheduler

        result = {"epoch": epoch, "score": score, "params": size, "fidelity": epoch / self.max_epochs}
        self.last[trial] = result
        if self.scheduler.on_trial_result(None, self.trials[trial], result) == TrialScheduler.STOP:
            return False
        self.searcher.on_trial_result(str(trial), result)
        return True

    def finish(self, trial: int, epoch: int, score: float, size: float) -> None:
        self.scheduler.on_trial_complete(None, self.trials[trial], self.last[trial])
        self.searcher.on_trial_complete(str(trial), result=self.last[trial])


@functools.cache
def embedded_settings() -> Any:
    """The embedded study's settings (read once: loading the study checks its whole config)."""
    from studies.plan.study_config import load_study

    return load_study(None).settings


def study_settings(**changes: Any) -> Any:
    """The embedded study's settings with `changes` (e.g. early_stopping, grace_period): the defaults a user
    gets, changed only where the comparison says so."""
    return dataclasses.replace(embedded_settings(), **changes)


def project_search(problem: Problem, sampler: optuna.samplers.BaseSampler | str, early_stopping: str, seed: int,
                   grace_period: int, reduction_factor: int = 3) -> TuneSearch:
    """A search as the study builds it: `OptunaVariantSearch` on an in-memory Optuna study (objectives score
    max, size min) with `sampler` (an Optuna sampler, or "front": the study's `FrontSampler`, judging
    candidates by the hypervolume they could add at their known size against the search's own front), and
    the scheduler `study.early_stopping` names."""
    from studies.search.front_sampler import FrontSampler, StudyFront
    from studies.search.schedulers import study_scheduler
    from studies.search.searcher import DIRECTIONS, OptunaVariantSearch

    storage = optuna.storages.InMemoryStorage()
    if sampler == "front":
        upper = max(problem.size(p) for p in corner_points(problem.space))
        sampler = FrontSampler(problem.size, StudyFront(storage, problem.name),
                               reference=(upper, 0.0), seed=seed)
    study = optuna.create_study(study_name=problem.name, storage=storage, sampler=sampler, directions=DIRECTIONS)
    settings = study_settings(early_stopping=early_stopping, grace_period=grace_period,
                              reduction_factor=reduction_factor)
    scheduler = study_scheduler(settings, problem.max_epochs)
    return TuneSearch(OptunaVariantSearch(ProblemSpace(problem), study), scheduler, problem.max_epochs)


def corner_points(space: dict[str, optuna.distributions.BaseDistribution]) -> list[dict[str, Any]]:
    """Every combination of each parameter's lowest and highest value: where a size that grows or shrinks
    with each parameter is largest."""
    ends = [(d.choices[0], d.choices[-1]) if isinstance(d, optuna.distributions.CategoricalDistribution)
            else (d.low, d.high) for d in space.values()]
    return [dict(zip(space, values)) for values in itertools.product(*ends)]


# -- Syne Tune's schedulers, through Syne Tune's interface ------------------------------------------------


SYNE_TUNE_METRICS = ("neg_score", "size")


class SyneTuneSearch:
    """A Syne Tune scheduler (e.g. MOASHA) driven as Syne Tune's tuner drives it: `suggest` for a new
    trial's configuration, `on_trial_add`, `on_trial_result` for every epoch (its STOP ends the trial),
    `on_trial_complete` at the last epoch. Objectives minimised: the negated score and the size."""

    def __init__(self, scheduler: Any):
        self.scheduler = scheduler
        self.trials: dict[int, Any] = {}

    def suggest(self, trial: int) -> dict[str, Any] | None:
        from syne_tune.backend.trial_status import Trial

        suggestion = self.scheduler.suggest()
        if suggestion is None:
            return None
        self.trials[trial] = Trial(trial_id=trial, config=suggestion.config, creation_time=datetime.now())
        self.scheduler.on_trial_add(self.trials[trial])
        return dict(suggestion.config)

    def report(self, trial: int, epoch: int, score: float, size: float) -> bool:
        from syne_tune.optimizer.scheduler import SchedulerDecision

        result = {"epoch": epoch, "neg_score": -score, "size": size}
        return self.scheduler.on_trial_result(self.trials[trial], result) != SchedulerDecision.STOP

    def finish(self, trial: int, epoch: int, score: float, size: float) -> None:
        if epoch >= self.scheduler.max_t:
            self.scheduler.on_trial_complete(self.trials[trial], {"epoch": epoch, "neg_score": -score, "size": size})


def syne_tune_space(space: dict[str, optuna.distributions.BaseDistribution]) -> dict[str, Any]:
    """An Optuna space in Syne Tune's domains (same ranges, log scales and choices)."""
    from syne_tune import config_space as st

    out = {}
    for name, d in space.items():
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            out[name] = st.choice(list(d.choices))
        elif isinstance(d, optuna.distributions.IntDistribution):
            out[name] = (st.lograndint if d.log else st.randint)(d.low, d.high)
        else:
            out[name] = (st.loguniform if d.log else st.uniform)(d.low, d.high)
    return out


def moasha_search(problem: Problem, seed: int, grace_period: int, reduction_factor: int = 3) -> SyneTuneSearch:
    """Syne Tune's MOASHA (non-dominated sorting priority, one bracket, random configurations)."""
    from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA

    np.random.seed(seed)  # MOASHA draws its configurations from numpy's global generator
    scheduler = MOASHA(syne_tune_space(problem.space), metrics=list(SYNE_TUNE_METRICS), do_minimize=True,
                       time_attr="epoch", max_t=problem.max_epochs, grace_period=grace_period,
                       reduction_factor=reduction_factor, random_seed=seed)
    return SyneTuneSearch(scheduler)
