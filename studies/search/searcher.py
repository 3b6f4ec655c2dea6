"""What decides a study's trials: one Optuna search per variant (each its own Optuna study, sampler seed
and define-by-run space), all of them side by side in one Tune experiment. Early stopping is in
`studies.search.schedulers`.

Fidelity: a trial stopped early has only a low-fidelity score. It is told to Optuna as PRUNED (never as a
finished point), so Optuna learns only from full-fidelity runs (Tune's own OptunaSearch would tell its
last score as if the run had finished).
"""

from __future__ import annotations

import json
import math
import pickle
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from sqlalchemy.exc import SQLAlchemyError

from analysis.results_contract import SKIPPED, reached_full_fidelity
from analysis.study_layout import OPTUNA_DB
from studies.plan.study_config import StudyConfig, StudySettings
from studies.plan.trial_run import RUN
from studies.search.front_sampler import FrontSampler, StudyFront
from vlpet.errors import ConfigError, redact

OBJECTIVES = (["score", "params"], ["max", "min"])
DIRECTIONS = ["maximize", "minimize"]


class VariantSpace:
    """The Optuna define-by-run space of one variant (picklable, so Tune can checkpoint the searcher).
    Returns the sampled parameters' trial description (`StudyConfig.describe_trial`) under `RUN`."""

    def __init__(self, cfg: StudyConfig, variant_name: str):
        self.cfg, self.variant_name = cfg, variant_name

    def __call__(self, trial: Any) -> dict[str, Any]:
        return {RUN: self.cfg.describe_trial(self.variant_name, self.cfg.draw(self.variant_name, trial))}


class TrialSize:
    """A candidate's trainable parameters from its Optuna parameters (known before training; picklable)."""

    def __init__(self, space: VariantSpace):
        self.space = space

    def __call__(self, params: dict[str, Any]) -> float:
        return float(self.space(optuna.trial.FixedTrial(params))[RUN]["trainable"])


def optuna_storage(cfg: StudyConfig, study_dir: Path) -> optuna.storages.BaseStorage:
    """The Optuna RDB storage: the configured URL (PostgreSQL on clusters), else a SQLite file in the study
    directory. One that cannot be opened is a one-line ConfigError (frontier.py opens it before Ray starts)."""
    url = cfg.settings.optuna_storage or f"sqlite:///{study_dir / OPTUNA_DB}"
    # a server that drops packets would otherwise hang the driver; SQLite takes no such argument
    engine = {"connect_args": {"connect_timeout": 10}} if url.startswith("postgresql") else None
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine)
    except (SQLAlchemyError, ImportError, ValueError, OSError) as err:  # a bad URL, a missing driver, no access
        raise ConfigError(f"study.optuna_storage={shown_url(url)}: cannot open it ({first_line(err)}); "
                          f"{_storage_fix(err)}") from None


def shown_url(url: str) -> str:
    """A database URL as it may be printed: its password masked (`vlpet.errors.redact`)."""
    return redact(url)


def first_line(err: BaseException) -> str:
    """A database error's own message, first line (SQLAlchemy appends SQL and a help link)."""
    cause = getattr(err, "orig", None) or err
    text = str(cause).strip()
    return text.splitlines()[0] if text else type(cause).__name__


def _storage_fix(err: BaseException) -> str:
    if isinstance(err, ImportError) or "psycopg2" in str(err):
        return "install the database driver (pip install 'vlpet-studies[postgres]' for PostgreSQL)"
    return "check the URL (driver://user:password@host:port/database) and that the database server is up"


def variant_seed(seed: int, variant_name: str) -> int:
    """The sampler seed of one variant's search: drawn from the study seed and the variant's name, so that
    variants draw different points and a second study seed draws another sequence for every variant."""
    return int(np.random.SeedSequence([seed, zlib.crc32(variant_name.encode())]).generate_state(1)[0])


def sampler_for_budget(name: str, trials: int) -> str:
    """The sampler `study.sampler: auto` picks for a variant's number of trials: the front sampler below 100
    trials (`studies.search.front_sampler`: a Gaussian process on the score, candidates by the hypervolume they
    could add at their known size; its fits grow with the cube of the trials), TPE from 100 on."""
    if name != "auto":
        return name
    return "front" if trials < 100 else "tpe"


def optuna_sampler(name: str, seed: int, num_samples: int, front: FrontSampler | None = None
                   ) -> optuna.samplers.BaseSampler:
    """The Optuna sampler `name` (`auto`: by budget, `sampler_for_budget`) for a search of `num_samples`
    trials; `front` is the front sampler, built by the caller, which knows the variant's space. Optuna's
    model-based samplers start with random trials, a third of the budget and at least 2; TPE lies about
    running trials (`constant_liar`) so that concurrent trials are drawn apart."""
    name = sampler_for_budget(name, num_samples)
    startup = max(2, num_samples // 3)
    if name == "front":
        return front
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup, warn_independent_sampling=False)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def variant_searcher(cfg: StudyConfig, variant_name: str, study_dir: Path, num_samples: int,
                     first_trial: bool) -> OptunaVariantSearch:
    """The Optuna searcher of one variant: its own Optuna study and sampler seed, its variant's default
    setting first."""
    s = cfg.settings
    space, storage, seed = VariantSpace(cfg, variant_name), optuna_storage(cfg, study_dir), variant_seed(
        s.sampler_seed, variant_name)
    total = cfg.describe_trial(variant_name, cfg.first_point(variant_name)[1])["total"]
    front = FrontSampler(TrialSize(space), StudyFront(storage, f"{s.name}-"), reference=(float(total), 0.0), seed=seed,
                         max_size=s.max_params)
    return OptunaVariantSearch(
        space, optuna.create_study(
            study_name=f"{s.name}-{variant_name}", storage=storage, load_if_exists=True,
            sampler=optuna_sampler(s.sampler, seed, num_samples, front), directions=DIRECTIONS),
        first_params=cfg.first_point(variant_name)[0] if first_trial else None)


