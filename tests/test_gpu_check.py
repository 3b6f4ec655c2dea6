"""bench/gpu_check.py, the one command of the GPU check, run as its CPU variant: every part runs and
reports figures of the right form (what it prints on a GPU is in bench/RESULTS.md once a device has run it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_runs_its_three_parts_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--cpu", "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    figures = json.loads(out.read_text())
    steps = figures["step_cost"]
    assert list(steps) == ["full", "vlpet-large", "vlpet-small", "lora", "adapter"]
    assert steps["full"]["step_x_full"] == 1.0 and all(r["tokens_per_s"] > 0 for r in steps.values())
    assert all(r["trainable"] < steps["full"]["trainable"] for name, r in steps.items() if name != "full")
    trial = figures["trial"]
    assert trial["epochs"] == 1 and trial["startup_s"] > 0 and trial["epoch_s"] > 0
    scores = figures["scores"]
    assert set(scores["cpu"]) == {"vqa", "gqa", "nlvr", "caption", "score"}
    assert scores["device"] == scores["cpu"] and scores["max_abs_diff"] == 0.0  # one device: trained once
    assert "1. step cost" in run.stdout and "2. one trial" in run.stdout and "3. embedded default" in run.stdout


def test_gpu_check_without_a_gpu_says_how_to_run_it(tmp_path):
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_check.py"), "--out", str(tmp_path / "x.json")],
                         env={**os.environ, "PYTHONPATH": str(ROOT), "CUDA_VISIBLE_DEVICES": ""},
                         capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 2 and "no CUDA device visible; run on a GPU machine, or with --cpu" in run.stderr
