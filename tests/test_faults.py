"""Faults on a real two-node cluster: the worker node's raylet is killed mid-study; the affected trial
is retried from its last checkpoint and the results table holds every trial exactly once with every
finished epoch. A trial whose loss goes NaN fails cleanly and the study goes on."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.kept_epochs import assert_finished_epochs_kept
from tests.ray_nodes import LocalRayCluster
from tests.test_study import final_rows, study_dict

ROOT = Path(__file__).resolve().parents[1]


def _frontier(config: Path, study_dir: Path, cluster: LocalRayCluster) -> subprocess.Popen:
    """The study's driver joining `cluster` with the cluster's environment (its token among it)."""
    return subprocess.Popen([sys.executable, str(ROOT / "studies" / "frontier.py"), "--config", str(config),
                             "--address", cluster.address, "--study-dir", str(study_dir), "--no-report"],
                            env={**cluster.env, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)


def _stop_and_fail(proc: subprocess.Popen, why: str) -> None:
    proc.kill()
    pytest.fail(f"{why}: {proc.communicate()[1][-3000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("runner", ["trial", "workers"])
def test_study_spans_two_nodes_and_a_killed_worker_node_loses_no_trial_and_no_epoch(two_nodes, bench, tokenizer_dir,
                                                                                    tmp_path, runner):
    """Through `--address`: the two concurrent trials run one per node (one CPU each), in their trial
    processes or in Ray Train worker groups; once the worker node's trial has reported its second epoch (of
    four), the worker node's raylet and its worker processes are killed. Tune retries the trial that was on
    it from its last checkpoint (on the head, once the head's trial is done) and the study completes."""
    data = study_dict(bench, tokenizer_dir, variants=["vlpet-large"], trials_per_variant=2, max_concurrent_trials=2,
                      early_stopping="none", paper_reference=False, max_failures=3)
    data["run"]["train"].update(epochs=4, runner=runner)
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(data))
    study_dir = tmp_path / "study"
    proc = _frontier(config, study_dir, two_nodes)
    results = study_dir / "results.parquet"
    worker_node = two_nodes.worker_node_id()
    deadline = time.time() + 420
    # the kill lands once the worker node's trial has reported its second epoch of four: it has to be retried,
    # and its first epoch's checkpoint is Tune's by then (Tune saves a reported checkpoint in a call to the
    # trial after the result; the second result is taken only once that save is done)
    while time.time() < deadline and proc.poll() is None:
        if results.is_file():
            table = pd.read_parquet(results)
            if table.loc[table["node_id"] == worker_node, "epoch"].nunique() == 2:
                break
        time.sleep(0.25)
    else:
        _stop_and_fail(proc, "no trial reported two epochs on the worker node")
    before = pd.read_parquet(results)
    on_worker = before[before["node_id"] == worker_node]
    # the epoch reported just before the loss may not be saved yet: it can be trained again (same score)
    saved = before.drop(on_worker[on_worker["epoch"] == on_worker["epoch"].max()].index)
    raylet = two_nodes.worker_raylet()  # the node lost whole: its raylet and the trial processes it started
    for node_process in [*raylet.children(recursive=True), raylet]:
        node_process.kill()
    try:
        _, err = proc.communicate(timeout=600)
    except subprocess.TimeoutExpired:
        _stop_and_fail(proc, "the study did not finish after the node was killed")
    assert proc.returncode == 0, err[-3000:]
    table = pd.read_parquet(results)
    final = final_rows(table)
    assert len(final) == 2 and (final["status"] == "completed").all()  # none lost
    assert not table.duplicated(["trial_id", "epoch"]).any()  # none duplicated
    for _, rows in table.groupby("trial_id"):
        assert sorted(rows["epoch"]) == [1, 2, 3, 4]  # every finished epoch kept
    assert table["node_id"].nunique() == 2  # the trials ran on both nodes
    # the trial on the killed node went on in a new process from its last checkpoint; epoch 1 is its first run's
    assert assert_finished_epochs_kept(saved, table), "no trial was retried in a new process after the kill"


@pytest.mark.slow
def test_nan_trial_fails_cleanly_and_the_study_goes_on(bench, tokenizer_dir, tmp_path):
    import ray

    from studies.driver.ray_cluster import connect
    from studies.driver.study import run_study
    from studies.plan.study_config import study_from_dict

    data = study_dict(bench, tokenizer_dir, variants=["vlpet-large"], trials_per_variant=2, max_concurrent_trials=2,
                      early_stopping="none", paper_reference=False, max_failures=0)
    # the first trial is the default setting (lr 1e-3, trains normally); with sampler seed 1 the second draws
    # the learning rate that explodes the loss
    data["search"]["vlpet"]["lr"] = {"choice": [1.0e-3, 1.0e6]}
    data["run"]["train"]["clip_grad_norm"] = 0.0
    data["run"]["train"]["epochs"] = 1
    data["study"]["sampler_seed"] = 1
    connect(num_cpus=2, log_to_driver=False)
    try:
        table = run_study(study_from_dict(data), tmp_path / "study")
    finally:
        ray.shutdown()
    final = final_rows(table)
    lrs = final["config"].map(lambda c: yaml.safe_load(c)["lr"])
    assert set(lrs) == {1.0e6, 1.0e-3}, "the sampler should try both learning rates"
    failed = final[lrs == 1.0e6]
    assert (failed["status"] == "failed").all() and failed["error"].str.contains("loss became").all()
    assert (final[lrs == 1.0e-3]["status"] == "completed").all()
