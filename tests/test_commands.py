"""The installed console commands: each answers --help with an example of its use, and vlpet-dashboard serves
a study's Optuna storage on 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
import urllib.request
from pathlib import Path

import optuna
import pytest

from tests.services import dashboard

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
COMMANDS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
# what each command's --help shows as an example of its use
EXAMPLES = {"vlpet-study": "vlpet-study --config studies/configs/paper_bart_base.yaml",
            "vlpet-train": "vlpet-train [--config", "vlpet-report": "vlpet-report runs/studies/embedded",
            "vlpet-params": "vlpet-params --backbone bart-base", "vlpet-cluster-validate": "vlpet-cluster-validate cluster/",
            "vlpet-dashboard": "vlpet-dashboard runs/studies/embedded",
            "vlpet-export": "vlpet-export runs/studies/embedded --front",
            "vlpet-predict": "vlpet-predict CHECKPOINT_DIR --config studies/configs/embedded_run.yaml"}


def test_every_command_has_an_example():
    assert set(COMMANDS) == set(EXAMPLES)


@pytest.mark.parametrize("command", sorted(EXAMPLES))
def test_installed_command_answers_help_with_an_example(command, tmp_path):
    # run from elsewhere, so that the installed package answers, not the checkout's working directory
    done = subprocess.run([str(BIN / command), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert f"usage: {command}" in done.stdout and EXAMPLES[command] in done.stdout, done.stdout


def test_dashboard_serves_a_finished_study_on_loopback(tmp_path):
    """A study directory's optuna.db (two variants' searches, as a study leaves them) read over HTTP."""
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    for variant in ("lora", "vlpet-large"):
        search = optuna.create_study(study_name=f"demo-{variant}", storage=storage, directions=["maximize", "minimize"])
        for score in (60.0, 70.0):
            search.add_trial(optuna.trial.create_trial(params={"lr": 1e-3}, values=[score, 5.0],
                                                       distributions={"lr": optuna.distributions.FloatDistribution(
                                                           1e-4, 1e-2, log=True)}))
    with dashboard(tmp_path) as (studies, server):
        assert sorted(s["study_name"] for s in studies) == ["demo-lora", "demo-vlpet-large"]
        assert all(s["directions"] == ["maximize", "minimize"] for s in studies)
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/api/studies/{studies[0]['study_id']}",
                                    timeout=5) as got:
            detail = json.load(got)
        assert sorted(t["values"][0] for t in detail["trials"]) == [60.0, 70.0]  # Optuna 5's trials, read
        listening = {c.laddr.ip for c in __import__("psutil").Process(server.pid).net_connections()
                     if c.status == "LISTEN"}
        assert listening == {"127.0.0.1"}, listening


def test_dashboard_of_a_directory_without_a_study_says_so(tmp_path):
    done = subprocess.run([str(BIN / "vlpet-dashboard"), str(tmp_path)], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {tmp_path} holds no Optuna storage (no optuna.db, no "
                                   "study.optuna_storage in study.json); give the directory of a study that has run "
                                   "(runs/studies/<name>)")