def study_searcher(cfg: StudyConfig, trials: dict[str, int], study_dir: Path, first_trials: bool) -> VariantsSearch:
    """Every variant's searcher (`trials`: variant -> its number of trials) in one."""
    searchers = {v: variant_searcher(cfg, v, study_dir, n, first_trials) for v, n in trials.items()}
    return VariantsSearch(searchers, trials)


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


def told_outcome(result: dict[str, Any] | None, error: bool) -> tuple[list[float] | None, TrialState]:
    """What Optuna is told of a finished Tune trial: its (score, params) as COMPLETE only when it reached
    full fidelity with a finite score; PRUNED when it was stopped early; FAIL when it failed or was over
    the params budget (never trained)."""
    if error or not result or result.get("status") == SKIPPED:
        return None, TrialState.FAIL
    if reached_full_fidelity(result.get("fidelity", 0.0)) and np.isfinite(result.get("score", np.nan)):
        return [result["score"], result["params"]], TrialState.COMPLETE
    return None, TrialState.PRUNED


class OptunaVariantSearch(Searcher):
    """One variant's search on its Optuna study, through Optuna's ask-and-tell interface.

    - Distinct draws: a drawn point equal to one of the study's running or finished trials is told FAIL
      (user attribute `duplicate_of`) and drawn again, until the space has no unseen point left.
    - Fidelity: a trial is told COMPLETE only at full fidelity (`told_outcome`), and a trial already
      finished in the storage (e.g. told before a driver crash) is never told again.
    - A trial asked just before the driver died is in Optuna's storage (written at once) but not in
      Tune's saved searcher state (written now and then): it stays RUNNING, owned by no Tune trial. The
      resumed search's next trial takes it over, with its parameters, instead of asking a new one, so the
      Optuna study ends with one trial per Tune trial (besides the duplicates)."""

    MAX_REDRAWS = 20

    def __init__(self, space: Callable[[Any], dict[str, Any]], study: optuna.Study,
                 first_params: dict[str, Any] | None = None):
        super().__init__(metric=OBJECTIVES[0], mode=OBJECTIVES[1])
        self.space, self.study = space, study
        self.numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self.told: set[str] = set()
        if first_params is not None:
            study.enqueue_trial(first_params, skip_if_exists=True)

    def suggest(self, trial_id: str) -> dict[str, Any]:
        number = self.numbers.get(trial_id)
        if number is None:
            number = self._orphan()
        if number is None:
            number, config = self._ask_distinct()
            self.numbers[trial_id] = number
            return config
        self.numbers[trial_id] = number
        return self.space(optuna.trial.FixedTrial(self._trial(number).params, number))

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if trial_id in self.told or trial_id not in self.numbers:
            return
        number = self.numbers[trial_id]
        if not self._trial(number).state.is_finished():
            values, state = told_outcome(result, error)
            self.study.tell(number, values, state=state)
        self.told.add(trial_id)

    def _ask_distinct(self) -> tuple[int, dict[str, Any]]:
        for _ in range(self.MAX_REDRAWS):
            trial = self.study.ask()
            config = self.space(trial)
            seen = {json.dumps(t.params, sort_keys=True): t.number for t in self.study.get_trials(
                deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED))
                if t.number != trial.number}
            duplicate = seen.get(json.dumps(trial.params, sort_keys=True))
            if duplicate is None or len(seen) >= _space_size(trial.distributions):
                return trial.number, config
            trial.set_user_attr("duplicate_of", duplicate)
            self.study.tell(trial, state=TrialState.FAIL)
        return trial.number, config  # a duplicate after MAX_REDRAWS draws: the sampler keeps to a known point

    def _orphan(self) -> int | None:
        owned = set(self.numbers.values())
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return next((t.number for t in running if t.number not in owned), None)

    def _trial(self, number: int) -> optuna.trial.FrozenTrial:
        return self.study.get_trials(deepcopy=False)[number]


def _space_size(distributions: dict[str, optuna.distributions.BaseDistribution]) -> float:
    """How many distinct points the distributions hold (inf with a continuous one)."""
    size = 1.0
    for d in distributions.values():
        if isinstance(d, optuna.distributions.CategoricalDistribution):
            size *= len(d.choices)
        elif isinstance(d, optuna.distributions.IntDistribution) and not d.log:
            size *= (d.high - d.low) // d.step + 1
        else:
            return math.inf
    return size


class VariantsSearch(Searcher):
    """The variants' searchers side by side in one Tune experiment, so that a slot freed by one
    variant's last trial goes to the next variant's first instead of idling until the variant ends.

    Variants are served in order, each up to its number of trials: a variant's trials still start one
    after another, so its sampler learns from its earlier trials as it would alone. Every result goes
    back to the searcher of the variant that suggested the trial."""

    def __init__(self, searchers: dict[str, Searcher], trials: dict[str, int]):
        super().__init__(metric=OBJECTIVES[0], mode=OBJECTIVES[1])
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
