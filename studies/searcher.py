"""What decides a study's trials: one Optuna searcher per variant (each its own Optuna study), all of
them side by side in one Tune experiment, and early stopping that compares a trial with its own
variant's trials only.

Fidelity: a trial stopped early by ASHA has only a low-fidelity score. It is told to Optuna as
PRUNED (never as a finished point), so Optuna learns only from full-fidelity runs. Off-the-shelf
OptunaSearch would tell its last score as if the run had finished; `FidelityAwareOptunaSearch` fixes that.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from studies.trial import SKIPPED, trial_config


class FidelityAwareOptunaSearch(OptunaSearch):
    """OptunaSearch that tells Optuna the truth about early stopping and failures: a trial that did
    not reach full fidelity is PRUNED, a failed or over-budget trial FAILED, and a trial already
    finished in the Optuna storage (e.g. told before a driver crash) is never told again.

    A trial asked just before the driver died can be in Optuna's storage (written at once) but not in
    Tune's saved searcher state (written now and then): it stays RUNNING, owned by no Tune trial. The
    resumed search's next trial takes it over, with its parameters, instead of asking a new one, so the
    Optuna study ends with one trial per Tune trial."""

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if trial_id not in self._ot_trials:
            orphan = self._orphan()
            if orphan is not None:
                self._ot_trials[trial_id] = orphan
        return super().suggest(trial_id)

    def _orphan(self) -> optuna.Trial | None:
        owned = {t._trial_id for t in self._ot_trials.values()}
        for frozen in self._ot_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            if frozen._trial_id not in owned:
                return optuna.Trial(self._ot_study, frozen._trial_id)
        return None

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self._completed_trials or trial_id not in self._ot_trials:
            return
        ot_trial = self._ot_trials[trial_id]
        stored = self._ot_study._storage.get_trial(ot_trial._trial_id)
        if stored.state.is_finished():
            self._completed_trials.add(trial_id)
            return
        values, state = None, optuna.trial.TrialState.FAIL
        if not error and result and result.get("status") != SKIPPED:
            if result.get("fidelity", 0.0) >= 1.0 and np.isfinite(result.get("score", np.nan)):
                values, state = [result["score"], result["params"]], optuna.trial.TrialState.COMPLETE
            else:
                state = optuna.trial.TrialState.PRUNED
        self._ot_study.tell(ot_trial, values, state=state)
        self._completed_trials.add(trial_id)


class VariantsSearch(Searcher):
    """The variants' searchers side by side in one Tune experiment, so that a slot freed by one
    variant's last trial goes to the next variant's first instead of idling until the variant ends.

    Variants are served in order, each up to its number of trials: a variant's trials still start one
    after another, so its sampler learns from its earlier trials as it would alone. Every result goes
    back to the searcher of the variant that suggested the trial."""

    def __init__(self, searchers: dict[str, Searcher], trials: dict[str, int], metric: Any, mode: Any):
        super().__init__(metric=metric, mode=mode)
        self.searchers, self.left = searchers, dict(trials)
        self.owner: dict[str, str] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        for name, left in self.left.items():
            if left <= 0:
                continue
            config = self.searchers[name].suggest(trial_id)
            if config == Searcher.FINISHED:
                self.left[name] = 0
                continue
            if config is not None:
                self.left[name] -= 1
                self.owner[trial_id] = name
                return config
        return Searcher.FINISHED if not any(n > 0 for n in self.left.values()) else None

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self.owner:
            self.searchers[self.owner[trial_id]].on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class PerVariantScheduler(FIFOScheduler):
    """A scheduler of its own per variant (`make()`, e.g. ASHA): a trial's early-stopping decisions
    compare it with trials of its own variant, as when each variant had an experiment of its own,
    never a PET configuration with full fine-tuning. Trials start in the order they came (FIFO)."""

    def __init__(self, make: Callable[[], TrialScheduler]):
        super().__init__()
        self.make = make
        self.schedulers: dict[str, TrialScheduler] = {}

    def _of(self, trial: Any) -> TrialScheduler:
        name = trial_config(trial.config)["search"]
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
