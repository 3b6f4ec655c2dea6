"""A study across a real two-node Ray cluster on 127.0.0.1 (two raylets), through `--address`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.test_study import final_rows, study_dict

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_study_runs_trials_on_both_nodes(two_nodes, bench, tokenizer_dir, tmp_path):
    data = study_dict(bench, tokenizer_dir, variants=["vlpet-large"], trials_per_variant=2, max_concurrent_trials=2,
                      asha=False)
    data["run"]["train"]["epochs"] = 1
    config = tmp_path / "study.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RAY_AUTH_MODE": "token"}
    proc = subprocess.run([sys.executable, str(ROOT / "studies" / "frontier.py"), "--config", str(config),
                           "--address", two_nodes.address, "--study-dir", str(tmp_path / "study"), "--no-report"],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = final_rows(pd.read_parquet(tmp_path / "study" / "results.parquet"))
    assert len(final) == 2 and (final["status"] == "completed").all()
    assert final["node_id"].nunique() == 2  # one CPU per node: the two concurrent trials ran on different nodes
