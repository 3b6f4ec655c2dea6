"""The study driver: a small study end to end, fidelity-aware Optuna, resume after a killed driver,
search-space validity, and bad input rejected before any trial."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml

from studies.driver.study import frontier_configs
from studies.frontier import main as frontier_main
from studies.plan.search_space import DESIGNS
from studies.plan.study_config import load_study, study_from_dict
from studies.plan.trial_run import RUN
from studies.search.front_sampler import FrontSampler
from studies.search.searcher import OptunaVariantSearch, VariantSpace, optuna_sampler, variant_seed
from studies.storage.results_table import ResultsTable
from tests.conftest import SMALL
from vlpet.errors import ConfigError
from vlpet.methods import METHODS, method_from_dict
from vlpet.methods.layers import GRANULARITIES
from vlpet.methods.variants import VARIANTS, design_name, paper_setting
from vlpet.paper_results import TABLE2
from vlpet.train.config import RunSpec, load_yaml

ROOT = Path(__file__).resolve().parents[1]


def study_dict(bench: Path, tokenizer_dir: Path, **study) -> dict:
    return {
        "study": {"name": "t", "variants": ["vlpet-small", "vlpet-large"], "trials_per_variant": 2,
                  "max_concurrent_trials": 2, "grace_period": 1, "reduction_factor": 2, **study},
        "search": {"vlpet": {"rank": {"choice": [4, 8]}, "decoder_rank": {"choice": [4, 8]},
                             "lr": {"loguniform": [1e-3, 3e-3]}}},
        "run": {"backbone": {"arch": "tiny-bart", "tokenizer": str(tokenizer_dir), "feat_dim": SMALL.feat_dim,
                             "n_boxes": 4},
                "data": {"root": str(bench), "batch_size": 8, "eval_batch_size": 16},
                "train": {"epochs": 2, "log_every": 1000}, "decode": {"num_beams": 1}},
    }


def final_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table.sort_values("epoch").groupby("trial_id").tail(1)


@pytest.mark.slow
def test_small_study_records_every_trial_and_tells_optuna_the_fidelity(ray_local, bench, tokenizer_dir, tmp_path):
    """A VL-PET variant and a `designs` search (module x gate x LW) with the default search (the front
    sampler, front early stopping), then the paper's VL-PET-large configuration as a reference point: every
    trial once, pruned trials told to Optuna as PRUNED, and each designs trial named by the combination it
    resolves to."""
    from studies.driver.study import run_study

    cfg = study_from_dict(study_dict(bench, tokenizer_dir, variants=["vlpet-large", DESIGNS], trials_per_variant=3,
                                           max_concurrent_trials=3))
    table = run_study(cfg, tmp_path / "study")
    final = final_rows(table)
    assert len(final) == 7 and final["trial_id"].is_unique
    reference = final[final["phase"] == "reference"]
    assert reference["variant"].tolist() == ["vlpet-large"] and reference["status"].tolist() == ["completed"]
    assert json.loads(reference["config"].iloc[0]) == paper_setting("vlpet-large", "bart", 64)
    final = final[final["phase"] == "search"]
    assert (final["params"] > 0).all() and final["status"].isin(["completed", "pruned"]).all()
    assert not table.duplicated(["trial_id", "epoch"]).any()
    completed = final[final["status"] == "completed"]
    assert (completed["fidelity"] == 1).all() and completed["score"].notna().all()
    pruned = final[final["status"] == "pruned"]
    assert (pruned["fidelity"] < 1).all()
    designs = final[final["search"] == DESIGNS]
    assert len(designs) == 3 and (final.loc[final["search"] != DESIGNS, "variant"] == "vlpet-large").all()
    for _, row in designs.iterrows():
        params = json.loads(row["config"])
        method = method_from_dict({k: v for k, v in params.items() if k != "lr"})
        assert row["variant"] == design_name(method) and row["method"] == params["method"]
    # Optuna knows exactly the full-fidelity trials as COMPLETE; early-stopped ones are PRUNED
    storage = f"sqlite:///{tmp_path / 'study' / 'optuna.db'}"
    states = {}
    for variant in ("vlpet-large", DESIGNS):
        trials = optuna.load_study(study_name=f"t-{variant}", storage=storage).trials
        assert trials[0].params == cfg.first_point(variant)[0]  # each variant's default setting is its first trial
        for t in trials:
            states[t.state.name] = states.get(t.state.name, 0) + 1
            if t.state.name == "COMPLETE":
                assert t.values[1] in set(completed["params"])
    assert states.get("COMPLETE", 0) == len(completed) and states.get("PRUNED", 0) == len(pruned)
    assert (tmp_path / "study" / "results.csv").is_file()


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


def test_designs_is_a_study_variant_not_a_paper_variant():
    assert DESIGNS not in VARIANTS["bart"]  # so `python -m vlpet.params` and bench/ never list it
    cfg = load_study(ROOT / "studies" / "configs" / "embedded_designs.yaml")
    assert cfg.settings.variants == (DESIGNS,) and cfg.space(DESIGNS)["method"].values == ("adapter", "compacter")


def test_paper_bart_base_study_config_validates_with_a_bart_base_stand_in():
    """The paper's image-text config names facebook/bart-base (hub, offline here): validate everything
    else with the bart-base preset (same architecture); its first choices are the paper's setting."""
    data = load_yaml(ROOT / "studies" / "configs" / "paper_bart_base.yaml")
    assert data["run"]["backbone"]["pretrained"] == "facebook/bart-base"
    data["run"]["backbone"] = {**data["run"]["backbone"], "pretrained": None, "arch": "bart-base"}
    study = study_from_dict(data)
    assert len(study.settings.variants) == 10 and study.run.data.tasks == ("vqa", "gqa", "nlvr", "caption")
    assert (study.run.backbone.feat_dim, study.run.train.epochs, study.run.data.batch_size) == (2048, 20, 500)
    start = {name: dim.values[0] for name, dim in study.space("vlpet-large").items()}
    spec = study.trial_spec("vlpet-large", start)
    assert (spec.method.rank, spec.method.n_heads, spec.method.decoder_rank, spec.method.scale) == (96, 4, 96, 1.0)
    assert spec.train.lr == 1e-3
    # the paper's hand-picked configurations are the first points here, so the study trains no extra reference
    from studies.driver.study import Study

    key = Study._run_key
    for run in study.paper_trials():
        if run["search"].startswith("vlpet") or run["search"] == "full":
            assert key(SimpleNamespace(cfg=study), run["search"], run["config"]) == key(
                SimpleNamespace(cfg=study), run["search"], study.first_point(run["search"])[1]), run["search"]


