"""The study config (studies/plan/study_config.py): the paper's configs validate, the paper settings scale
to the backbone, and bad configs fail naming the field."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from studies.plan.study_config import study_from_dict
from tests.test_study import study_dict
from vlpet.errors import ConfigError
from vlpet.paper_results import TABLE2
from vlpet.paper_variants import paper_setting
from vlpet.train.config import load_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_paper_bart_base_study_config_validates_with_a_bart_base_stand_in():
    """The paper's image-text config names facebook/bart-base (hub, offline here): validate everything
    else with the bart-base preset (same architecture); its first choices are the paper's setting."""
    data = load_yaml(ROOT / "studies" / "configs" / "paper_bart_base.yaml")
    assert data["run"]["backbone"]["pretrained"] == "facebook/bart-base"
    data["run"]["backbone"] = {**data["run"]["backbone"], "pretrained": None, "arch": "bart-base"}
    study = study_from_dict(data)
    assert len(study.settings.variants) == 10 and study.template.data.tasks == ("vqa", "gqa", "nlvr", "caption")
    assert (study.template.backbone.feat_dim, study.template.train.epochs, study.template.data.batch_size) == (2048, 20, 500)
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
    assert (study.template.backbone.feat_dim, study.template.train.epochs, study.template.data.batch_size) == (2048, 20, 300)
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


def merge(base: dict, change: dict) -> dict:
    """`base` with `change` merged in recursively."""
    out = dict(base)
    for key, value in change.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) and value else value
    return out


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
