"""The study driver and the vlpet-study command: a small study end to end, a reused trial process, a trial lost
with a killed driver, bad input and unusable directories refused before any trial, the seed flag. (The searcher,
the search spaces and the study config have test files of their own.)"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from types import SimpleNamespace

import optuna
import pandas as pd
import pytest
import yaml

from studies.frontier import main as frontier_main
from studies.plan.search_space import DESIGNS
from studies.plan.study_config import study_from_dict
from studies.plan.trial_run import RUN
from studies.storage.results_table import ResultsTable
from tests.conftest import SMALL
from vlpet.errors import ConfigError
from vlpet.methods import method_from_dict
from vlpet.paper_variants import design_name, paper_setting

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
    assert (seeded.settings.sampler_seed, seeded.template.train.seed) == (7, 7)
    assert (default.settings.sampler_seed, default.template.train.seed) != (7, 7)
    assert seeded.first_spec("vlpet-large").train.seed == 7


@pytest.mark.slow
def test_a_reused_trial_process_starts_every_trial_clean(ray_local, bench, tokenizer_dir, tmp_path):
    """Three trials one after another in one trial process: VL-PET-large, LoRA, VL-PET-large again. The
    repeat reports exactly what the first run did (loss and every score of every epoch): no weights,
    optimiser state, RNG or task leak from the trials before it, and the cached backbone trains as a fresh
    load does."""
    from studies.driver.study import Study

    cfg = study_from_dict(study_dict(bench, tokenizer_dir, variants=["vlpet-large", "lora"], max_concurrent_trials=1))
    assert cfg.template.train.in_trial_process
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


def test_a_report_with_a_checkpoint_enters_the_table_once_tune_registered_the_checkpoint(bench, tokenizer_dir,
                                                                                        tmp_path):
    """Tune registers a reported checkpoint after the result callbacks: a driver stopped in between resumes the
    trial from its previous checkpoint and trains that epoch again (seen once in CI: the epoch's row came back
    from another process). So such a row is written at `on_checkpoint`; a pickled table (what a restored study
    unpickles) forgets the rows still waiting; a trial that fails meanwhile keeps its epoch."""
    cfg = study_from_dict(study_dict(bench, tokenizer_dir))
    run = cfg.describe_trial("vlpet-large", {"rank": 4, "decoder_rank": 4, "lr": 1e-3})
    trial = SimpleNamespace(trial_id="t", config={RUN: run}, run_metadata=SimpleNamespace(start_time=1.0),
                            path=str(tmp_path / "t"), error_file=None)
    table = ResultsTable(tmp_path, "search", 1.0)
    table.on_trial_result(0, [], trial, {"epoch": 1, "fidelity": 0.5, "score": 10.0, "checkpoint_dir_name": "c1"})
    assert table.frame().empty  # not yet: Tune would resume from before epoch 1
    restored = pickle.loads(pickle.dumps(table))
    table.on_checkpoint(0, [], trial, checkpoint=None)
    assert table.frame()[["epoch", "checkpoint_path"]].values.tolist() == [[1, f"{tmp_path}/t/c1"]]
    restored.on_checkpoint(0, [], trial, checkpoint=None)  # the restored copy has no stale row to write
    assert len(table.frame()) == 1
    table.on_trial_result(0, [], trial, {"epoch": 2, "fidelity": 1.0, "score": 20.0, "checkpoint_dir_name": "c2"})
    table.on_trial_error(0, [], trial)
    assert final_rows(table.frame())[["epoch", "status", "score"]].values.tolist() == [[2, "failed", 20.0]]
