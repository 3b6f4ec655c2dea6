"""Search spaces (studies/plan/search_space.py, each method's declared space): every draw a valid run, the
`designs` space over module x gate x lightweight, per-task modules searched."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest

from studies.driver.study import frontier_configs
from studies.plan.search_space import DESIGNS
from studies.plan.study_config import load_study, study_from_dict
from studies.plan.trial_run import RUN
from studies.search.searcher import VariantSpace
from studies.storage.results_table import ResultsTable
from tests.test_study import study_dict
from vlpet.methods import METHODS, method_from_dict
from vlpet.methods.layers import GRANULARITIES
from vlpet.paper_variants import VARIANTS, design_name
from vlpet.train.config import RunSpec

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("method", sorted(METHODS))
def test_search_space_sampling_never_yields_an_invalid_config(bench, tokenizer_dir, method):
    """Property test: 100 random draws of each method's space all build valid runs."""
    variant = {"vlpet": "vlpet-large"}.get(method, method)
    data = study_dict(bench, tokenizer_dir, variants=[variant])
    data["search"] = {}
    cfg = study_from_dict(data)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    space = VariantSpace(cfg, variant)
    for _ in range(100):
        trial = space(study.ask())[RUN]
        spec = RunSpec.from_dict(trial["spec"].to_dict())  # validates every section
        assert trial["trainable"] > 0 and spec.method.method == method
        if method == "vlpet":
            assert spec.method.rank % spec.method.n_heads == 0 and spec.method.rank <= 64


def designs_study(bench: Path, tokenizer_dir: Path, **study):
    """study_dict for the `designs` variant with its default space."""
    data = study_dict(bench, tokenizer_dir, variants=[DESIGNS], **study)
    data["search"] = {}
    return study_from_dict(data)


def test_designs_space_draws_every_combination_and_only_valid_ones(bench, tokenizer_dir):
    """Property test: 200 random draws of module x gate x LW all build valid method configs (a small
    gate always with LW, n only for compacter), cover every module, gate and LW value, and each trial
    is named by its combination."""
    space = VariantSpace(designs_study(bench, tokenizer_dir), DESIGNS)
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=1))
    seen = {"method": set(), "gate": set(), "lightweight": set()}
    for _ in range(200):
        trial = space(study.ask())[RUN]
        params, method = trial["config"], method_from_dict(trial["spec"].method.to_dict())
        assert RunSpec.from_dict(trial["spec"].to_dict()).method == method and trial["trainable"] > 0
        assert (method.method, method.gate, method.lightweight) == (params["method"], params["gate"],
                                                                    params["lightweight"])
        assert method.lightweight or method.gate != "small"
        assert ("hypercomplex_division" in params) == (method.method == "compacter")
        assert trial["search"] == DESIGNS and trial["variant"] == design_name(method)
        for key, values in seen.items():
            values.add(params[key])
    assert seen == {"method": {"adapter", "compacter"}, "gate": {None, *GRANULARITIES}, "lightweight": {False, True}}


def test_designs_is_a_study_variant_not_a_paper_variant():
    assert DESIGNS not in VARIANTS["bart"]  # so `python -m vlpet.params` and bench/ never list it
    cfg = load_study(ROOT / "studies" / "configs" / "embedded_designs.yaml")
    assert cfg.settings.variants == (DESIGNS,) and cfg.space(DESIGNS)["method"].values == ("adapter", "compacter")


def test_per_task_modules_are_searched_and_made_for_the_study_s_tasks(bench, tokenizer_dir):
    """`shared` is in the bottleneck methods' default spaces (first: the paper's shared modules); a per-task
    trial gets one set of modules for each task of the study and counts them all."""
    cfg = study_from_dict(study_dict(bench, tokenizer_dir, variants=["vlpet-large", "adapter"]))
    for name in ("vlpet-large", "adapter"):
        assert cfg.space(name)["shared"].values == (True, False)
    start = cfg.first_point("vlpet-large")[1]
    shared, per_task = (cfg.describe_trial("vlpet-large", {**start, "shared": s}) for s in (True, False))
    assert cfg.trial_spec("vlpet-large", {**start, "shared": False}).method.tasks == cfg.template.data.tasks
    assert per_task["trainable"] > shared["trainable"]


def test_designs_trial_row_names_the_combination_and_seed_reruns_rebuild_it(bench, tokenizer_dir, tmp_path):
    cfg = designs_study(bench, tokenizer_dir)
    params = {"method": "compacter", "gate": "large", "lightweight": True, "reduction_factor": 8,
              "hypercomplex_division": 2, "lr": 2e-3}
    run = cfg.describe_trial(DESIGNS, params)
    trial = SimpleNamespace(trial_id="a1", config={RUN: run}, run_metadata=SimpleNamespace(start_time=1.0))
    row = ResultsTable(tmp_path, "search", 1.0)._row(trial, {"epoch": 2, "fidelity": 1.0, "status": "completed",
                                                            "score": 50.0, "params": run["trainable"]})
    assert (row["variant"], row["search"], row["method"]) == ("compacter+g-large+lw", DESIGNS, "compacter")
    assert json.loads(row["config"]) == params
    (point,) = frontier_configs(pd.DataFrame([row]))
    rerun = cfg.describe_trial(point["search"], point["config"], seed=7)
    assert rerun["variant"] == "compacter+g-large+lw" and rerun["spec"].method == run["spec"].method
    plain = cfg.describe_trial(DESIGNS, {"method": "adapter", "gate": None, "lightweight": False})
    assert plain["variant"] == "adapter" and plain["spec"].method.reduction_factor == 8  # the paper's adapter
