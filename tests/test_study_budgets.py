"""The study budgets the README documents, end to end on a tiny VL-BART: `max_params` (a configuration over
it is recorded as skipped and never trained), `max_trials` (caps the search), `seeds` (the front re-run with
a second training seed), the budgets that end a study early, `gpu_hours` and `time_budget_s`, and front
early stopping stopping a hopeless trial (scripted curves: it stops for certain, whatever the sampler draws)."""

from __future__ import annotations

import json

import pytest

from analysis.results_contract import COMPLETED, PRUNED, SEARCH, SEEDS, SKIPPED
from studies.plan.study_config import study_from_dict
from tests.test_study import final_rows, study_dict


def tiny_study(bench, tokenizer_dir, **study) -> dict:
    data = study_dict(bench, tokenizer_dir, variants=["vlpet-large"], early_stopping="none", paper_reference=False,
                      max_concurrent_trials=2, **study)
    data["run"]["train"]["epochs"] = 1
    return data


@pytest.mark.slow
def test_max_params_max_trials_and_seeds_shape_the_study(ray_local, bench, tokenizer_dir, tmp_path):
    """The variant's first trial (its default, rank 8) is over a budget that rank 4 meets: recorded as
    skipped with no epoch trained; 5 trials asked, 3 allowed by max_trials; every completed configuration
    on the front gets a second seed."""
    from studies.driver.study import run_study

    data = tiny_study(bench, tokenizer_dir, trials_per_variant=5, max_trials=3, seeds=2)
    data["search"]["vlpet"].update(rank={"choice": [8, 4]}, decoder_rank={"choice": [4]})
    unbounded = study_from_dict(data)
    sizes = {point["rank"]: unbounded.params_of(unbounded.trial_spec("vlpet-large", point)).trainable
             for point in unbounded.space_points("vlpet-large")}
    assert sizes[4] < sizes[8]  # the other parameters at their first values
    data["study"]["max_params"] = sizes[4]
    table = run_study(study_from_dict(data), tmp_path / "study")
    final = final_rows(table)
    search = final[final["phase"] == SEARCH]
    assert len(search) == 3, search  # max_trials, not trials_per_variant
    skipped = search[search["status"] == SKIPPED]
    assert len(skipped) >= 1 and json.loads(skipped["config"].iloc[0])["rank"] == 8
    assert (skipped["params"] > sizes[4]).all() and (skipped["epoch"] == 0).all()  # never trained
    trained = final[final["status"] == COMPLETED]
    assert len(trained) >= 1 and (trained["params"] <= sizes[4]).all()
    seeds = final[final["phase"] == SEEDS]
    base = study_from_dict(data).template.train.seed
    assert len(seeds) >= 1 and (seeds["seed"] == base + 1).all()
    assert set(seeds["config"]) <= set(search.loc[search["status"] == COMPLETED, "config"])


@pytest.mark.slow
@pytest.mark.parametrize("budget", [{"gpu_hours": 1e-9}, {"time_budget_s": 40.0}], ids=["gpu_hours", "time_budget_s"])
def test_a_spent_compute_budget_ends_the_study_early(ray_local, bench, tokenizer_dir, tmp_path, budget):
    """A budget spent by the first trials: the search stops asking for more (10 one-epoch trials asked, 2
    run at a time, about 10 s each) and keeps what finished; a spent device-hour budget also skips the
    seed re-runs (`time_budget_s` bounds the search alone)."""
    from studies.driver.study import run_study

    data = tiny_study(bench, tokenizer_dir, trials_per_variant=10, seeds=2, **budget)
    table = run_study(study_from_dict(data), tmp_path / "study")
    final = final_rows(table)
    search = final[final["phase"] == SEARCH]
    assert 1 <= len(search) < 10, search[["trial_id", "status", "epoch"]]
    assert (search["status"] == COMPLETED).any()  # what finished is kept
    stopped = search[search["status"] != COMPLETED]  # the trials the budget cut: closed, saying why
    assert (stopped["status"] == PRUNED).all() and stopped["error"].str.contains("compute budget").all()
    if "gpu_hours" in budget:
        assert (final["phase"] == SEARCH).all()  # no seed re-runs once the device hours are spent
    assert not table.duplicated(["trial_id", "epoch"]).any()



@pytest.mark.slow
def test_front_early_stopping_stops_a_hopeless_trial_and_tells_optuna(ray_local, bench, tokenizer_dir, tmp_path):
    """Four learning rates, two of them hopeless (a flat curve), one trial at a time: whatever order the
    sampler draws them in, a hopeless one comes third or fourth, when two curves have finished, and the
    front rule stops it at epoch 1 (10 + the largest gain seen + 1 point of noise is below the finished 80 at
    the same size). The table closes it as pruned below full fidelity and Optuna holds it as PRUNED."""
    import optuna
    from ray import tune

    from studies.driver.study import Study
    from studies.search.searcher import trials_per_variant

    def scripted(config: dict) -> None:
        """Report a scripted learning curve instead of training: 50, 60, 70, 80 for a learning rate >= 1e-4,
        a flat 10 below (hopeless), at the trial's true size (defined here: Ray pickles it by value)."""
        import time

        from studies.plan.trial_run import trial_run

        run = trial_run(config)
        scores = [50.0, 60.0, 70.0, 80.0] if run["config"]["lr"] >= 1e-4 else [10.0] * 4
        for epoch, score in enumerate(scores, 1):
            time.sleep(0.2)
            tune.report({"epoch": epoch, "max_epochs": 4, "fidelity": epoch / 4, "score": score,
                         "params": run["trainable"], "total_params": run["total"], "params_pct": run["params_pct"]})

    data = tiny_study(bench, tokenizer_dir, trials_per_variant=4)
    data["study"].update(early_stopping="front", grace_period=1, max_concurrent_trials=1)
    data["search"]["vlpet"] = {"lr": {"choice": [1.0e-3, 2.0e-3, 1.0e-7, 2.0e-7]}, "rank": 4, "decoder_rank": 4,
                               "n_heads": 1, "scale": 1.0, "shared": True}  # the learning rate alone is drawn
    data["run"]["train"].update(epochs=4, eval_every=1)
    cfg = study_from_dict(data)
    study = Study(cfg, tmp_path / "study", trainable=tune.with_resources(scripted, {"cpu": 1}))
    study.run_search(trials_per_variant(cfg.settings))
    final = final_rows(study.table.frame())
    assert len(final) == 4 and final["config"].is_unique
    pruned = final[final["status"] == PRUNED]
    assert len(pruned) >= 1, final[["config", "status", "epoch"]]
    assert (pruned["fidelity"] < 1).all() and pruned["config"].map(lambda c: json.loads(c)["lr"] < 1e-4).all()
    trials = optuna.load_study(study_name=f"{cfg.settings.name}-vlpet-large",
                               storage=f"sqlite:///{tmp_path / 'study' / 'optuna.db'}").trials
    states = [t.state.name for t in trials if "duplicate_of" not in t.user_attrs]
    assert states.count("PRUNED") == len(pruned) and states.count("COMPLETE") == 4 - len(pruned)
