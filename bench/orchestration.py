"""Orchestration overhead of a study: seconds per trial spent outside training and evaluation.

    python bench/orchestration.py [--runner both|trial|workers] [--default-study] [--variants vlpet-large]
                                  [--trials 4] [--epochs 2] [--num-cpus 2] [--concurrency 2] [--no-early-stopping]
    python bench/orchestration.py --study-dir runs/studies/embedded     # a finished study, e.g. `make run`

Runs a real study (local Ray, Tune + Optuna) once per runner, side by side: trials that train in their
Tune trial process (`train.runner: trial`, the default for one worker) and trials that each start a Ray
Train TorchTrainer worker group (`workers`); `--default-study` also runs the embedded default study on
each. Every trial's wall time, as the driver saw it (from Tune starting the trial to its last report),
is split into:

    trial start      Tune schedules the trial and its process starts (or is reused), up to the trial function
    worker start     the Train controller and worker group start, up to the worker function (0 in-process)
    worker setup     imports (once per process when reused), model, tokenizer, data and optimizer
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

import pandas as pd

from analysis.study_layout import RESULTS, STUDY_JSON
from studies.driver.ray_cluster import loopback_local_cluster
from vlpet.errors import entry_point

PARTS = ("trial start", "worker start", "worker setup", "train + eval", "report/ckpt")


def _seconds(value: float | None) -> float:
    """A duration column's value; 0 where the epoch had no such part (no validation: NaN)."""
    return 0.0 if pd.isna(value) else float(value)


def breakdown(table: pd.DataFrame) -> pd.DataFrame:
    """Per trial: its wall time as the driver saw it and the parts of `PARTS` (seconds)."""
    rows = []
    for trial_id, t in table.sort_values("epoch").groupby("trial_id"):
        first, last = t.iloc[0], t.iloc[-1]
        work = float((t["train_time_s"].fillna(0) + t["eval_time_s"].fillna(0)).sum())
        wall = last["reported_at"] - first["started_at"]
        # the first epoch started when its report arrived minus its own train + eval time
        first_epoch_start = first["reported_at"] - first["train_time_s"] - _seconds(first["eval_time_s"])
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


def run(args: argparse.Namespace, runner: str, default_study: bool = False) -> tuple[pd.DataFrame, int, float, float]:
    """Run the study with every trial on `runner`: the bench's study (`--variants`, `--trials`, ...) or,
    with `default_study`, the embedded default study as `python studies/frontier.py` runs it. Returns its
    table, trial slots, study wall time and Ray start time."""
    import ray

    from studies.driver.ray_cluster import connect
    from studies.driver.study import run_study
    from studies.plan.study_config import load_study, study_from_dict

    data = load_study(None if default_study else args.config).to_dict()
    if not default_study:
        data["study"].update(variants=args.variants.split(","), trials_per_variant=args.trials,
                             early_stopping="none" if args.no_early_stopping else "pareto",
                             max_concurrent_trials=args.concurrency)
        if args.epochs:
            data["run"]["train"]["epochs"] = args.epochs
        data["run"]["train"]["eval_every"] = 1  # every epoch, as ASHA needs and as the bench measured before
    data["study"]["name"] = f"orchestration-{runner}"
    data["run"]["train"]["runner"] = runner
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
    table = pd.read_parquet(study_dir / RESULTS)
    slots = json.loads((study_dir / STUDY_JSON).read_text())["study"]["max_concurrent_trials"]
    return table, slots, float(table["reported_at"].max() - table["started_at"].min())


