"""Search efficiency on the embedded benchmark: the hypervolume each search reaches against the compute
it spends, on a grid of every default variant x 6 settings (48 configurations, every epoch recorded):

    default                       the embedded study's: the front sampler (`study.sampler: auto`) per
                                  variant, `front` early stopping (can it still reach the front at its
                                  size?) from epoch 2 (`grace_period` 2)
    front-grace1                  the same, deciding from epoch 1
    gp+pareto (previous default)  Optuna's multi-objective GP per variant, Pareto-rank ASHA, grace 2
    tpe+asha                      multi-objective TPE per variant, ASHA on the score per variant, grace 1
    random                        Optuna's random sampler per variant, every trial to the last epoch
    random+asha                   the random sampler with ASHA per variant

    python bench/search_efficiency.py [--grid-dir runs/bench-grid-all] [--epochs 4] [--trials 4] [--seeds 5]
                                      [--out bench/search_efficiency]

Phase 1 trains the grid for real, once (a Tune grid of trials through the study's `run_points`;
resumable: re-running the command continues it) and records every trial's per-epoch validation reports
in <grid-dir>/results.parquet. Phase 2 runs each search arm through the driver's own `search` (Ray Tune
+ the Optuna searches + the scheduler + the results table), several sampler seeds each, with a trainable
that replays the grid's recorded reports for the configuration it is given instead of training it
again. The arms search exactly the grid's discrete space, so every configuration they draw has a
recorded run; what differs between arms is which configurations they try and how many epochs they spend
on each. Compute is counted in epochs trained (a replayed epoch stands for a trained one), so it does not
depend on this machine's load; the grid's recorded training + validation time of those epochs is printed
beside it (`time_%`: a full fine-tuning epoch costs more than a PET one). (Training noise is not
re-sampled: each grid point has one seed.)

Hypervolume: the reports' reference point (100 % params, score 0), as % of the grid's front.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from analysis.hypervolume import DEFAULT_REFERENCE, hypervolume_2d, hypervolume_history
from analysis.results_contract import PRUNED, REPORT_COLUMNS, final_rows, task_columns
from analysis.study_layout import STUDY_JSON
from studies.driver.ray_cluster import loopback_local_cluster
from studies.plan.trial_run import trial_run
from vlpet.errors import entry_point

# The grid: every default variant x 6 settings, the searched knobs of each method's embedded space
# (`search:` choices of studies/configs/embedded.yaml); the other fields stay at the embedded default
GRID = {
    "vlpet": {"rank": (8, 16, 32), "lr": (5e-3, 1e-2)},
    "lora": {"rank": (4, 8, 16), "lr": (1.5e-3, 3e-3)},
    "adapter": {"reduction_factor": (4, 8, 16), "lr": (5e-3, 1e-2)},
    "bitfit": {"lr": (3e-3, 5e-3, 1e-2, 2e-2, 3e-2, 5e-2)},
    "full": {"lr": (1.25e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 4e-3)},
}
FIXED = {"vlpet": {"n_heads": 4, "decoder_rank": 16, "scale": 1.0, "shared": True}, "lora": {"alpha": 16.0}}
PET_MAX = 12.0  # params %: the PET region (every PET configuration of the grid; full fine-tuning is 100 %)
EPOCH_S = 0.3  # replayed epochs take equal time, so concurrent trials interleave as real ones do
# arm -> (study.sampler, study.early_stopping, study.grace_period)
# (names hold no comma: --arms is a comma-separated list of them)
ARMS = {"default": ("auto", "front", 2), "front-grace1": ("auto", "front", 1),
        "gp+pareto (previous default)": ("gp", "pareto", 2), "tpe+asha": ("tpe", "asha", 1),
        "random": ("random", "none", 1), "random+asha": ("random", "asha", 1)}


def grid_points(cfg: Any) -> list[tuple[str, dict[str, Any]]]:
    """(study variant, parameters) of every grid point of the study's variants."""
    points = []
    for name in cfg.settings.variants:
        method = cfg.method_of(name)
        knobs = GRID[method]
        for values in itertools.product(*knobs.values()):
            points.append((name, {**FIXED.get(method, {}), **dict(zip(knobs, values))}))
    return points