def test_paper_t5_base_study_config_validates_with_a_t5_base_stand_in():
    """The paper's T5-base config (t5-base from the hub, offline here) validated with the t5-base preset: the
    T5 table's variants, and its VL-PET search starts from the T5 scripts' setting, which is also each
    variant's reference point (no extra trial)."""
    from studies.driver.study import Study

    data = load_yaml(ROOT / "studies" / "configs" / "paper_t5_base.yaml")
    assert data["run"]["backbone"]["pretrained"] == "t5-base"
    data["run"]["backbone"] = {**data["run"]["backbone"], "pretrained": None, "arch": "t5-base"}
    study = study_from_dict(data)
    assert study.family == "t5" and set(study.settings.variants) == {row[0] for row in TABLE2["t5-base"]}
    assert (study.run.backbone.feat_dim, study.run.train.epochs, study.run.data.batch_size) == (2048, 20, 300)
    for name in ("vlpet-small", "vlpet-middlex", "vlpet-middley", "vlpet-large"):
        spec = study.trial_spec(name, study.first_point(name)[1])
        m = spec.method
        assert (m.rank, m.n_heads, m.gate_rank or m.rank, m.scale, m.decoder_rank, spec.train.lr) == (
            192, 4, 192, 0.3, 96, 3e-4), name
    key = Study._run_key
    for run in study.paper_trials():
        assert key(SimpleNamespace(cfg=study), run["search"], run["config"]) == key(
            SimpleNamespace(cfg=study), run["search"], study.first_point(run["search"])[1]), run["search"]


def test_paper_settings_scale_sizes_to_the_backbone():
    assert paper_setting("vlpet-large", "bart", 128) == {"granularity": "large", "rank": 16, "n_heads": 4,
                                                         "scale": 1.0, "decoder_rank": 16, "lr": 1e-3}
    assert paper_setting("vlpet-small", "t5", 768)["rank"] == 192 and paper_setting("full", "t5", 768) == {"lr": 1e-4}
    assert paper_setting("vlpet-large", "bart", 20)["rank"] == 4  # never below N_h, a multiple of it
    assert paper_setting("lora", "bart", 128) == {"rank": 21, "alpha": 32.0, "lr": 1e-3}
    assert paper_setting("vlpet-large", "bart", 768, video=True)["lr"] == 7e-4


