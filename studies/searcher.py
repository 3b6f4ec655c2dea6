"""What decides a study's trials: one Optuna searcher per variant (each its own Optuna study, sampler
and define-by-run space), all of them side by side in one Tune experiment, and early stopping that
compares a trial with its own variant's trials only.

Fidelity: a trial stopped early by ASHA has only a low-fidelity score. It is told to Optuna as
PRUNED (never as a finished point), so Optuna learns only from full-fidelity runs. Off-the-shelf
OptunaSearch would tell its last score as if the run had finished; `FidelityAwareOptunaSearch` fixes that.
"""

from __future__ import annotations

import functools
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch
from sqlalchemy.exc import SQLAlchemyError

from studies.search_space import sample
from studies.study_config import StudyConfig, StudySettings
from vlpet.errors import ConfigError
from vlpet.results import RUN, SKIPPED, reached_full_fidelity, trial_run

OBJECTIVES = (["score", "params"], ["max", "min"])


class VariantSpace:
    """The Optuna define-by-run space of one variant (picklable, so Tune can checkpoint the searcher).
    Returns the sampled parameters' trial description (`StudyConfig.describe_trial`) under `RUN`."""

    def __init__(self, cfg: StudyConfig, variant_name: str):
        self.cfg, self.variant_name, self.space = cfg, variant_name, cfg.space(variant_name)

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {RUN: self.cfg.describe_trial(self.variant_name, sample(self.space, trial))}


def optuna_storage(cfg: StudyConfig, study_dir: Path) -> optuna.storages.BaseStorage:
    """The Optuna RDB storage: the configured URL, else a SQLite file in the study directory."""
    url = cfg.settings.optuna_storage or f"sqlite:///{study_dir / 'optuna.db'}"
    try:
        return optuna.storages.RDBStorage(url)
    except (SQLAlchemyError, ImportError, ValueError, OSError) as err:  # a bad URL, a missing driver, no access
        raise ConfigError(f"study.optuna_storage={url!r}: cannot open ({type(err).__name__}: {err})") from None


def optuna_sampler(name: str, seed: int, num_samples: int) -> optuna.samplers.BaseSampler:
    """TPE (random for its first third of trials, at least 2) or plain random search."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, num_samples // 3))


def variant_searcher(cfg: StudyConfig, variant_name: str, study_dir: Path, num_samples: int,
                     first_trial: bool) -> FidelityAwareOptunaSearch:
    """The Optuna searcher of one variant: its own Optuna study, its variant's default setting first."""
    s = cfg.settings
    return FidelityAwareOptunaSearch(
        space=VariantSpace(cfg, variant_name), metric=OBJECTIVES[0], mode=OBJECTIVES[1],
        study_name=f"{s.name}-{variant_name}", storage=optuna_storage(cfg, study_dir),
        sampler=optuna_sampler(s.sampler, s.sampler_seed, num_samples),
        points_to_evaluate=[cfg.first_point(variant_name)[0]] if first_trial else None)


def study_searcher(cfg: StudyConfig, trials: dict[str, int], study_dir: Path, first_trials: bool) -> VariantsSearch:
    """Every variant's searcher (`trials`: variant -> its number of trials) in one."""
    searchers = {v: variant_searcher(cfg, v, study_dir, n, first_trials) for v, n in trials.items()}
    return VariantsSearch(searchers, trials, metric=OBJECTIVES[0], mode=OBJECTIVES[1])


def study_scheduler(settings: StudySettings, max_epochs: int) -> TrialScheduler:
    """ASHA per variant over the epochs when `study.asha` is on, else every trial runs to the end."""
    if not settings.asha:
        return FIFOScheduler()
    return PerVariantScheduler(functools.partial(
        ASHAScheduler, metric="score", mode="max", time_attr="epoch", max_t=max_epochs,
        grace_period=settings.grace_period, reduction_factor=settings.reduction_factor))


def trials_per_variant(settings: StudySettings) -> dict[str, int]:
    """Each variant's number of search trials: `trials_per_variant`, in variant order within `max_trials`."""
    trials, remaining = {}, settings.max_trials
    for name in settings.variants:
        num = settings.trials_per_variant if remaining is None else min(settings.trials_per_variant, remaining)
        if num <= 0:
            break
        trials[name] = num
        remaining = None if remaining is None else remaining - num
    return trials


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
            if reached_full_fidelity(result.get("fidelity", 0.0)) and np.isfinite(result.get("score", np.nan)):
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
