"""The simulated search of bench/search_peers.py on tiny synthetic tables with known answers: its clock
takes the events in the order the recorded costs put them, and on a table where the cheap configurations
make the front, successive halving by score alone ends with less hypervolume than by Pareto rank."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
import pytest

from bench.simulated_search import hypervolume_curve, project_search, simulate


@dataclass(frozen=True)
class Table:
    """A tabulated problem: `curves[config key]` = per-epoch scores, `costs` = per-epoch cost."""

    name: str
    space: dict[str, optuna.distributions.BaseDistribution]
    max_epochs: int
    curves: dict[Any, list[float]]
    costs: dict[Any, list[float]]
    min_epoch: int = 1

    def size(self, config: dict[str, Any]) -> float:
        return float(config["width"])

    def evaluate(self, config: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        key = tuple(sorted(config.items()))
        return np.array(self.curves[key]), np.cumsum(self.costs[key])


class Queue:
    """A search that suggests the given configurations in order and stops nothing."""

    def __init__(self, configs: list[dict[str, Any]]):
        self.configs = list(configs)
        self.finished: list[tuple[int, int]] = []

    def suggest(self, trial: int) -> dict[str, Any] | None:
        return self.configs.pop(0) if self.configs else None

    def report(self, trial: int, epoch: int, score: float, size: float) -> bool:
        return True

    def finish(self, trial: int, epoch: int, score: float, size: float) -> None:
        self.finished.append((trial, epoch))


def test_the_simulated_clock_takes_events_in_the_order_their_recorded_costs_put_them():
    """Two workers, three 2-epoch trials costing 1, 3 and 0.5 s per epoch: trial 2 starts when trial 0 ends
    (t=2), and at t=3 trial 1's first epoch, scheduled first, comes before trial 2's last; the budget cuts
    what ends after it."""
    configs = [{"width": w} for w in (1, 2, 3)]
    per_epoch = {1: 1.0, 2: 3.0, 3: 0.5}
    table = Table("clock", {"width": optuna.distributions.CategoricalDistribution([1, 2, 3])}, 2,
                  curves={(("width", w),): [10.0 * w, 20.0 * w] for w in per_epoch},
                  costs={(("width", w),): [c, c] for w, c in per_epoch.items()})
    rows = simulate(table, Queue(configs), workers=2, budget=5.0)
    assert list(zip(rows["trial"], rows["epoch"], rows["time"])) == [
        (0, 1, 1.0), (0, 2, 2.0), (2, 1, 2.5), (1, 1, 3.0), (2, 2, 3.0)]  # trial 1's epoch 2 (t=6) is past the budget
    assert rows["final"].tolist() == [False, True, False, False, True]
    assert rows["score"].tolist() == [10.0, 20.0, 30.0, 20.0, 60.0]
    curve = hypervolume_curve(rows, np.array([1.0, 2.0, 3.0]), reference=(4.0, 0.0))
    assert curve.tolist() == [0.0, 20.0 * 3, 20.0 * 2 + 60.0 * 1]  # (1, 20), then (3, 60) too: strips up to size 4


def cheap_front_table() -> Table:
    """Widths 1-24 x 8 learning rates: the final score grows slowly with width (the cheap configurations make
    most of the front), and every curve rises the same way, so that the wide ones always lead a rung."""
    widths, lrs = list(range(1, 25)), [round(0.1 * k, 1) for k in range(1, 9)]
    curves, costs = {}, {}
    for w in widths:
        for lr in lrs:
            final = 40.0 + 10.0 * math.log2(w) - 20.0 * (lr - 0.4) ** 2
            key = (("lr", lr), ("width", w))
            curves[key] = [final * (e / 9) ** 0.5 for e in range(1, 10)]
            costs[key] = [1.0] * 9
    space = {"width": optuna.distributions.CategoricalDistribution(widths),
             "lr": optuna.distributions.CategoricalDistribution(lrs)}
    return Table("cheap-front", space, 9, curves, costs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_halving_by_score_alone_ends_with_less_hypervolume_than_by_pareto_rank(seed):
    """Same random configurations (the sampler's seed), same budget: ASHA on the score stops the narrow
    configurations at every rung because the wide ones outscore them, so its front misses the cheap end;
    the Pareto-rank rungs keep the narrow ones that are on their rung's front."""
    table = cheap_front_table()
    reference = (25.0, 0.0)
    final = {}
    for rule in ("asha", "pareto"):
        search = project_search(table, optuna.samplers.RandomSampler(seed=seed), rule, seed, grace_period=1)
        rows = simulate(table, search, workers=4, budget=150.0)
        assert rows["time"].is_monotonic_increasing and rows["time"].max() <= 150.0
        assert (rows.groupby("trial")["epoch"].max() < 9).any()  # the rule stopped trials
        final[rule] = hypervolume_curve(rows, np.array([150.0]), reference)[0]
    assert final["asha"] < final["pareto"], final