@pytest.mark.parametrize("change, message", [
    ({"study": {"variants": ["vlpet-huge"]}}, "unknown study.variants entry 'vlpet-huge'"),
    ({"study": {"variants": ["design"]}}, "did you mean 'designs'"),
    ({"search": {"designs": {"method": {"choice": ["adapter", "lora"]}}}},
     r"search.designs.method: lora has no gate or lightweight design; choose from adapter, compacter"),
    ({"search": {"designs": {"gaet": {"choice": ["large"]}}}}, r"search.designs.gaet .*did you mean 'gate'"),
    ({"search": {"designs": {"rank": {"choice": [4]}}}}, r"not a parameter of designs.*valid: decoder_rank, gate,"),
    ({"search": {"vlpet": {"lr": {"loguniform": [1e-2, 1e-3]}}}}, r"search.vlpet.lr.loguniform=\[0.01, 0.001\] is empty or inverted"),
    ({"search": {"vlpet": {"rank": {"choice": []}}}}, "search.vlpet.rank.choice must be a non-empty list"),
    ({"search": {"vlpet": {"rank": {"choice": [128, 256]}}}}, r"no value in \[128, 256\] is in 1..d_model=64"),
    ({"search": {"vlpet": {"rnak": {"choice": [4]}}}}, "did you mean 'rank'"),
    ({"search": {"vlpett": {}}}, "unknown search method 'vlpett'"),
    ({"study": {"trials_per_varaint": 3}}, "did you mean 'trials_per_variant'"),
    ({"studdy": {}}, "did you mean 'study'"),
    ({"run": {"train": {"epochs": 0}}}, r"train.epochs=0 must be an integer >= 1"),
    ({"study": {"max_params": -5}}, "study.max_params=-5"),
    ({"study": {"sampler": "tpee"}}, "unknown study.sampler 'tpee'.*did you mean 'tpe'"),
    ({"run": {"train": {"eval_every": 2}}}, r"study.early_stopping=front compares every epoch's score.*eval_every=2"),
    ({"study": {"asha": True}}, r"study.asha is now study.early_stopping: front .* pareto .* asha .* or none"),
    ({"study": {"early_stopping": "hyperband"}}, r"unknown study.early_stopping 'hyperband'"),
    ({"study": {"paper_reference": "yes"}}, r"paper_reference='yes' must be a bool"),
    # every value of every distribution is checked, not only the first one
    ({"search": {"vlpet": {"scale": {"choice": [0.5, -3.0]}}}},
     r"search.vlpet.scale: the value -3.0 makes no valid run \(vlpet.scale=-3.0: must be a finite number > 0\)"),
    ({"search": {"vlpet": {"lr": {"loguniform": [1e-4, 0.0]}}}}, r"search.vlpet.lr.loguniform=\[0.0001, 0.0\] is empty"),
    ({"search": {"vlpet": {"scale": {"uniform": [0.5, float("inf")]}}}}, r"uniform must be \[low, high\], two finite"),
    ({"search": {"vlpet": {"rank": {"choice": [8, "x"]}}}}, r"search.vlpet.rank: 'x' is not a positive integer"),
    ({"search": {"vlpet": {"n_heads": {"choice": [4, 0]}}}}, r"search.vlpet.n_heads: 0 is not a positive integer"),
    ({"study": {"sampler_seed": "abc"}}, r"study.sampler_seed='abc' must be an integer"),
    ({"study": {"trials_per_variant": True}}, r"study.trials_per_variant=True must be an integer"),
    ({"run": {"train": {"weight_decay": float("inf")}}}, r"train.weight_decay=inf must be a finite number"),
    ({"run": {"train": {"gpus_per_worker": float("nan")}}}, r"train.gpus_per_worker=nan must be a finite number"),
    # seeds every library takes, one search per variant, early stopping that can act, a budget some variant meets
    ({"study": {"sampler_seed": -1}}, r"study.sampler_seed=-1 must be an integer in \[0, 4294967295\]"),
    ({"run": {"train": {"seed": 2**70}}}, r"train.seed=1180591620717411303424 must be an integer in \[0, 4294967295\]"),
    ({"study": {"variants": ["vlpet-small", "vlpet-small"]}}, r"study.variants=.* lists vlpet-small more than once"),
    ({"study": {"grace_period": 2}}, r"study.grace_period=2 leaves early stopping nothing to decide.*epochs=2"),
    ({"study": {"optuna_storage": "sqlite://"}}, r"sqlite:// keeps the searches in memory, lost when the driver"),
    ({"study": {"optuna_storage": "sqlite:///rel.db"}}, r"sqlite:///rel.db: a relative SQLite path resolves against"),
    ({"study": {"max_params": 1}}, (r"study.max_params=1 is below every variant's cheapest configuration \(the "
                                    r"cheapest: vlpet-small with [\d,]+ trainable parameters\); raise max_params")),
])
def test_bad_study_configs_fail_with_the_field(bench, tokenizer_dir, change, message):
    with pytest.raises(ConfigError, match=message):
        study_from_dict(merge(study_dict(bench, tokenizer_dir), change))


