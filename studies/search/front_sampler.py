"""An Optuna sampler for PET studies (`study.sampler: front`): it models the score only, since a
candidate's trainable-parameter count is known before it trains, and draws the candidate that could add
the most hypervolume to the study's front at its known size (`studies.search.front_model.expected_improvement`).

- The score model is a Gaussian process (scikit-learn) over the variant's completed trials, inputs scaled
  to [0, 1] (log scale for log distributions and for numeric choices spanning 4x or more). With one
  completed trial the prediction is that score with the study's score spread as its uncertainty.
- The front is the whole study's: every completed trial of every variant's Optuna study in the same
  storage (`StudyFront`), so a variant's candidates are judged against what the other variants found.
- Candidates: every point of a discrete space not yet tried (up to `MAX_CANDIDATES`), else random draws.
- No completed trial yet (the variant's enqueued default setting is its first): Optuna's random sampler.
- Ties in expected improvement (e.g. full fine-tuning, whose size adds no area): the highest upper bound
  mean + std wins, then the sampler's random order.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from studies.search.front_model import expected_improvement, front_points

MAX_CANDIDATES = 4096
RANDOM_CANDIDATES = 512
MIN_SPREAD = 3.0  # score points: the least uncertainty of a prediction from one completed trial


class StudyFront:
    """The (trainable params, score) of every completed trial of the study's variants: the Optuna studies
    named `<prefix><variant>` in one storage (picklable, so Tune can checkpoint the searcher)."""

    def __init__(self, storage: optuna.storages.BaseStorage, prefix: str):
        self.storage, self.prefix = storage, prefix

    def __call__(self) -> tuple[np.ndarray, np.ndarray]:
        points = [t.values for s in self.storage.get_all_studies() if s.study_name.startswith(self.prefix)
                  for t in self.storage.get_all_trials(self.storage.get_study_id_from_name(s.study_name), deepcopy=False, states=(TrialState.COMPLETE,))]
        scores, params = (np.array([v[k] for v in points], dtype=float) for k in (0, 1))
        return params, scores


class FrontSampler(optuna.samplers.BaseSampler):
    """See the module docstring. `size_of(params)`: a candidate's trainable parameters (Optuna params ->
    number, raising for an incomplete or invalid point); `front()`: the study's completed (params, scores);
    `reference`: the hypervolume box's (params, score) corner, the size of the whole model and score 0;
    `max_size`: the study's params budget (`study.max_params`): a larger candidate would only be skipped,
    so it is never drawn."""

    def __init__(self, size_of: Callable[[dict[str, Any]], float], front: Callable[[], tuple[np.ndarray, np.ndarray]],
                 reference: tuple[float, float], seed: int | None = None, max_size: float | None = None):
        self.size_of, self.front, self.reference, self.max_size = size_of, front, reference, max_size
        self.rng = np.random.default_rng(seed)
        self.fallback = optuna.samplers.RandomSampler(seed=seed)
        self._model: tuple[tuple, GaussianProcessRegressor] | None = None  # (completed trials, their fit)

    def reseed_rng(self) -> None:
        self.rng = np.random.default_rng()
        self.fallback.reseed_rng()

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return optuna.search_space.intersection_search_space(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if not done or not search_space:
            return {}
        tried = {_key(t.params) for t in study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)) if t.number != trial.number}
        candidates = [c for c in self._candidates(search_space) if _key(c) not in tried]
        sized = [(c, s) for c in candidates
                 if (s := self._size(c)) is not None and (self.max_size is None or s <= self.max_size)]
        if not sized:
            return {}
        mean, std = self._predict(search_space, done, [c for c, _ in sized])
        gain = expected_improvement([s for _, s in sized], mean, std, front_points(*self.front()), self.reference)
        order = np.lexsort((self.rng.random(len(sized)), -(mean + std), -np.round(gain, 9)))
        return sized[order[0]][0]

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: BaseDistribution) -> Any:
        return self.fallback.sample_independent(study, trial, param_name, param_distribution)

    def _score_model(self, space: dict[str, BaseDistribution], done: list[FrozenTrial]) -> GaussianProcessRegressor:
        """The score's Gaussian process, fitted again only when the completed trials changed: between two
        completions a search draws many candidates (one per trial stopped early), all from the same data."""
        key = (tuple(space), tuple(t.number for t in done))
        model = getattr(self, "_model", None)  # a sampler pickled before the cache existed has none
        if model is None or model[0] != key:
            self._model = (key, _fit(space, done))
        return self._model[1]

    def _size(self, params: dict[str, Any]) -> float | None:
        try:
            return float(self.size_of(params))
        except Exception:  # noqa: BLE001 - a point the space cannot build (conditional or invalid): not a candidate
            return None

    def _candidates(self, space: dict[str, BaseDistribution]) -> list[dict[str, Any]]:
        grids = [_grid(d) for d in space.values()]
        if all(g is not None for g in grids) and math.prod(len(g) for g in grids) <= MAX_CANDIDATES:
            return [dict(zip(space, values)) for values in itertools.product(*grids)]
        return [{name: _draw(d, self.rng) for name, d in space.items()} for _ in range(RANDOM_CANDIDATES)]

    def _predict(self, space: dict[str, BaseDistribution], done: list[FrozenTrial],
                 candidates: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
        y = np.array([t.values[0] for t in done], dtype=float)
        scores = self.front()[1]
        spread = max(MIN_SPREAD, float(np.std(scores)) if len(scores) > 1 else 0.0)
        if len(done) < 2:
            return np.full(len(candidates), y.mean()), np.full(len(candidates), spread)
        xc = np.array([[_unit(d, p[n]) for n, d in space.items()] for p in candidates])
        with np.errstate(all="ignore"):
            mean, std = self._score_model(space, done).predict(xc, return_std=True)
        return mean, np.maximum(std, 1e-6)


def _fit(space: dict[str, BaseDistribution], done: list[FrozenTrial]) -> GaussianProcessRegressor:
    """The Gaussian process of the score over the completed trials, inputs on [0, 1]."""
    x = np.array([[_unit(d, t.params[n]) for n, d in space.items()] for t in done])
    y = np.array([t.values[0] for t in done], dtype=float)
    kernel = ConstantKernel(1.0, (1e-2, 1e2)) * Matern(np.full(len(space), 0.5), (0.05, 20.0), nu=2.5) \
        + WhiteKernel(0.05, (1e-4, 1.0))
    gp = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=0)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fit on 2-4 points often ends at a kernel bound
        return gp.fit(x, y)


def _key(params: dict[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def _grid(d: BaseDistribution) -> list[Any] | None:
    """Every value of a discrete distribution (None for a continuous one)."""
    if isinstance(d, CategoricalDistribution):
        return list(d.choices)
    if isinstance(d, IntDistribution) and not d.log and (d.high - d.low) // d.step < 256:
        return list(range(d.low, d.high + 1, d.step))
    return None


def _draw(d: BaseDistribution, rng: np.random.Generator) -> Any:
    if isinstance(d, CategoricalDistribution):
        return d.choices[rng.integers(len(d.choices))]
    u = rng.random()
    low, high = (math.log(d.low), math.log(d.high)) if d.log else (d.low, d.high)
    value = math.exp(low + u * (high - low)) if d.log else low + u * (high - low)
    if isinstance(d, IntDistribution):
        return int(min(d.high, max(d.low, round((value - d.low) / d.step) * d.step + d.low)))
    return float(value)


def _unit(d: BaseDistribution, value: Any) -> float:
    """A parameter value on [0, 1]: log scale for log distributions and wide numeric choices; a
    non-numeric choice by its position."""
    if isinstance(d, CategoricalDistribution):
        numeric = all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in d.choices)
        if not numeric:
            return d.choices.index(value) / max(1, len(d.choices) - 1)
        low, high = min(d.choices), max(d.choices)
        wide = low > 0 and high / low >= 4
        low, high, v = (math.log(low), math.log(high), math.log(value)) if wide else (low, high, value)
    else:
        log = isinstance(d, (FloatDistribution, IntDistribution)) and d.log
        low, high, v = (math.log(d.low), math.log(d.high), math.log(value)) if log else (d.low, d.high, value)
    return 0.0 if high == low else (v - low) / (high - low)
