"""What a study knows about the efficiency-effectiveness front before a trial ends, and the two questions
the search asks of it. A candidate's trainable-parameter count is known before it trains, so of the
two objectives only the score is uncertain:

- `expected_improvement`: how much hypervolume a candidate of known size could add, given a predicted
  score (mean and std). The sampler (`studies.search.front_sampler`) draws the candidate that maximises it.
- `CurveRule`: whether a running trial can still reach the front at its size, judged by the finished
  trials' learning curves (`FrontStopping` in `studies.search.schedulers` asks it at every epoch).

Plain numbers in, plain answers out: no Tune or Optuna here, so a simulated search (benchmarks, tests)
drives exactly the rule and the acquisition that a study uses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.stats import norm

from analysis.pareto import pareto_front


def front_points(params: npt.ArrayLike, scores: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """The front of finished points (minimise params, maximise score), sorted by params."""
    p, s = np.asarray(params, dtype=float), np.asarray(scores, dtype=float)
    on = pareto_front(p, s) if len(p) else np.zeros(0, bool)
    order = np.argsort(p[on], kind="stable")
    return p[on][order], s[on][order]


def dominated(params: float, score: float, front: tuple[np.ndarray, np.ndarray]) -> bool:
    """Whether some front point has at most `params` and at least `score`: a point there adds nothing."""
    fp, fs = front
    return bool(np.any((fp <= params) & (fs >= score)))


def expected_improvement(params: npt.ArrayLike, mean: npt.ArrayLike, std: npt.ArrayLike,
                         front: tuple[np.ndarray, np.ndarray], reference: tuple[float, float],
                         steps: int = 256) -> np.ndarray:
    """Expected hypervolume improvement of candidates of known `params` whose score is N(mean, std), over
    `front` inside the box params <= reference[0], score >= reference[1].

    A candidate scoring y adds, at every score level t <= y, the params strip between it and the cheapest
    front point scoring at least t: HVI(y) = integral from ref to y of max(0, m(t) - params) dt. So its
    expectation is the integral of that width times P(score >= t), taken here on a grid of score levels."""
    p, mu, sd = (np.atleast_1d(np.asarray(a, dtype=float)) for a in (params, mean, std))
    fp, fs = front
    ref_p, ref_s = reference
    top = max(float(np.max(mu + 5 * sd)), float(fs.max()) if fs.size else ref_s) + 1e-9
    levels = np.linspace(ref_s, top, steps)
    # m(t): params of the cheapest front point scoring >= t (ref_p where none does)
    cheapest = np.array([fp[fs >= t].min() if np.any(fs >= t) else ref_p for t in levels])
    width = np.clip(cheapest[None, :] - p[:, None], 0.0, None)
    reach = norm.sf(levels[None, :], loc=mu[:, None], scale=np.maximum(sd, 1e-9)[:, None])
    return np.trapezoid(width * reach, levels, axis=1)


@dataclass
class CurveRule:
    """Stop a trial that cannot reach the front at its size, judged by the learning curves seen so far.

    At epoch e (grace_period <= e < max_epochs) a trial's best possible final score is its score now plus
    the largest gain from epoch e to the end among the finished trials of its group (its variant: curve
    shapes differ between methods, BitFit's still jump in the last epoch where full fine-tuning's have
    flattened, so other methods' curves are no evidence), plus `margin` (seed noise). If a
    finished point with no more parameters already scores that much, the trial is stopped. Two guards keep
    the rule from being fooled by a slow start (the warm-up trap: a run weak after epoch 1 that ends on the
    front): it decides nothing before `min_curves` curves of the group have finished, and a trial that improved since
    its previous epoch by more than any finished trial did over the same epoch goes on, since the curves
    seen do not cover it.

    `add_report` records one epoch of a trial; `finish` marks a trial whose curve is complete (its last
    score joins the front); `should_stop` is the decision at the trial's latest epoch."""

    max_epochs: int
    grace_period: int = 1
    margin: float = 1.0
    min_curves: int = 2
    curves: dict[str, dict[int, float]] = field(default_factory=dict)
    sizes: dict[str, float] = field(default_factory=dict)
    groups: dict[str, str] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)

    def add_report(self, trial_id: str, epoch: int, params: float, score: float, group: str = "") -> None:
        self.sizes[trial_id], self.groups[trial_id] = float(params), group
        if np.isfinite(score):
            self.curves.setdefault(trial_id, {})[int(epoch)] = float(score)

    def finish(self, trial_id: str) -> None:
        """A trial that reached its last epoch: its curve and final point count from now on."""
        if self.max_epochs in self.curves.get(trial_id, {}):
            self.finished.add(trial_id)

    def add_finished(self, trial_id: str, params: float, curve: dict[int, float], group: str = "") -> None:
        """A trial finished elsewhere (an earlier phase, a resumed study): its curve and point count too."""
        for epoch, score in curve.items():
            self.add_report(trial_id, epoch, params, score, group)
        self.finish(trial_id)

    def front(self) -> tuple[np.ndarray, np.ndarray]:
        return front_points([self.sizes[t] for t in self.finished],
                            [self.curves[t][self.max_epochs] for t in self.finished])

    def best_final(self, trial_id: str, epoch: int) -> float | None:
        """The highest final score the finished curves allow the trial from `epoch` on, or None while the
        curves cannot tell (too few, or the trial outruns them)."""
        curve = self.curves.get(trial_id, {})
        done = [self.curves[t] for t in self.finished if epoch in self.curves[t]
                and self.groups.get(t) == self.groups.get(trial_id)]
        if epoch not in curve or len(done) < self.min_curves:
            return None
        if epoch - 1 in curve:
            steps = [c[epoch] - c[epoch - 1] for c in done if epoch - 1 in c]
            if steps and curve[epoch] - curve[epoch - 1] > max(steps):
                return None
        return curve[epoch] + max(c[self.max_epochs] - c[epoch] for c in done) + self.margin

    def should_stop(self, trial_id: str, epoch: int) -> bool:
        if not self.grace_period <= epoch < self.max_epochs:
            return False
        best = self.best_final(trial_id, epoch)
        return best is not None and dominated(self.sizes[trial_id], best, self.front())
