"""A study run as a Ray job, as on a cluster (cluster/README.md): submitted to the Jobs API of a head on
127.0.0.1, its console followed with `ray job logs -f`, stopped with `ray job stop` mid-study (as Ctrl-C:
finished results kept), resubmitted with `--resume`; its Optuna searches on a PostgreSQL server on
127.0.0.1. Its own module, so no other Ray instance runs on the machine meanwhile."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml

from tests.kept_epochs import assert_finished_epochs_kept
from tests.ray_nodes import RAY, LocalRayCluster
from tests.services import PostgresServer
from tests.test_study import final_rows, study_dict

ROOT = Path(__file__).resolve().parents[1]
ANSI = re.compile(r"\x1b\[[0-9;]*m")
JOB_ID = re.compile(r"raysubmit_[A-Za-z0-9]+")
TRIAL_LINE = re.compile(r"vlpet-large +score +\d+\.\d\d +params .* completed")


@pytest.fixture
def postgres():
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def head():
    """A Ray head alone on 127.0.0.1 with 3 CPUs; its jobs run this environment's `python`, and `ray job
    stop` waits up to 120 s for a study to save its state (Ray's default is 3 s, then SIGKILL)."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    cluster = LocalRayCluster(worker_nodes=0, head_cpus=3, env={"PATH": path, "RAY_JOB_STOP_WAIT_TIME_S": "120"})
    yield cluster.start()
    cluster.stop()
    assert not cluster.processes()


def _ray_job(head: LocalRayCluster, *args: str, timeout: float = 120) -> str:
    done = subprocess.run([RAY, "job", *args], env=head.env, capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return ANSI.sub("", done.stdout + done.stderr)  # the CLI colours its words


def _submit(head: LocalRayCluster, *flags: str) -> str:
    """Submit the study as the cluster README says (the repository as the job's working directory); returns
    the job's id. A head just started takes a few seconds before its job agent takes submissions."""
    submit = [RAY, "job", "submit", "--address", head.dashboard, "--working-dir", str(ROOT), "--no-wait", "--",
              "python", "studies/frontier.py", "--address", "auto", "--no-report", *flags]
    deadline = time.time() + 60
    while True:
        done = subprocess.run(submit, env=head.env, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode == 0 or "No available agent" not in done.stderr or time.time() > deadline:
            break
        time.sleep(2)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return JOB_ID.search(ANSI.sub("", done.stdout)).group(0)


def _status(head: LocalRayCluster, job: str) -> str:
    """The job's status as `ray job status` says it ("Job 'x' succeeded", "... was stopped", "Status for job
    'x': RUNNING")."""
    out = _ray_job(head, "status", "--address", head.dashboard, job)
    for said, status in (("succeeded", "SUCCEEDED"), ("was stopped", "STOPPED"), ("failed", "FAILED")):
        if f"Job '{job}' {said}" in out:
            return status
    return re.search(rf"Status for job '{job}': (\w+)", out).group(1)


def _wait_until_done(head: LocalRayCluster, job: str, timeout_s: float = 600) -> str:
    deadline = time.time() + timeout_s
    while (status := _status(head, job)) in ("PENDING", "RUNNING") and time.time() < deadline:
        time.sleep(2)
    return status


@pytest.mark.slow
def test_a_study_run_as_a_ray_job_is_stopped_and_resubmitted_with_optuna_on_postgresql(bench, tokenizer_dir,
                                                                                       tmp_path, head, postgres):
    # enough work that the stop, sent when the first trial's line comes through the job's log, falls mid-study
    data = study_dict(bench, tokenizer_dir, variants=["vlpet-large"], trials_per_variant=3, max_concurrent_trials=1,
                      early_stopping="none", paper_reference=False)
    data["run"]["train"]["epochs"] = 4
    data["study"]["optuna_storage"] = postgres.url
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(data))
    study_dir = tmp_path / "study"
    job = _submit(head, "--config", str(config), "--study-dir", str(study_dir))

    follow = subprocess.Popen([RAY, "job", "logs", "--address", head.dashboard, "-f", job], env=head.env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    console = []
    for line in follow.stdout:  # the study's console, live, until its first trial has finished
        console.append(line)
        if TRIAL_LINE.search(line):
            break
    else:
        pytest.fail("the job's log ended before a trial finished: " + "".join(console)[-3000:])
    assert any(line.startswith("study t: 1 variants (vlpet-large)") for line in console), console

    _ray_job(head, "stop", "--address", head.dashboard, job, timeout=300)  # SIGTERM, as a scheduler's stop
    console += follow.stdout.readlines()
    follow.wait(timeout=60)
    log = "".join(console)
    assert _status(head, job) == "STOPPED", log[-3000:]
    assert "SIGTERM: stopping the study once the running trials are stopped and saved" in log, log[-3000:]
    assert f"resume with: python studies/frontier.py --resume --study-dir {study_dir}" in log, log[-3000:]
    before = pd.read_parquet(study_dir / "results.parquet")
    assert 1 <= (final_rows(before)["fidelity"] >= 1).sum() < 3, before  # stopped mid-study

    resumed = _submit(head, "--resume", "--study-dir", str(study_dir))
    assert _wait_until_done(head, resumed) == "SUCCEEDED", _ray_job(head, "logs", "--address", head.dashboard,
                                                                    resumed)[-3000:]
    table = pd.read_parquet(study_dir / "results.parquet")
    assert not table.duplicated(["trial_id", "epoch"]).any()
    assert table.groupby("trial_id")["epoch"].apply(sorted).tolist() == [[1, 2, 3, 4]] * 3
    assert (final_rows(table)["status"] == "completed").all()
    cut = set(final_rows(before).query("fidelity < 1")["trial_id"])  # stopped mid-run: go on from their checkpoint
    assert assert_finished_epochs_kept(before, table) == cut
    # the searches live in PostgreSQL: each trial told once, as finished; no SQLite file was made
    trials = [t for t in optuna.load_study(study_name="t-vlpet-large", storage=postgres.url).trials
              if "duplicate_of" not in t.user_attrs]
    assert len(trials) == 3 and all(t.state.name == "COMPLETE" for t in trials)
    assert not (study_dir / "optuna.db").exists()
