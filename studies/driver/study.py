"""A study: one Ray Tune experiment in which every variant is searched by multi-objective Optuna
(maximise the average validation score, minimise trainable parameters; `studies.search.searcher`) with early
stopping (`studies.search.schedulers`), then each paper variant's hand-picked configuration as a reference point,
then the front's configurations re-run with more seeds. Every trial
trains in its Tune trial process, or in a Ray Train worker group for data-parallel runs
(`studies.driver.trial`).

A trial stopped early keeps its rows in the results table with its fidelity, so the frontier is built
from full-fidelity runs only.

Persistence: the results table (Parquet, written atomically after every report), the Optuna study
(SQLite or PostgreSQL), Tune's experiment state and the checkpoints all live under the study
directory, or in the study's home on object storage (`studies.storage.study_home`), so a killed driver, or a
lost head node, resumes (`--resume`) with every finished result kept.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import ConcurrencyLimiter
from rich.console import Console

from analysis.pareto import pareto_front
from analysis.results_contract import REFERENCE, SEARCH, SEEDS, final_rows
from analysis.study_layout import RESULTS, RESULTS_CSV
from studies.driver.console import ConsoleCallback, StudyConsole
from studies.driver.interrupts import GracefulStop
from studies.driver.stopper import DeviceHoursStopper
from studies.driver.tracking import Tracking, mlflow_uri
from studies.driver.trial import run_trial
from studies.plan.study_config import StudyConfig
from studies.plan.trial_run import RUN, TrialRun
from studies.search.schedulers import study_scheduler
from studies.search.searcher import sampler_for_budget, study_searcher, trials_per_variant
from studies.storage import study_record
from studies.storage.results_table import ResultsTable, results_study_id
from studies.storage.study_home import HomeSync, StudyHome
from vlpet.train.ray_trainer import check_resources


def trial_dirname(trial: Any) -> str:
    """Short trial directories (Tune's default name embeds every parameter)."""
    return f"trial_{trial.trial_id}"


def study_trainable(cfg: StudyConfig, storage_path: str, study_dir: Path, home: str | None = None) -> Any:
    """The Tune trainable of every trial: `run_trial`, its output in the trial's log under `study_dir` (and
    uploaded to the study's `home` if it has one). An in-process trial holds its worker's CPUs and
    GPUs itself; a worker-group trial only waits on its TorchTrainer (checkpoints under
    <storage_path>/train), so it holds no CPU, a token of memory (Ray refuses empty bundles)."""
    t = cfg.template.train
    in_process = t.in_trial_process
    bundle = ({"CPU": t.cpus_per_worker, **({"GPU": t.gpus_per_worker} if t.gpus_per_worker else {})} if in_process
              else {"CPU": 0, "memory": 2**20})
    trainable = tune.with_parameters(run_trial, max_params=cfg.settings.max_params,
                                     train_storage=f"{storage_path.rstrip('/')}/train", in_process=in_process,
                                     study_dir=str(study_dir), home=home)
    return tune.with_resources(trainable, tune.PlacementGroupFactory([bundle]))


def frontier_configs(table: pd.DataFrame, noise: float = 0.0) -> list[dict[str, Any]]:
    """The (study variant `search`, drawn `config`) of every full-fidelity search or reference trial on the Pareto
    front, or within `noise` score points of it (a point that `noise` more would put on the front: its
    rank against the front is not established by one seed). A configuration trained twice is one point."""
    final = final_rows(table[table["phase"].isin([SEARCH, REFERENCE])])
    done = final[final["full_fidelity"]].drop_duplicates(["search", "config_key"], keep="last")
    if done.empty:
        return []
    p, s = done["params"].to_numpy(float), done["score"].to_numpy(float)
    near = [bool(pareto_front(np.append(np.delete(p, k), p[k]), np.append(np.delete(s, k), s[k] + noise))[-1])
            for k in range(len(done))]
    return [{"search": r["search"], "config": json.loads(r["config"])} for (_, r), keep in zip(done.iterrows(), near)
            if keep]


class Study:
    """One study: its config, its directory (results table, Optuna storage, study.json), where Tune keeps
    its state, the trainable of its trials, and the phases that fill the results table.

    `home`: where the study lives when it is not only on this machine (`studies.storage.study_home`): Tune's state
    goes there, and the study's files after each change; `study_dir` is then its working copy.
    `console`: where the study's progress is shown (`studies.driver.console`; default: quiet, as benchmarks and
    tests want it). `trainable` is for benchmarks that replay recorded trials instead of training them.
    Expects Ray to be initialised (see studies.driver.ray_cluster.connect)."""

    def __init__(self, cfg: StudyConfig, study_dir: Path, storage_path: str | None = None, resume: bool = False,
                 trainable: Any = None, console: Console | None = None, home: StudyHome | None = None):
        self.cfg, self.dir, self.resume, self.home = cfg, Path(study_dir).resolve(), resume, home
        self.storage_path = storage_path or (home.tune_storage if home else str(self.dir / "ray"))
        self.trainable = trainable or study_trainable(cfg, self.storage_path, self.dir, home and home.uri)
        recorded = study_record.check_study_dir(self.dir, resume)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.record = recorded if resume else study_record.describe(cfg.to_dict(), f"{cfg.family}-base", self.dir)
        t = cfg.template.train
        self.table = ResultsTable(self.dir, SEARCH, t.num_workers * max(t.gpus_per_worker, 1.0),
                                  study_id=self.record.get("study_id") or results_study_id(self.dir / RESULTS))
        self.console = StudyConsole(self.table, console or Console(quiet=True))
        self.stopper = DeviceHoursStopper(self.table, cfg.settings.gpu_hours)
        tracking = cfg.settings.tracking
        self.tracking = Tracking(self.dir, tracking, f"{cfg.settings.name}-{self.table.study_id}", self.table.study_id,
                                 mlflow_uri(cfg.settings.mlflow_uri) if "mlflow" in tracking else None
                                 ) if tracking else None
        self.stop = GracefulStop()

    def run(self) -> pd.DataFrame:
        """Check the cluster, search every variant, train the paper's configurations, re-run the front with
        extra seeds, and return the results table (also written as results.csv). A first SIGINT or SIGTERM
        ends it after the running experiment is saved, with `StudyInterrupted` (studies.driver.interrupts)."""
        check_resources(self.cfg.template.train)
        if not self.resume:
            study_record.write(self.dir, self.record)
        try:
            with self.stop:
                return self._phases()
        finally:  # finished or interrupted: the home gets the last of the study's files
            self.sync()

    def sync(self) -> None:
        """Upload the study's changed files to its home (a no-op for a study without one)."""
        if self.home:
            self.home.sync()

    def _phases(self) -> pd.DataFrame:
        s = self.cfg.settings
        start = time.perf_counter()
        self.run_search(trials_per_variant(s))
        if s.paper_reference and not self.stopper.stop_all():
            self.run_reference()
        if self.stopper.stop_all():
            self.console.print("device-hour budget spent: no seed re-runs")
        elif s.seeds > 1:
            self.run_seeds()
        frame = self.table.frame()
        frame.to_csv(self.dir / RESULTS_CSV, index=False)
        self.console.print(f"== study {s.name}: {frame['trial_id'].nunique()} trials in "
                           f"{time.perf_counter() - start:.0f} s; results in {self.table.path}")
        return frame

    def run_search(self, trials: dict[str, int]) -> None:
        """Run (or resume) the Optuna searches of the variants (`trials`: variant -> its number of trials)
        side by side in one Tune experiment."""
        s = self.cfg.settings
        # a restored experiment keeps its own searcher, which has had every variant's first trial
        # (enqueueing it again would add the point to the Optuna study a second time)
        searcher = study_searcher(self.cfg, trials, self.dir, first_trials=not self.restoring(SEARCH))
        tune_config = self._tune_config(search_alg=ConcurrencyLimiter(searcher, s.max_concurrent_trials),
                                        scheduler=study_scheduler(s, self.cfg.template.train.epochs),
                                        num_samples=sum(trials.values()), time_budget_s=s.time_budget_s)
        title = (f"search: {', '.join(f'{v} {n}' for v, n in trials.items())} trials (Optuna "
                 f"{sampler_for_budget(s.sampler, s.trials_per_variant)}, early stopping {s.early_stopping}; "
                 f"{s.max_concurrent_trials} at a time)")
        self._fit(SEARCH, tune_config, sum(trials.values()), title)

    def run_points(self, name: str, runs: list[TrialRun], title: str | None = None,
                   scheduler: TrialScheduler | None = None) -> None:
        """Train given trials (`StudyConfig.describe_trial`), no search: Tune's grid search over them in the
        experiment `name` (seed re-runs; the exhaustive grid of bench/search_efficiency.py), to full fidelity
        unless a `scheduler` stops some."""
        tune_config = self._tune_config(max_concurrent_trials=self.cfg.settings.max_concurrent_trials,
                                        **({"scheduler": scheduler} if scheduler else {}))
        self._fit(name, tune_config, len(runs), title or f"{name}: {len(runs)} trials",
                  {RUN: tune.grid_search(runs)})

    def run_reference(self) -> None:
        """Train each variant's paper configuration (`StudyConfig.paper_trials`) that the search did not
        already train: to full fidelity, or with front early stopping until it cannot reach the search's front."""
        frame = self.table.frame()
        searched = set() if frame.empty else {self._run_key(r["search"], json.loads(r["config"]))
                                              for _, r in final_rows(frame).iterrows() if r["phase"] == SEARCH}
        runs = [r for r in self.cfg.paper_trials() if self._run_key(r["search"], r["config"]) not in searched]
        if runs:
            self.run_points(REFERENCE, runs, f"the paper's configurations: {', '.join(r['variant'] for r in runs)} "
                                             "(reference points)", self._reference_stopping(frame))

    def _reference_stopping(self, frame: pd.DataFrame) -> TrialScheduler | None:
        """Under `front` early stopping, the rule for the reference points, starting from the search's finished
        learning curves and front; None (every reference to the end) under any other."""
        s = self.cfg.settings
        if s.early_stopping != "front" or frame.empty:
            return None
        scheduler = study_scheduler(s, self.cfg.template.train.epochs)
        search = frame[frame["phase"] == SEARCH]
        finished = final_rows(search)
        for tid in finished.loc[finished["full_fidelity"], "trial_id"]:
            rows = search[search["trial_id"] == tid].dropna(subset=["score"])
            scheduler.rule.add_finished(tid, float(rows["params"].iloc[-1]), dict(zip(rows["epoch"], rows["score"])),
                                        rows["search"].iloc[-1])
        return scheduler

    def _run_key(self, variant_name: str, params: dict[str, Any]) -> str:
        """What a trial trains, whatever the way its parameters were written: its method and lr."""
        spec = self.cfg.trial_spec(variant_name, params)
        return json.dumps([spec.method.to_dict(), spec.train.lr], sort_keys=True)

    def run_seeds(self) -> None:
        """Re-run every configuration on the front or within seed noise of it with the extra seeds
        (`study.seeds` in all), full fidelity; nothing further off the front is re-run."""
        points = frontier_configs(self.table.frame(), self.cfg.settings.seed_noise)
        base, seeds = self.cfg.template.train.seed, self.cfg.settings.seeds
        runs = [self.cfg.describe_trial(p["search"], p["config"], base + k) for p in points for k in range(1, seeds)]
        if runs:
            self.run_points(SEEDS, runs, f"seeds: the {len(points)} configurations on the front or within "
                                         f"{self.cfg.settings.seed_noise:g} of it, {seeds - 1} extra seed(s)")

    def restoring(self, name: str) -> bool:
        """Whether experiment `name` continues from its saved Tune state (then a new searcher is not used)."""
        return self.resume and tune.Tuner.can_restore(self._experiment_path(name))

    def _experiment_path(self, name: str) -> str:
        return f"{self.storage_path.rstrip('/')}/{name}"

    def _tune_config(self, **options: Any) -> tune.TuneConfig:
        return tune.TuneConfig(trial_dirname_creator=trial_dirname,
                               reuse_actors=self.cfg.template.train.in_trial_process, **options)

    def _fit(self, name: str, tune_config: tune.TuneConfig, total: int, title: str,
             param_space: dict | None = None) -> None:
        """Run experiment `name` of `total` trials (its rows are phase `name` of the table), or continue its saved
        state, its progress on the console under `title`."""
        self.stop.check()
        self.table.phase = name
        with self.console.phase(name, total, title):
            self._tuner(name, tune_config, param_space).fit()
        self.stop.check()  # an interrupted study's running trials stay open: --resume continues them
        self.table.close_unfinished("stopped unfinished: the study's compute budget (gpu_hours or time_budget_s) "
                                    "ran out")
        if self.tracking:
            self.tracking.sync()  # the rows closed just now

    def _tuner(self, name: str, tune_config: tune.TuneConfig, param_space: dict | None) -> tune.Tuner:
        if self.restoring(name):
            return tune.Tuner.restore(self._experiment_path(name), trainable=self.trainable, resume_unfinished=True,
                                      resume_errored=True)
        # the table first: the home's upload and a trial's console line read what it wrote
        callbacks = [self.table, *([self.tracking] if self.tracking else []),
                     *([HomeSync(self.home)] if self.home else []), ConsoleCallback()]
        run_config = tune.RunConfig(
            name=name, storage_path=self.storage_path, callbacks=callbacks, stop=self.stopper,
            failure_config=tune.FailureConfig(max_failures=self.cfg.settings.max_failures), verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=2))  # an in-process trial's: the 2 latest epochs
        return tune.Tuner(self.trainable, tune_config=tune_config, param_space=param_space, run_config=run_config)


def run_study(cfg: StudyConfig, study_dir: Path, storage_path: str | None = None, resume: bool = False,
              console: Console | None = None, home: StudyHome | None = None) -> pd.DataFrame:
    """Run (or resume) the study of `cfg` in `study_dir`: `Study(...).run()`."""
    return Study(cfg, study_dir, storage_path, resume, console=console, home=home).run()