def study_data(epochs: int) -> dict[str, Any]:
    """The embedded study restricted to the grid's space (`search:` choices) with `epochs` epochs."""
    from studies.plan.study_config import load_study

    data = load_study(None).to_dict()
    data["study"].update(early_stopping="none", seeds=1, max_concurrent_trials=2, paper_reference=False)
    data["search"] = {m: {**{k: {"choice": list(v)} for k, v in knobs.items()}, **FIXED.get(m, {})}
                      for m, knobs in GRID.items()}
    data["run"]["train"].update(epochs=epochs, eval_every=1)  # every epoch is replayed, early-stopping arms compare them
    return data


def record_grid(data: dict[str, Any], grid_dir: Path) -> pd.DataFrame:
    """Train every grid point to the last epoch (or finish an interrupted grid); the results table."""
    from rich.console import Console

    from studies.driver.study import Study
    from studies.plan.study_config import study_from_dict

    cfg = study_from_dict(data)
    grid_dir = grid_dir.resolve()
    grid_dir.mkdir(parents=True, exist_ok=True)
    (grid_dir / STUDY_JSON).write_text(json.dumps(cfg.to_dict(), indent=2))
    runs = [cfg.describe_trial(v, params) for v, params in grid_points(cfg)]
    print(f"grid: {len(runs)} trials x {cfg.template.train.epochs} epochs under {grid_dir} (resumable)", flush=True)
    study = Study(cfg, grid_dir, resume=True, console=Console())  # an hour on CPU: show the progress
    study.run_points("grid", runs)
    return study.table.frame()


def grid_key(cfg: Any, variant: str, params: dict[str, Any]) -> tuple:
    """A grid point's identity: its variant and the values of its method's grid knobs."""
    return (variant, *(float(params[k]) for k in GRID[cfg.method_of(variant)]))


def grid_reports(cfg: Any, table: pd.DataFrame) -> dict[tuple, list[dict[str, Any]]]:
    """grid_key -> the recorded per-epoch reports of that grid point, in epoch order (with `run_time_s`,
    the recorded compute so far, which the replay's rows carry as their wall time)."""
    out = {}
    for _, rows in table.sort_values("epoch").groupby("trial_id"):
        first = rows.iloc[0]
        keys = [*REPORT_COLUMNS, *task_columns(rows)]
        reports = [{k: r[k] for k in keys} for _, r in rows.iterrows()]
        spent = rows["train_time_s"].fillna(0).to_numpy() + rows["eval_time_s"].fillna(0).to_numpy()
        for report, run_time in zip(reports, spent.cumsum()):
            report["run_time_s"] = float(run_time)
        out[grid_key(cfg, first["variant"], json.loads(first["config"]))] = reports
    return out


def replay(config: dict[str, Any], cfg: Any, grid: dict[tuple, list[dict[str, Any]]]) -> None:
    """A trial that reports the grid's recorded epochs of its configuration (the scheduler may stop it early)."""
    from ray import tune

    run = trial_run(config)
    for report in grid[grid_key(cfg, run["search"], run["config"])]:
        time.sleep(EPOCH_S)
        tune.report(dict(report))


def run_arm(data: dict[str, Any], arm: tuple[str, str, int], seed: int, trials: int, grid: dict,
            root: Path) -> pd.DataFrame:
    """One search (every variant, `trials` trials each) with replayed trials; its results table."""
    from ray import tune

    from studies.driver.study import Study
    from studies.plan.study_config import study_from_dict
    from studies.search.searcher import trials_per_variant

    sampler, early_stopping, grace = arm
    data = {**data, "study": {**data["study"], "sampler": sampler, "early_stopping": early_stopping,
                              "sampler_seed": seed, "trials_per_variant": trials, "grace_period": grace,
                              "name": f"{sampler}-{early_stopping}-{grace}-{seed}"}}
    cfg = study_from_dict(data)
    study_dir = root / cfg.settings.name
    study_dir.mkdir()
    trainable = tune.with_resources(tune.with_parameters(replay, cfg=cfg, grid=grid), {"cpu": 1})
    study = Study(cfg, study_dir, trainable=trainable)
    study.run_search(trials_per_variant(cfg.settings))
    return study.table.frame()


