"""A study directory describes its study (study.json), is resumed only where it was made and with its own
config, and a signal stops a study cleanly: no Ray needed."""

from __future__ import annotations

import os
import shutil
import signal

import pandas as pd
import pytest
import yaml

from analysis.study_layout import RESULTS
from studies.driver.interrupts import GracefulStop, StudyInterrupted
from studies.frontier import main as frontier_main
from studies.plan.study_config import study_from_dict
from studies.storage.results_table import ResultsTable, results_study_id
from studies.storage.study_record import describe, recorded, write
from tests.test_study import study_dict
from vlpet.errors import ConfigError


@pytest.fixture
def made_study(bench, tokenizer_dir, tmp_path):
    """A study directory as a study leaves it after its first report: study.json and a results table."""
    cfg = study_from_dict(study_dict(bench, tokenizer_dir))
    study_dir = tmp_path / "study"
    study_dir.mkdir()
    record = describe(cfg.to_dict(), "bart-base", study_dir)
    write(study_dir, record)
    ResultsTable(study_dir, "search", 1.0, study_id=record["study_id"])._write(
        {("a", 1): {"trial_id": "a", "epoch": 1, "score": 50.0}})
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(study_dict(bench, tokenizer_dir)))
    return study_dir, record, config


def test_results_table_carries_its_study_id(made_study):
    study_dir, record, _ = made_study
    assert results_study_id(study_dir / RESULTS) == record["study_id"]
    assert pd.read_parquet(study_dir / RESULTS)["score"].tolist() == [50.0]
    assert results_study_id(study_dir / "missing.parquet") is None


def test_resume_takes_the_config_of_study_json_and_refuses_a_changed_one(made_study, capsys):
    study_dir, _, config = made_study
    from studies import frontier

    args = frontier.parse_args(["--resume", "--study-dir", str(study_dir)])
    assert frontier.resumed_config(args, study_dir).settings.name == "t"  # not the default config's "embedded"
    args = frontier.parse_args(["--resume", "--study-dir", str(study_dir), "--config", str(config)])
    assert frontier.resumed_config(args, study_dir).settings.trials_per_variant == 2  # the same config: accepted

    assert frontier_main(["--resume", "--study-dir", str(study_dir), "--trials", "5"]) == 2
    err = capsys.readouterr().err
    assert "--resume: study.trials_per_variant is 2 in" in err and "but 5 in the given config/flags" in err
    assert frontier_main(["--resume", "--study-dir", str(study_dir), "--seed", "9"]) == 2
    assert "run.train.seed is 42" in capsys.readouterr().err


def test_a_copied_study_and_a_foreign_results_table_are_refused_before_anything_is_written(made_study, tmp_path,
                                                                                            capsys):
    study_dir, _, _ = made_study
    copy = tmp_path / "copy"
    shutil.copytree(study_dir, copy)
    before = (study_dir / RESULTS).read_bytes()
    assert frontier_main(["--resume", "--study-dir", str(copy)]) == 2
    assert f"was created in {study_dir}" in capsys.readouterr().err
    assert (study_dir / RESULTS).read_bytes() == before

    ResultsTable(study_dir, "search", 1.0, study_id="another")._write({("b", 1): {"trial_id": "b"}})
    with pytest.raises(ConfigError, match=r"results.parquet belongs to another study \(id another"):
        recorded(study_dir)
    (study_dir / "study.json").write_text("{not json")
    with pytest.raises(ConfigError, match="is not a readable study description"):
        recorded(study_dir)


@pytest.mark.parametrize("flags, message", [
    (["--variants", ""], "unknown study.variants entry ''"),
    (["--name", ".."], "study.name='..' must be a directory name"),
])
def test_flags_that_would_pick_nothing_or_escape_the_studies_root_are_refused(made_study, flags, message, capsys):
    _, _, config = made_study
    assert frontier_main(["--config", str(config), *flags]) == 2
    assert message in capsys.readouterr().err


def test_first_signal_stops_gracefully_through_tune_and_the_second_at_once():
    forwarded = []
    previous_usr1 = signal.signal(signal.SIGUSR1, lambda *a: forwarded.append("usr1"))  # stands for Tune's handler
    previous_int = signal.getsignal(signal.SIGINT)
    try:
        with GracefulStop() as stop:
            assert os.environ["TUNE_DISABLE_SIGINT_HANDLER"] == "1"
            stop.check()  # no signal yet
            os.kill(os.getpid(), signal.SIGTERM)
            assert stop.signum == signal.SIGTERM and forwarded == ["usr1"]
            with pytest.raises(KeyboardInterrupt):
                os.kill(os.getpid(), signal.SIGINT)
            with pytest.raises(StudyInterrupted) as stopped:
                stop.check()
            assert stopped.value.exit_code == 143
        assert signal.getsignal(signal.SIGINT) is previous_int and "TUNE_DISABLE_SIGINT_HANDLER" not in os.environ
    finally:
        signal.signal(signal.SIGUSR1, previous_usr1)
    assert StudyInterrupted(signal.SIGINT).exit_code == 130
