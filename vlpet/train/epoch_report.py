"""What the training loop reports after every epoch: the keys of its report, which a study's trials pass on
and its results table keeps (analysis/results_contract.py)."""

from __future__ import annotations

TASK_PREFIX = "score_"  # per-task scores: score_<task>

# what every epoch report of the training loop holds (besides the score_<task> keys)
EPOCH_KEYS = ("epoch", "max_epochs", "fidelity", "score", "loss", "steps", "examples_per_s", "world_size", "params",
              "total_params", "params_pct", "setup_time_s", "train_time_s", "run_time_s")
# only in the epochs that validate
EVAL_KEYS = ("eval_time_s",)
