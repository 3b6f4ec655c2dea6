"""The contracts the study side is built on: what a trial reports and a table row holds
(`analysis.results_contract`), the typed config base, and the one-line user errors of every entry point."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from analysis.results_contract import COMPLETED, PRUNED, ROW_KEYS, TASK_PREFIX, final_rows, is_full_fidelity
from studies.plan.trial_run import RUN
from studies.storage.results_table import ResultsTable
from tests.test_train import small_spec
from vlpet.config_base import Config, bounded
from vlpet.errors import ConfigError, UserError, entry_point
from vlpet.train.epoch_report import EPOCH_KEYS, EVAL_KEYS
from vlpet.train.loop import run_training


def test_every_epoch_report_holds_the_keys_the_contract_names(bench, tokenizer_dir):
    """The training loop's reports carry EPOCH_KEYS (+ EVAL_KEYS and score_<task> when validating), and a
    results-table row built from such a report has exactly ROW_KEYS plus the per-task scores."""
    spec = small_spec(bench, tokenizer_dir, epochs=1)
    reports = []
    run_training(spec, lambda metrics, checkpoint: reports.append(dict(metrics)))
    (report,) = reports
    assert set(EPOCH_KEYS) | set(EVAL_KEYS) <= report.keys()
    tasks = {k for k in report if k.startswith(TASK_PREFIX)}
    assert tasks == {TASK_PREFIX + t for t in spec.data.tasks}
    run = {"search": "vlpet-large", "variant": "vlpet-large", "config": {"rank": 16}, "spec": spec,
           "trainable": report["params"], "total": report["total_params"], "params_pct": report["params_pct"]}
    trial = SimpleNamespace(trial_id="t1", config={RUN: run}, run_metadata=SimpleNamespace(start_time=0.0),
                            path="/nowhere")
    row = ResultsTable(Path("/nonexistent"), "search", 1.0)._row(trial, report)
    assert set(row) == set(ROW_KEYS) | tasks


def test_full_fidelity_is_decided_in_one_way_for_numbers_columns_and_csv_round_trips():
    assert is_full_fidelity(COMPLETED, 1.0) and not is_full_fidelity(PRUNED, 1.0)
    assert not is_full_fidelity(COMPLETED, 0.5)
    assert is_full_fidelity(COMPLETED, 0.1 * 3 / 0.3)  # 1.0000000000000002 or 0.9999999999999999 after arithmetic
    table = pd.DataFrame({"trial_id": ["a", "a", "b"], "epoch": [1, 2, 1], "fidelity": [0.5, 1.0, 0.5],
                          "status": ["running", COMPLETED, PRUNED], "config": ['{"seed": 1, "r": 4}'] * 3})
    final = final_rows(table)
    assert final["trial_id"].tolist() == ["a", "b"] and final["full_fidelity"].tolist() == [True, False]
    assert final["config_key"].iloc[0] == '{"r": 4}'  # seeds of one configuration compare equal


@dataclass(frozen=True)
class Toy(Config):
    section: ClassVar[str] = "toy"
    steps: int = bounded(3, ge=1)
    ratio: float = bounded(0.5, ge=0, le=1.0)
    limit: int | None = bounded(None, gt=0)
    names: tuple[str, ...] = ("a",)
    on: bool = True


@pytest.mark.parametrize(("values", "message"), [
    ({"steps": 0}, "toy.steps=0 must be an integer >= 1"),
    ({"steps": 2.5}, "toy.steps=2.5 must be an integer >= 1"),
    ({"steps": True}, "toy.steps=True must be an integer >= 1"),
    ({"ratio": 1.5}, r"toy.ratio=1.5 must be a finite number in \[0, 1.0\]"),
    ({"ratio": float("nan")}, "toy.ratio=nan must be a finite number"),
    ({"limit": 0}, "toy.limit=0 must be an integer > 0 or null"),
    ({"names": "a"}, "toy.names='a' must be a list of names"),
    ({"on": "false"}, "toy.on='false' must be a bool"),
])
def test_the_config_base_checks_types_and_ranges_from_the_hints(values, message):
    with pytest.raises(ConfigError, match=message):
        Toy(**values)


def test_the_config_base_coerces_yaml_values_and_round_trips():
    toy = Toy(ratio=1, names=["x", "y"])
    assert toy.ratio == 1.0 and isinstance(toy.ratio, float) and toy.names == ("x", "y")
    assert toy.to_dict() == {"steps": 3, "ratio": 1.0, "limit": None, "names": ["x", "y"], "on": True}
    assert Toy(**toy.to_dict()) == toy


def test_an_entry_point_turns_user_errors_into_one_line_and_status_2(capsys):
    @entry_point
    def main(argv=None):
        if argv == ["bad"]:
            raise ConfigError("train.lr=-1 must be a finite number > 0")
        if argv == ["bug"]:
            raise KeyError("a bug keeps its traceback")
        if argv == ["ctrl-c"]:
            raise KeyboardInterrupt

    assert main([]) == 0
    assert main(["bad"]) == 2 and capsys.readouterr().err == "error: train.lr=-1 must be a finite number > 0\n"
    assert main(["ctrl-c"]) == 130 and capsys.readouterr().err == "interrupted\n"
    with pytest.raises(KeyError):
        main(["bug"])
    from analysis import AnalysisError

    assert issubclass(AnalysisError, UserError) and issubclass(ConfigError, UserError)


def test_pretraining_uses_the_fine_tuning_optimiser_and_learns(tmp_path, capsys):
    """The embedded backbones' pre-training (vlpet/train/pretrain.py) on a tiny corpus: its loss falls and
    the saved backbone loads as `pretrained`."""
    from vlpet.models import BackboneConfig, build_vl_model
    from vlpet.train.pretrain import PretrainConfig, pretrain

    cfg = PretrainConfig(arch="tiny-bart", feat_dim=16, images=40, steps=30, batch_size=8)
    assert cfg.optimisation().warmup_ratio == cfg.warmup_ratio and cfg.optimisation().lr == cfg.lr
    pretrain(tmp_path, cfg, log_every=10)
    losses = [float(line.split("loss ")[1].split()[0]) for line in capsys.readouterr().out.splitlines()
              if line.startswith("pretrain step")]
    assert len(losses) == 3 and losses[-1] < losses[0] and np.isfinite(losses).all()
    assert build_vl_model(BackboneConfig(pretrained=str(tmp_path), feat_dim=16)).d_model == 64


def test_config_yaml_has_core_types_and_no_duplicate_keys(tmp_path):
    """YAML 1.2 core types: only true/false are booleans, 1e-3 is a number; a repeated key is an error
    with its line (a second `run:` would silently replace the first)."""
    from vlpet.errors import ConfigError
    from vlpet.train.config import load_yaml

    path = tmp_path / "c.yaml"
    path.write_text("a: 1e-3\nb: no\nc: true\nd: [2e5, -1.5E-2]\ne: on\n")
    assert load_yaml(path) == {"a": 1e-3, "b": "no", "c": True, "d": [2e5, -1.5e-2], "e": "on"}
    path.write_text("run:\n  backbone: {arch: tiny-bart}\nstudy: {name: x}\nrun:\n  train: {}\n")
    with pytest.raises(ConfigError, match=r"c.yaml: line 4: duplicate key 'run'; give each key once"):
        load_yaml(path)
    path.write_text("study:\n  seeds: 1\n  seeds: 2\n")
    with pytest.raises(ConfigError, match="line 3: duplicate key 'seeds'"):
        load_yaml(path)
    path.write_bytes("a: 1\n".encode("utf-16"))
    with pytest.raises(ConfigError, match=r"c.yaml: not UTF-8 text \(invalid start byte at byte 0\); save the file as UTF-8"):
        load_yaml(path)
