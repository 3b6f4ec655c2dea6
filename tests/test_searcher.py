"""The per-variant Optuna searches (studies/search/searcher.py): fidelity-aware telling, resume after a
driver crash, distinct draws, the sampler by budget."""

from __future__ import annotations

import json
import pickle

import optuna
import pytest

from studies.search.front_sampler import FrontSampler
from studies.search.searcher import OptunaVariantSearch, optuna_sampler, variant_seed


def unit_space(trial) -> dict:
    return {"x": trial.suggest_float("x", 0, 1)}


def searcher(storage: str | None = None, space=unit_space, sampler=None, name: str = "s") -> OptunaVariantSearch:
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, sampler=sampler,
                                directions=["maximize", "minimize"])
    return OptunaVariantSearch(space, study)


def test_fidelity_aware_search_never_tells_a_low_fidelity_score():
    search = searcher()
    for tid in ("a", "b", "c", "d"):
        search.suggest(tid)
    search.on_trial_complete("a", {"score": 50.0, "params": 10, "fidelity": 1.0})
    search.on_trial_complete("b", {"score": 99.0, "params": 1, "fidelity": 0.5})  # stopped early: pruned
    search.on_trial_complete("c", None, error=True)
    search.on_trial_complete("d", {"score": 0.0, "params": 10**9, "status": "skipped_budget", "fidelity": 0.0})
    search.on_trial_complete("a", {"score": 1.0, "params": 1, "fidelity": 1.0})  # told once only
    trials = search.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "FAIL", "FAIL"]
    assert trials[0].values == [50.0, 10]
    assert [t.values for t in search.study.best_trials] == [[50.0, 10]]


def test_resumed_search_takes_over_the_trial_its_driver_asked_before_dying(tmp_path):
    """The driver died after Optuna stored trial 1 (RUNNING) but before Tune saved its searcher: the resumed
    searcher's next trial runs trial 1's parameters instead of asking a new one."""
    storage = f"sqlite:///{tmp_path / 'o.db'}"
    before = searcher(storage)
    before.suggest("a")
    before.on_trial_complete("a", {"score": 1.0, "params": 1, "fidelity": 1.0})
    saved = pickle.dumps(before)  # what Tune saved after "a"
    asked = before.suggest("b")  # ... and the driver dies: "b" is in Optuna only
    resumed = pickle.loads(saved)
    assert resumed.suggest("c") == asked
    resumed.on_trial_complete("c", {"score": 2.0, "params": 1, "fidelity": 1.0})
    assert [t.state.name for t in resumed.study.trials] == ["COMPLETE", "COMPLETE"]
    # no orphan left: a new trial (the restored sampler replays its saved random state, so its first draw
    # repeats "b"'s point: told FAIL as a duplicate and drawn again)
    assert resumed.suggest("d") != asked
    assert [t.number for t in resumed.study.trials if "duplicate_of" not in t.user_attrs] == [0, 1, 3]


def grid_space(trial) -> dict:
    return {"rank": trial.suggest_categorical("rank", [4, 8, 16]), "lr": trial.suggest_categorical("lr", [1e-3, 3e-3])}


@pytest.mark.parametrize("sampler", ["tpe", "gp", "random"])
def test_concurrent_trials_and_variants_never_receive_identical_configurations(sampler):
    """Six trials asked at once from a 6-point space get the 6 points; the space exhausted, a 7th is a
    repeat after a bounded number of redraws; two variants of one study seed draw different sequences."""
    draws = {}
    for variant in ("vlpet-small", "vlpet-large"):
        search = searcher(space=grid_space, name=variant, sampler=optuna_sampler(sampler, variant_seed(0, variant), 6))
        draws[variant] = [search.suggest(f"{variant}-{k}") for k in range(6)]
        assert len({json.dumps(d, sort_keys=True) for d in draws[variant]}) == 6
        search.suggest(f"{variant}-extra")
        duplicates = [t for t in search.study.trials if "duplicate_of" in t.user_attrs]
        assert all(t.state.name == "FAIL" for t in duplicates)
        assert len(duplicates) <= 5 * OptunaVariantSearch.MAX_REDRAWS
    assert draws["vlpet-small"] != draws["vlpet-large"]
    assert variant_seed(0, "vlpet-small") != variant_seed(0, "vlpet-large") != variant_seed(1, "vlpet-large")


def test_sampler_auto_follows_the_budget():
    front = FrontSampler(len, lambda: ([], []), (1.0, 0.0))
    assert optuna_sampler("auto", 0, 12, front) is front
    assert isinstance(optuna_sampler("auto", 0, 200), optuna.samplers.TPESampler)
    assert optuna_sampler("tpe", 0, 12)._constant_liar