def curve(table: pd.DataFrame) -> pd.DataFrame:
    """Hypervolume and epochs trained after each finished trial."""
    return hypervolume_history(table, reference=DEFAULT_REFERENCE)[["epochs", "hypervolume"]]


def figure(curves: dict[str, list[pd.DataFrame]], grid_epochs: float, grid_hv: float) -> Any:
    """Hypervolume (% of the grid's) against compute (% of the grid's), a line per arm and seed."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative

    fig = go.Figure()
    for (arm, runs), colour in zip(curves.items(), qualitative.Plotly):
        for k, c in enumerate(runs):
            fig.add_trace(go.Scatter(x=100 * c["epochs"] / grid_epochs, y=100 * c["hypervolume"] / grid_hv,
                                     mode="lines+markers", line_shape="hv", line={"color": colour, "width": 1.5},
                                     marker={"size": 5}, name=arm, legendgroup=arm, showlegend=k == 0, opacity=0.75))
    fig.add_vline(x=30, line_dash="dot", annotation_text="30 % of the grid's compute")
    fig.add_hline(y=95, line_dash="dot", annotation_text="95 % of the grid's hypervolume")
    fig.update_layout(title="Search efficiency on the embedded benchmark (one line per sampler seed)",
                      xaxis_title="compute: epochs trained, % of the exhaustive grid's",
                      yaxis_title="hypervolume, % of the grid's", template="plotly_white", width=900, height=560)
    return fig


def pet_hypervolume(points: pd.DataFrame, reference: tuple[float, float]) -> float:
    """The hypervolume of the points in the PET region (params % <= PET_MAX) against `reference`: the
    default reference (100 %, 0) is dominated by full fine-tuning's rectangle, so it hardly tells two
    searches of the cheap configurations apart."""
    pet = points[points["params_pct"] <= PET_MAX]
    return hypervolume_2d(pet["params_pct"], pet["score"], *reference)


def arm_row(arm: str, seed: Any, table: pd.DataFrame, grid: tuple[float, float, float],
            pet: tuple[tuple[float, float], float]) -> dict[str, Any]:
    """One search's totals: trials, compute (epochs; recorded time) and hypervolume as % of the grid's
    (`grid`: its epochs, recorded seconds and hypervolume; `pet`: the PET region's reference and the grid's
    hypervolume there)."""
    fin = final_rows(table)
    full = fin[fin["full_fidelity"]]
    hv = hypervolume_2d(full["params_pct"], full["score"], *DEFAULT_REFERENCE)
    epochs, seconds, grid_hv = grid
    return {"arm": arm, "seed": seed, "trials": len(fin), "pruned": int((fin["status"] == PRUNED).sum()),
            "epochs": float(fin["epoch"].sum()), "compute_%": 100 * float(fin["epoch"].sum()) / epochs,
            "time_%": 100 * float(fin["wall_time_s"].sum()) / seconds, "hv_%": 100 * hv / grid_hv,
            "pet_hv_%": 100 * pet_hypervolume(full, pet[0]) / pet[1]}


@entry_point
def main() -> int:
    """Record the grid (once), replay every arm with several seeds, print the ratios, save the plot."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid-dir", type=Path, default=Path("runs/bench-grid-all"),
                   help="where the grid is trained (resumable)")
    p.add_argument("--epochs", type=int, default=4, help="epochs per grid trial (the schedulers' max_t)")
    p.add_argument("--trials", type=int, default=4, help="trials per variant of each search arm")
    p.add_argument("--seeds", type=int, default=5, help="sampler seeds per search arm")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms to replay (default: all)")
    p.add_argument("--num-cpus", type=int, default=2, help="logical CPUs of the local Ray")
    p.add_argument("--out", type=Path, default=Path("bench/search_efficiency"), help="plot path (.html, .png, .svg)")
    args = p.parse_args()
    arms = [a.strip() for a in args.arms.split(",")]
    if unknown := [a for a in arms if a not in ARMS]:
        p.error(f"--arms: unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    loopback_local_cluster()  # before ray is imported: the local cluster on 127.0.0.1 only

    import ray

    from analysis.plots import save_figures
    from studies.driver.ray_cluster import connect
    from studies.plan.study_config import study_from_dict

    data = study_data(args.epochs)
    cfg = study_from_dict(data)
    connect(num_cpus=args.num_cpus, log_to_driver=False)
    try:
        table = record_grid(data, args.grid_dir)
        done = final_rows(table)
        if not done["full_fidelity"].all() or len(done) != len(grid_points(cfg)):
            print(f"the grid is incomplete ({int(done['full_fidelity'].sum())} of {len(grid_points(cfg))} trials "
                  "finished): run the command again to finish it", file=sys.stderr)
            return 1
        grid = grid_reports(cfg, table)
        grid_compute = sum(r[-1]["run_time_s"] for r in grid.values())
        grid_hv = hypervolume_2d(done["params_pct"], done["score"], *DEFAULT_REFERENCE)
        replayed = table.assign(wall_time_s=table["trial_id"].map(  # the grid's own curve, in recorded compute
            {tid: float(r["train_time_s"].fillna(0).sum() + r["eval_time_s"].fillna(0).sum())
             for tid, r in table.groupby("trial_id")}))
        totals = (float(done["epoch"].sum()), grid_compute, grid_hv)
        pet_reference = (PET_MAX, float(done.loc[done["params_pct"] <= PET_MAX, "score"].min()))
        pet = (pet_reference, pet_hypervolume(done, pet_reference))
        curves: dict[str, list[pd.DataFrame]] = {"grid": [curve(replayed)]}
        rows = [arm_row("grid", "-", replayed, totals, pet)]
        with tempfile.TemporaryDirectory(prefix="vlpet-search-eff-") as tmp:
            for arm in arms:
                curves[arm] = []
                for seed in range(args.seeds):
                    t = run_arm(data, ARMS[arm], seed, args.trials, grid, Path(tmp))
                    curves[arm].append(curve(t))
                    rows.append(arm_row(arm, seed, t, totals, pet))
                    print(f"{arm} seed {seed}: {rows[-1]['trials']} trials, {rows[-1]['pruned']} stopped early, "
                          f"compute {rows[-1]['compute_%']:.1f} %, hypervolume {rows[-1]['hv_%']:.1f} % of the grid's "
                          f"({rows[-1]['pet_hv_%']:.1f} % in the PET region)", flush=True)
    finally:
        ray.shutdown()
    res = pd.DataFrame(rows)
    print(f"\ngrid: {len(done)} trials, {totals[0]:.0f} epochs, {grid_compute:.0f} s recorded; hypervolume (reference 100 % "
          f"params, score 0) of its front {grid_hv:,.1f}")
    print(res.round(2).to_string(index=False))
    print(f"PET region: params <= {PET_MAX:g} %, reference ({pet_reference[0]:g} %, {pet_reference[1]:.2f}: the grid's "
          f"lowest final score there); the grid's hypervolume there {pet[1]:,.1f}")
    summary = res[res["arm"] != "grid"].groupby("arm", sort=False)[
        ["compute_%", "time_%", "hv_%", "pet_hv_%", "pruned"]].agg(["mean", "min", "max"])
    print("\nper arm over seeds (mean, min, max):")
    print(summary.round(1).to_string())
    ours = res[res["arm"] == "default"]
    if len(ours):
        hit = ((ours["hv_%"] >= 95) & (ours["compute_%"] <= 30)).mean()
        print(f"\ntarget (the default search >= 95 % of the grid's hypervolume with <= 30 % of its compute): met by "
              f"{hit:.0%} of seeds; mean {ours['hv_%'].mean():.1f} % hypervolume at {ours['compute_%'].mean():.1f} % "
              "compute")
    save_figures({args.out: figure(curves, totals[0], grid_hv)})
    print(f"plot: {args.out.with_suffix('.png')} (and .svg, .html)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
