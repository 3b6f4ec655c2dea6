"""Orchestration overhead of a study: seconds per trial spent outside training and evaluation.

    python bench/orchestration.py [--config studies/configs/embedded.yaml] [--variants vlpet-large]
                                  [--trials 4] [--epochs 2] [--num-cpus 2] [--concurrency 2] [--no-asha]
    python bench/orchestration.py --study-dir runs/studies/embedded     # a finished study, e.g. `make run`

Runs a real study (local Ray, Tune + Optuna, one Ray Train TorchTrainer per trial) and splits every
trial's wall time, as the driver saw it (from Tune starting the trial to its last report), into:

    trial start      Tune schedules the trial and its process starts, up to building the TorchTrainer
    worker start     the Train controller and worker group start, up to the worker function running
    worker setup     imports in the worker, model, tokenizer, data and optimizer
    train + eval     the epochs' training and validation (the work)
    report/ckpt      the rest: per-epoch reports, checkpoints to storage, result delivery

plus the study-level costs: Ray start, and the share of the study's trial slots (wall x concurrency)
not spent training or evaluating. Timings come from the results table's clocks (`started_at`,
`submitted_at`, `worker_started_at`, `reported_at`, `setup_time_s`, `train_time_s`, `eval_time_s`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

PARTS = ("trial start", "worker start", "worker setup", "train + eval", "report/ckpt")


def breakdown(table: pd.DataFrame) -> pd.DataFrame:
    """Per trial: its wall time as the driver saw it and the parts of `PARTS` (seconds)."""
    rows = []
    for trial_id, t in table.sort_values("epoch").groupby("trial_id"):
        first, last = t.iloc[0], t.iloc[-1]
        work = float((t["train_time_s"].fillna(0) + t["eval_time_s"].fillna(0)).sum())
        wall = last["reported_at"] - first["started_at"]
        # the first epoch started when its report arrived minus its own train + eval time
        first_epoch_start = first["reported_at"] - first["train_time_s"] - (first["eval_time_s"] or 0.0)
        parts = {
            "trial start": first["submitted_at"] - first["started_at"],
            "worker start": first["worker_started_at"] - first["submitted_at"],
            "worker setup": first_epoch_start - first["worker_started_at"],
            "train + eval": work,
        }
        parts["report/ckpt"] = wall - sum(parts.values())
        rows.append({"trial_id": trial_id, "variant": last["variant"], "epochs": len(t), "status": last["status"],
                     "wall_s": wall, **parts, "overhead_s": wall - work})
    return pd.DataFrame(rows)


def run(args: argparse.Namespace) -> tuple[pd.DataFrame, int, float, float]:
    """Run the study; its table, trial slots, study wall time and Ray start time."""
    import ray

    from studies.driver import run_study
    from studies.ray_cluster import connect
    from studies.study_config import load_study, study_from_dict

    data = load_study(args.config).to_dict()
    data["study"].update(variants=args.variants.split(","), trials_per_variant=args.trials, name="orchestration",
                         asha=not args.no_asha, max_concurrent_trials=args.concurrency)
    if args.epochs:
        data["run"]["train"]["epochs"] = args.epochs
    data["run"]["train"]["eval_every"] = 1  # every epoch, as ASHA needs and as the bench measured before
    cfg = study_from_dict(data)
    start = time.perf_counter()
    connect(num_cpus=args.num_cpus, log_to_driver=False)
    ray_start = time.perf_counter() - start
    try:
        with tempfile.TemporaryDirectory(prefix="vlpet-orchestration-") as tmp:
            study_start = time.perf_counter()
            table = run_study(cfg, Path(tmp) / "study")
            study_wall = time.perf_counter() - study_start
    finally:
        ray.shutdown()
    return table, cfg.settings.max_concurrent_trials, study_wall, ray_start


def stored(study_dir: Path) -> tuple[pd.DataFrame, int, float]:
    """A finished study's table, trial slots and wall time (first trial start to last report)."""
    table = pd.read_parquet(study_dir / "results.parquet")
    slots = json.loads((study_dir / "study.json").read_text())["study"]["max_concurrent_trials"]
    return table, slots, float(table["reported_at"].max() - table["started_at"].min())


def main() -> int:
    """Run the study (or read a finished one), print the per-trial breakdown and the overhead figures."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="study config (default: the embedded study)")
    p.add_argument("--variants", default="vlpet-large", help="comma-separated variants")
    p.add_argument("--trials", type=int, default=4, help="trials per variant")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the config's)")
    p.add_argument("--num-cpus", type=int, default=2, help="logical CPUs of the local Ray")
    p.add_argument("--concurrency", type=int, default=2, help="trials at a time (1: no contention between trials)")
    p.add_argument("--no-asha", action="store_true", help="run every trial to the last epoch")
    p.add_argument("--study-dir", type=Path, help="analyse this finished study instead of running one "
                                                  "(e.g. runs/studies/embedded after `make run`)")
    args = p.parse_args()

    if args.study_dir:
        table, slots, study_wall = stored(args.study_dir)
        setting = f"{args.study_dir}"
        startup = "Ray start not in the table"
    else:
        table, slots, study_wall, ray_start = run(args)
        setting = f"{args.variants}, {args.num_cpus} CPUs"
        startup = f"Ray start {ray_start:.1f} s once per study, not included"
    trials = breakdown(table)
    work = trials["train + eval"].sum()
    print(f"\n{len(trials)} trials ({setting}), {trials['epochs'].max()} epochs max, {slots} at a time; "
          f"study wall {study_wall:.1f} s")
    print(trials.round(2).to_string(index=False))
    mean = trials[list(PARTS)].mean()
    print("\nmean per trial (s): " + ", ".join(f"{k} {v:.2f}" for k, v in mean.items()))
    print(f"overhead per trial (outside train + eval): mean {trials['overhead_s'].mean():.2f} s, "
          f"median {trials['overhead_s'].median():.2f} s")
    print(f"share of trial time outside train + eval: {trials['overhead_s'].sum() / trials['wall_s'].sum():.1%}")
    gap = study_wall * slots - trials["wall_s"].sum()
    print(f"slot time outside any trial (Tune scheduling, trial process start and teardown): "
          f"{gap:.1f} s in all, {gap / len(trials):.1f} s per trial")
    print(f"share of the study's trial slots (wall x {slots}) outside train + eval: "
          f"{1 - work / (study_wall * slots):.1%} ({startup})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