def summarise(table: pd.DataFrame, slots: int, study_wall: float, setting: str) -> dict[str, float]:
    """Print one study's per-trial breakdown and overhead figures; return the figures."""
    trials = breakdown(table)
    work = trials["train + eval"].sum()
    print(f"\n{len(trials)} trials ({setting}), {trials['epochs'].max()} epochs max, {slots} at a time; "
          f"study wall {study_wall:.1f} s")
    print(trials.round(2).to_string(index=False))
    mean = trials[list(PARTS)].mean()
    print("mean per trial (s): " + ", ".join(f"{k} {v:.2f}" for k, v in mean.items()))
    figures = {"overhead_s": trials["overhead_s"].mean(), "overhead_median_s": trials["overhead_s"].median(),
               "trial_share": trials["overhead_s"].sum() / trials["wall_s"].sum(),
               "idle_s": (study_wall * slots - trials["wall_s"].sum()) / len(trials),
               "slot_share": 1 - work / (study_wall * slots), "wall_s": study_wall,
               "processes": table["pid"].nunique() if "pid" in table else float("nan"), "trials": len(trials)}
    print(f"overhead per trial (outside train + eval): mean {figures['overhead_s']:.2f} s, median "
          f"{figures['overhead_median_s']:.2f} s; {figures['trial_share']:.1%} of trial time")
    print(f"slot time outside any trial (Tune scheduling, trial process start and teardown): "
          f"{figures['idle_s']:.1f} s per trial")
    print(f"share of the study's trial slots (wall x {slots}) outside train + eval: {figures['slot_share']:.1%}")
    return figures


@entry_point
def main() -> int:
    """Run the study on each runner (or read a finished one), print the breakdowns and the ratios."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="study config (default: the embedded study)")
    p.add_argument("--variants", default="vlpet-large", help="comma-separated variants")
    p.add_argument("--trials", type=int, default=4, help="trials per variant")
    p.add_argument("--epochs", type=int, help="epochs per trial (default: the config's)")
    p.add_argument("--num-cpus", type=int, default=2, help="logical CPUs of the local Ray")
    p.add_argument("--concurrency", type=int, default=2, help="trials at a time (1: no contention between trials)")
    p.add_argument("--no-early-stopping", action="store_true", help="run every trial to the last epoch")
    p.add_argument("--runner", choices=["trial", "workers", "both"], default="both",
                   help="where trials train: in the trial process, in a Ray Train worker group, or both side by side")
    p.add_argument("--default-study", action="store_true",
                   help="also run the embedded default study (python studies/frontier.py) on each runner: wall times")
    p.add_argument("--study-dir", type=Path, help="analyse this finished study instead of running one "
                                                  "(e.g. runs/studies/embedded after `make run`)")
    args = p.parse_args()
    loopback_local_cluster()  # before ray is imported: the local cluster on 127.0.0.1 only

    if args.study_dir:
        table, slots, study_wall = stored(args.study_dir)
        summarise(table, slots, study_wall, f"{args.study_dir}; Ray start not in the table")
        return 0
    runners = ["workers", "trial"] if args.runner == "both" else [args.runner]
    figures = {}
    for runner in runners:
        table, slots, study_wall, ray_start = run(args, runner)
        figures[runner] = summarise(table, slots, study_wall, f"{args.variants}, runner {runner}, {args.num_cpus} CPUs; "
                                                              f"Ray start {ray_start:.1f} s once, not included")
    walls = {}
    if args.default_study:
        for runner in runners:
            table, slots, study_wall, _ = run(args, runner, default_study=True)
            walls[runner] = summarise(table, slots, study_wall, f"the embedded default study, runner {runner}")
    print(f"\n{'runner':<8} {'overhead s/trial':>17} {'trial share':>12} {'slot share':>11} {'processes':>10}"
          + (f" {'default study s':>16}" if walls else ""))
    for runner, f in figures.items():
        print(f"{runner:<8} {f['overhead_s']:>17.2f} {f['trial_share']:>12.1%} {f['slot_share']:>11.1%} "
              f"{f['processes']:>10.0f}" + (f" {walls[runner]['wall_s']:>16.1f}" if walls else ""))
    if len(figures) == 2:
        w, t = figures["workers"], figures["trial"]
        print(f"trial process vs worker group: overhead per trial x{t['overhead_s'] / w['overhead_s']:.3f}, "
              f"study wall x{t['wall_s'] / w['wall_s']:.3f}"
              + (f", default study wall x{walls['trial']['wall_s'] / walls['workers']['wall_s']:.3f}" if walls else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