def merge(base: dict, change: dict) -> dict:
    """`base` with `change` merged in recursively."""
    out = dict(base)
    for key, value in change.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) and value else value
    return out


def test_cli_rejects_bad_input_before_any_trial(bench, tokenizer_dir, tmp_path, capsys):
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(bench, tokenizer_dir)))
    study_dir = tmp_path / "never"
    assert frontier_main(["--config", str(path), "--study-dir", str(study_dir), "--address", "127.0.0.1:9"]) == 2
    assert "--address 127.0.0.1:9: no Ray head reachable" in capsys.readouterr().err
    assert frontier_main(["--config", str(path), "--variants", "vlpet-smal", "--study-dir", str(study_dir)]) == 2
    assert "did you mean 'vlpet-small'" in capsys.readouterr().err
    assert frontier_main(["--config", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    assert frontier_main(["--config", str(path), "--study-dir", str(study_dir), "--resume"]) == 2
    assert "holds no study" in capsys.readouterr().err
    for flag, value, message in (("--seed", "-1", "'-1' is not a seed: give an integer from 0 to 4294967295"),
                                 ("--seed", str(2**70), "is not a seed"), ("--trials", "0", "'0' is not an integer >= 1"),
                                 ("--max-params", "-5", "'-5' is not an integer >= 1"),
                                 ("--storage-path", "", "--storage-path: is empty"),
                                 ("--storage-path", "s3://AKIAKEY:wJalrSECRET@b/x", "s3://... holds credentials"),
                                 ("--storage-path", "s3://b/x?secret_key=wJalrSECRET", "s3://... holds credentials"),
                                 ("--storage-path", str(tmp_path / "dir?x"), "is read as a URI's query")):
        with pytest.raises(SystemExit) as exit_info:
            frontier_main(["--config", str(path), "--study-dir", str(study_dir), flag, value])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "wJalrSECRET" not in err, (flag, value, err)
    assert not study_dir.exists()


@pytest.mark.parametrize("text, shown", [
    ("postgresql+psycopg2://vlpet:S3cr3t-pw@db:5432/v", "postgresql+psycopg2://vlpet:***@db:5432/v"),
    ("postgresql://vlpet:p@ss@w0rd@db/v: cannot open it", "postgresql://vlpet:***@db/v: cannot open it"),  # raw '@'
    ("--storage-path s3://AKIAKEY:wJalrSECRET@bucket/x is refused", "--storage-path s3://AKIAKEY:***@bucket/x is refused"),
    ("s3://b/x?region=eu&secret_key=wJalrSECRET&x=1", "s3://b/x?region=eu&secret_key=***&x=1"),
    ("postgresql://vlpet@db/v?password=S3cr3t", "postgresql://vlpet@db/v?password=***"),
    ("s3://bucket/x and sqlite:////tmp/o.db", "s3://bucket/x and sqlite:////tmp/o.db"),  # nothing secret: unchanged
])
def test_printed_urls_never_show_a_password_or_secret_key(text, shown):
    from vlpet.errors import redact

    assert redact(text) == shown


def test_unwritable_or_full_study_directory_is_detected_before_any_trial(tmp_path, monkeypatch):
    from studies.storage import study_record

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(ConfigError, match="is not writable"):
        study_record.check_study_dir(blocker / "study", resume=False)  # a file where a directory must go

    class Usage:
        free = 50 * 2**20

    monkeypatch.setattr(study_record.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(ConfigError, match="only 50 MB free, need >= 200 MB"):
        study_record.check_study_dir(tmp_path / "study", resume=False)


def test_seed_flag_sets_every_trial_seed_and_the_sampler_seed(bench, tokenizer_dir, tmp_path):
    from studies.frontier import load_config, parse_args

    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study_dict(bench, tokenizer_dir)))
    default = load_config(parse_args(["--config", str(path)]))
    seeded = load_config(parse_args(["--config", str(path), "--seed", "7"]))
    assert (seeded.settings.sampler_seed, seeded.run.train.seed) == (7, 7)
    assert (default.settings.sampler_seed, default.run.train.seed) != (7, 7)
    assert seeded.first_spec("vlpet-large").train.seed == 7


@pytest.mark.slow
def test_a_reused_trial_process_starts_every_trial_clean(ray_local, bench, tokenizer_dir, tmp_path):
    """Three trials one after another in one trial process: VL-PET-large, LoRA, VL-PET-large again. The
    repeat reports exactly what the first run did (loss and every score of every epoch): no weights,
    optimiser state, RNG or task leak from the trials before it, and the cached backbone trains as a fresh
    load does."""
    from studies.driver.study import Study

    cfg = study_from_dict(study_dict(bench, tokenizer_dir, variants=["vlpet-large", "lora"], max_concurrent_trials=1))
    assert cfg.run.train.in_trial_process
    runs = [cfg.describe_trial(v, cfg.first_point(v)[1]) for v in ("vlpet-large", "lora", "vlpet-large")]
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    Study(cfg, study_dir).run_points("reuse", runs)
    table = pd.read_parquet(study_dir / "results.parquet").sort_values("started_at", kind="stable")
    order = list(dict.fromkeys(table["trial_id"]))
    assert table.groupby("trial_id")["variant"].first()[order].tolist() == ["vlpet-large", "lora", "vlpet-large"]
    assert table["pid"].nunique() == 1, "the three trials should share one reused process"
    first, repeat = (table[table["trial_id"] == t].sort_values("epoch") for t in (order[0], order[2]))
    metrics = ["loss", *(c for c in table.columns if c.startswith("score"))]
    assert len(first) == 2 and first[metrics].to_numpy().tolist() == repeat[metrics].to_numpy().tolist()
    assert first["checkpoint_path"].map(lambda p: Path(p).is_dir()).all()  # in the trial's Tune storage


def test_per_task_modules_are_searched_and_made_for_the_study_s_tasks(bench, tokenizer_dir):
    """`shared` is in the bottleneck methods' default spaces (first: the paper's shared modules); a per-task
    trial gets one set of modules for each task of the study and counts them all."""
    cfg = study_from_dict(study_dict(bench, tokenizer_dir, variants=["vlpet-large", "adapter"]))
    for name in ("vlpet-large", "adapter"):
        assert cfg.space(name)["shared"].values == (True, False)
    start = cfg.first_point("vlpet-large")[1]
    shared, per_task = (cfg.describe_trial("vlpet-large", {**start, "shared": s}) for s in (True, False))
    assert cfg.trial_spec("vlpet-large", {**start, "shared": False}).method.tasks == cfg.run.data.tasks
    assert per_task["trainable"] > shared["trainable"]


def test_a_trial_lost_with_a_killed_driver_is_closed_when_its_configuration_is_rerun(bench, tokenizer_dir, tmp_path):
    """The table says trial `old` runs, but the restored experiment does not know it: when a new trial starts
    with its configuration, `old`'s finished epoch stays, closed as failed and naming the new trial; a trial
    of another configuration, or one the experiment knows, is left alone."""
    cfg = study_from_dict(study_dict(bench, tokenizer_dir))
    table = ResultsTable(tmp_path, "search", 1.0)

    def trial(trial_id, rank):
        run = cfg.describe_trial("vlpet-large", {"rank": rank, "decoder_rank": 4, "lr": 1e-3})
        return SimpleNamespace(trial_id=trial_id, config={RUN: run}, run_metadata=SimpleNamespace(start_time=1.0),
                               path=str(tmp_path / trial_id))

    old, other, known, new = trial("old", 4), trial("other", 8), trial("known", 4), trial("new", 4)
    for t in (old, other, known):
        table.on_trial_result(0, [], t, {"epoch": 1, "fidelity": 0.5, "score": 10.0})
    table.on_trial_start(0, [known, new], new)
    final = {r["trial_id"]: r for r in final_rows(table.frame()).to_dict("records")}
    assert final["old"]["status"] == "failed" and final["old"]["error"].endswith("re-run as trial new")
    assert final["old"]["score"] == 10.0  # its finished epoch is kept
    assert final["other"]["status"] == final["known"]["status"] == "running"
