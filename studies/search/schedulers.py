"""Early stopping of a study's trials (`study.early_stopping`):

    front    stops a trial once it cannot reach the front at its size: its best possible final score, from
             the finished trials' learning curves, is already beaten by a finished configuration with no
             more trainable parameters (`studies.search.front_model.CurveRule`; every epoch from grace_period on)
    pareto   asynchronous successive halving whose rungs promote by Pareto rank in (score, trainable
             params) with NSGA-II's crowding distance breaking ties (MO-ASHA, Schmucker et al. 2021), over
             all variants at once: a cheap configuration is judged by whether it is on the front of the
             rung, not by its score beside larger ones
    asha     Tune's ASHA on the score alone, one per variant (so PET is never cut beside full fine-tuning)
    none     every trial runs to its last epoch
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from analysis.pareto import pareto_ranks
from studies.plan.study_config import StudySettings
from studies.plan.trial_run import trial_run
from studies.search.front_model import CurveRule


def study_scheduler(settings: StudySettings, max_epochs: int) -> TrialScheduler:
    """The scheduler `study.early_stopping` names, over the epochs (`time_attr` = the report's `epoch`)."""
    if settings.early_stopping == "front":
        return FrontStopping(CurveRule(max_epochs, settings.grace_period, settings.seed_noise))
    rungs = {"max_t": max_epochs, "grace_period": settings.grace_period, "reduction_factor": settings.reduction_factor}
    if settings.early_stopping == "pareto":
        return ParetoASHA(**rungs)
    if settings.early_stopping == "asha":
        return PerVariantScheduler(functools.partial(ASHAScheduler, metric="score", mode="max", time_attr="epoch",
                                                     **rungs))
    return FIFOScheduler()


class ParetoASHA(FIFOScheduler):
    """MO-ASHA: rungs at grace_period * reduction_factor**k epochs (below max_t). A trial reaching a rung is
    kept if, among the trials recorded at that rung (itself included), it is in the best
    ceil(n / reduction_factor) by (Pareto rank, crowding), ties with the last kept one kept too; otherwise
    it stops there. Like ASHA, a rung's first trial always goes on, and decisions are never revisited.

    Objectives: the report's `score` (max) and `params` (trainable parameters, min; known before training,
    so it is the same at every rung). A NaN score ranks last."""

    def __init__(self, max_t: int, grace_period: int = 1, reduction_factor: int = 2, time_attr: str = "epoch"):
        super().__init__()
        self.max_t, self.reduction_factor, self.time_attr = max_t, reduction_factor, time_attr
        milestones, m = [], grace_period
        while m < max_t:
            milestones.append(m)
            m *= reduction_factor
        self.rungs: dict[int, dict[str, tuple[float, float]]] = {m: {} for m in reversed(milestones)}

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the objectives are fixed: score and params

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        t = result.get(self.time_attr)
        if t is None or t >= self.max_t:
            return TrialScheduler.CONTINUE
        for milestone, recorded in self.rungs.items():  # the highest rung reached and not yet recorded
            if t < milestone or trial.trial_id in recorded:
                continue
            recorded[trial.trial_id] = (float(result.get("params", np.nan)), float(result.get("score", np.nan)))
            return TrialScheduler.CONTINUE if self.promotable(recorded, trial.trial_id) else TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def promotable(self, recorded: dict[str, tuple[float, float]], trial_id: str) -> bool:
        """Whether `trial_id` is among the rung's best ceil(n / reduction_factor) points (ties kept)."""
        ids = list(recorded)
        params, scores = np.array([recorded[i] for i in ids]).T
        ranks, crowding = pareto_ranks(params, scores)
        keys = sorted(zip(ranks, -crowding))
        last_kept = keys[math.ceil(len(ids) / self.reduction_factor) - 1]
        k = ids.index(trial_id)
        return (ranks[k], -crowding[k]) <= last_kept

    def debug_string(self) -> str:
        return "ParetoASHA: " + ", ".join(f"epoch {m}: {len(r)} trials" for m, r in self.rungs.items())


class FrontStopping(FIFOScheduler):
    """Tune's side of `CurveRule`: every report is recorded (grouped by the trial's study variant), a trial
    whose last epoch arrives joins the front, and a trial that cannot reach the front at its size
    (`CurveRule.should_stop`) stops. Trials
    start in the order they came (FIFO). Objectives as ParetoASHA's: the report's `score` and `params`."""

    def __init__(self, rule: CurveRule, time_attr: str = "epoch"):
        super().__init__()
        self.rule, self.time_attr = rule, time_attr

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the objectives are fixed: score and params

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        epoch = result.get(self.time_attr)
        if epoch is None:
            return TrialScheduler.CONTINUE
        self.rule.add_report(trial.trial_id, int(epoch), float(result.get("params", np.nan)),
                             float(result.get("score", np.nan)), trial_run(trial.config)["search"])
        if epoch >= self.rule.max_epochs:
            self.rule.finish(trial.trial_id)
            return TrialScheduler.CONTINUE
        return TrialScheduler.STOP if self.rule.should_stop(trial.trial_id, int(epoch)) else TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self.rule.finish(trial.trial_id)

    def debug_string(self) -> str:
        return f"FrontStopping: {len(self.rule.finished)} finished curves"


class PerVariantScheduler(FIFOScheduler):
    """A scheduler of its own per variant (`make()`, e.g. ASHA): a trial's early-stopping decisions
    compare it with trials of its own variant, as when each variant had an experiment of its own,
    never a PET configuration with full fine-tuning. Trials start in the order they came (FIFO)."""

    def __init__(self, make: Callable[[], TrialScheduler]):
        super().__init__()
        self.make = make
        self.schedulers: dict[str, TrialScheduler] = {}

    def _of(self, trial: Any) -> TrialScheduler:
        name = trial_run(trial.config)["search"]
        if name not in self.schedulers:
            self.schedulers[name] = self.make()
        return self.schedulers[name]

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # every per-variant scheduler brings its own metric and mode

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        return self._of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        self._of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        self._of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "; ".join(f"{name}: {s.debug_string()}" for name, s in self.schedulers.items())
