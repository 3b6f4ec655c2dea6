"""The study driver: one Ray Tune experiment in which every variant is searched by multi-objective
Optuna (maximise the average validation score, minimise trainable parameters; `studies.searcher`)
with ASHA early stopping per variant; every trial trains in its Tune trial process, or in a Ray Train
`TorchTrainer` worker group for data-parallel runs (`studies.trial`).

A trial stopped early keeps its rows in the results table with its fidelity, so the frontier is
built from full-fidelity runs only.

Persistence: the results table (Parquet, written atomically after every report), the Optuna study
(SQLite or PostgreSQL), Tune's experiment state and Train's checkpoints all live under the study
directory, so a killed driver resumes (`--resume`) with every finished result kept.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.search import ConcurrencyLimiter

from studies.search_space import DESIGNS, sample
from studies.searcher import FidelityAwareOptunaSearch, PerVariantScheduler, VariantsSearch
from studies.study_config import StudyConfig, StudySettings
from studies.trial import SKIPPED, run_trial, trial_config
from vlpet.errors import ConfigError
from vlpet.methods.variants import design_name
from vlpet.train.ray_trainer import check_resources

OBJECTIVES = (["score", "params"], ["max", "min"])
RESULTS = "results.parquet"
SEARCH = "search"  # the Tune experiment of the search (every variant); seed re-runs are "seeds"


# ----------------------------------------------------------------------------------------- search
def trial_dirname(trial: Any) -> str:
    """Short trial directories (Tune's default name embeds every parameter)."""
    return f"trial_{trial.trial_id}"


def describe_trial(cfg: StudyConfig, variant_name: str, params: dict[str, Any], seed: int | None = None) -> dict[str, Any]:
    """Everything a trial needs, computed on the driver: the full run spec and its parameter count
    (known before training, from a meta-device build). `search` is the study variant the trial comes
    from; `variant` names what it runs: the study variant, or for `designs` the drawn combination
    ('compacter+g-large+lw'), so that the analysis groups and colours trials by combination."""
    spec = cfg.trial_spec(variant_name, params, seed)
    report = cfg.params_of(spec)
    name = design_name(spec.method) if variant_name == DESIGNS else variant_name
    return {"search": variant_name, "variant": name, "params": params, "spec": spec.to_dict(),
            "trainable": report.trainable, "total": report.total, "params_pct": report.percent}


class VariantSpace:
    """The Optuna define-by-run space of one variant (picklable, so Tune can checkpoint the searcher).
    Returns the sampled parameters plus the trial description of `describe_trial`."""

    def __init__(self, cfg: StudyConfig, variant_name: str):
        self.cfg, self.variant_name, self.space = cfg, variant_name, cfg.space(variant_name)

    def __call__(self, trial: Any) -> dict[str, Any]:
        return describe_trial(self.cfg, self.variant_name, sample(self.space, trial))


# ------------------------------------------------------------------------------------ results table
class ResultsTable(tune.Callback):
    """One row per (trial, epoch) report in a Parquet file; the final row of a trial carries its final
    status (completed / pruned / failed / skipped_budget).

    The file is the only state: every event reads it, changes it and atomically replaces it (temp
    file + rename). A crash never leaves half a table, and the copy of this callback that Tune
    unpickles when a study is restored writes to the same table instead of an outdated one.
    """

    def __init__(self, study_dir: Path, phase: str, gpus_per_trial: float, log: bool = True):
        self.path = study_dir / RESULTS
        self.phase, self.gpus_per_trial, self.log = phase, gpus_per_trial, log

    def _rows(self) -> dict[tuple[str, int], dict[str, Any]]:
        if not self.path.is_file():
            return {}
        return {(r["trial_id"], int(r["epoch"])): r for r in pd.read_parquet(self.path).to_dict("records")}

    def _row(self, trial: Any, result: dict[str, Any]) -> dict[str, Any]:
        cfg = trial_config(trial.config)
        row = {"trial_id": trial.trial_id, "phase": self.phase, "search": cfg["search"], "variant": cfg["variant"],
               "method": cfg["spec"]["method"]["method"], "seed": cfg["spec"]["train"]["seed"],
               "config": json.dumps(cfg["params"], sort_keys=True), "status": result.get("status", "running"),
               "error": ""}
        keys = ("epoch", "max_epochs", "fidelity", "params", "total_params", "params_pct", "score", "loss",
                "examples_per_s", "world_size", "node_id", "pid", "setup_time_s", "train_time_s", "eval_time_s",
                "submitted_at", "worker_started_at")
        row.update({k: result.get(k) for k in keys})
        row.update({k: v for k, v in result.items() if k.startswith("score_")})
        row["wall_time_s"] = result.get("run_time_s", result.get("time_total_s"))
        # driver clock: when Tune started the trial and when this report arrived (orchestration overhead)
        row["started_at"], row["reported_at"] = trial.run_metadata.start_time, time.time()
        # a worker group's checkpoint is Train's (its path in the result); an in-process trial's is Tune's
        tune_checkpoint = result.get("checkpoint_dir_name")
        row["checkpoint_path"] = result.get("checkpoint_path") or (f"{trial.path}/{tune_checkpoint}" if tune_checkpoint
                                                                   else "")
        return row

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict[str, Any], **info: Any) -> None:
        row = self._row(trial, result)
        rows = self._rows()
        rows[(row["trial_id"], int(row["epoch"] or 0))] = row
        self._write(rows)
        if self.log and row["status"] != SKIPPED:
            score = "not validated" if pd.isna(row["score"]) else f"{row['score']:.2f}"
            print(f"[{row['variant']}] trial {trial.trial_id} epoch {row['epoch']}/{row['max_epochs']} "
                  f"score {score} params {row['params_pct']:.2f} %", flush=True)

    def _finish(self, trial: Any, status: str, error: str = "") -> None:
        rows = self._rows()
        own = [r for (tid, _), r in rows.items() if tid == trial.trial_id]
        if not own:  # failed before its first report
            own = [self._row(trial, {"epoch": 0, "fidelity": 0.0})]
            rows[(trial.trial_id, 0)] = own[0]
        last = max(own, key=lambda r: r["epoch"] or 0)
        if last["status"] != SKIPPED:
            last["status"] = status if status != "completed" or (last["fidelity"] or 0) >= 1 else "pruned"
        last["error"] = error
        self._write(rows)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._finish(trial, "completed")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        error = ""
        if trial.error_file and Path(trial.error_file).is_file():
            error = Path(trial.error_file).read_text().strip().splitlines()[-1][:500]
        self._finish(trial, "failed", error)

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame (one row per trial and epoch)."""
        return pd.DataFrame(list(self._rows().values()))

    def _write(self, rows: dict[tuple[str, int], dict[str, Any]]) -> None:
        tmp = self.path.with_suffix(".parquet.tmp")
        pd.DataFrame(list(rows.values())).to_parquet(tmp, index=False)
        os.replace(tmp, self.path)

    def device_hours(self) -> float:
        """Sum over trials of wall time x devices (GPUs, or workers on CPU runs), in hours."""
        last: dict[str, float] = {}
        for (tid, _), row in self._rows().items():
            last[tid] = max(last.get(tid, 0.0), float(row.get("wall_time_s") or 0.0))
        return sum(last.values()) * self.gpus_per_trial / 3600


class DeviceHoursStopper(tune.Stopper):
    """Stops the whole study once the device-hour budget (`study.gpu_hours`) is spent."""

    def __init__(self, table: ResultsTable, budget_hours: float | None):
        self.table, self.budget = table, budget_hours

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.budget is not None and self.table.device_hours() >= self.budget


# ------------------------------------------------------------------------------------------ study
def optuna_storage(cfg: StudyConfig, study_dir: Path) -> optuna.storages.BaseStorage:
    """The Optuna RDB storage: the configured URL, else a SQLite file in the study directory."""
    url = cfg.settings.optuna_storage or f"sqlite:///{study_dir / 'optuna.db'}"
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as err:  # SQLAlchemy raises many kinds for a bad URL
        raise ConfigError(f"study.optuna_storage={url!r}: cannot open ({type(err).__name__}: {err})") from None


def _devices_per_trial(cfg: StudyConfig) -> float:
    t = cfg.run.train
    return t.num_workers * max(t.gpus_per_worker, 1.0)


def _tuner(cfg: StudyConfig, study_dir: Path, storage_path: str, name: str, trainable: Any,
           tune_config: tune.TuneConfig | None, param_space: dict | None, table: ResultsTable,
           resume: bool) -> tune.Tuner:
    run_config = tune.RunConfig(
        name=name, storage_path=storage_path, callbacks=[table], stop=DeviceHoursStopper(table, cfg.settings.gpu_hours),
        failure_config=tune.FailureConfig(max_failures=cfg.settings.max_failures), verbose=0,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=2))  # an in-process trial's: the 2 latest epochs
    if restoring(storage_path, name, resume):
        return tune.Tuner.restore(_experiment_path(storage_path, name), trainable=trainable, resume_unfinished=True,
                                  resume_errored=True)
    return tune.Tuner(trainable, tune_config=tune_config, param_space=param_space, run_config=run_config)


def _experiment_path(storage_path: str, name: str) -> str:
    return f"{storage_path.rstrip('/')}/{name}"


def restoring(storage_path: str, name: str, resume: bool) -> bool:
    """Whether experiment `name` continues from its saved Tune state (then a new searcher is not used)."""
    return resume and tune.Tuner.can_restore(_experiment_path(storage_path, name))


def trials_per_variant(settings: StudySettings) -> dict[str, int]:
    """Each variant's number of search trials: `trials_per_variant`, in variant order within `max_trials`."""
    trials, remaining = {}, settings.max_trials
    for name in settings.variants:
        num = settings.trials_per_variant if remaining is None else min(settings.trials_per_variant, remaining)
        if num <= 0:
            break
        trials[name] = num
        remaining = None if remaining is None else remaining - num
    return trials


def optuna_sampler(name: str, seed: int, num_samples: int) -> optuna.samplers.BaseSampler:
    """TPE (random for its first third of trials, at least 2) or plain random search."""
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, num_samples // 3))


def variant_searcher(cfg: StudyConfig, variant_name: str, study_dir: Path, num_samples: int,
                     first_trial: bool) -> FidelityAwareOptunaSearch:
    """The Optuna searcher of one variant: its own Optuna study, its variant's default setting first."""
    s = cfg.settings
    return FidelityAwareOptunaSearch(
        space=VariantSpace(cfg, variant_name), metric=OBJECTIVES[0], mode=OBJECTIVES[1],
        study_name=f"{s.name}-{variant_name}", storage=optuna_storage(cfg, study_dir),
        sampler=optuna_sampler(s.sampler, s.sampler_seed, num_samples),
        points_to_evaluate=[cfg.first_point(variant_name)[0]] if first_trial else None)


def search(cfg: StudyConfig, trials: dict[str, int], study_dir: Path, storage_path: str, trainable: Any,
           table: ResultsTable, resume: bool) -> None:
    """Run (or resume) the Optuna searches of the variants (`trials`: variant -> its number of trials) side
    by side in one Tune experiment, each with ASHA over its own trials when `study.asha` is on."""
    s = cfg.settings
    # a restored experiment keeps its own searcher, which has had every variant's first trial
    # (enqueueing it again would add the point to the Optuna study a second time)
    first = not restoring(storage_path, SEARCH, resume)
    searcher = VariantsSearch({v: variant_searcher(cfg, v, study_dir, n, first) for v, n in trials.items()},
                              trials, metric=OBJECTIVES[0], mode=OBJECTIVES[1])
    asha = functools.partial(ASHAScheduler, metric="score", mode="max", time_attr="epoch", max_t=cfg.run.train.epochs,
                             grace_period=s.grace_period, reduction_factor=s.reduction_factor)
    tune_config = tune.TuneConfig(search_alg=ConcurrencyLimiter(searcher, s.max_concurrent_trials),
                                  scheduler=PerVariantScheduler(asha) if s.asha else FIFOScheduler(),
                                  num_samples=sum(trials.values()), time_budget_s=s.time_budget_s,
                                  trial_dirname_creator=trial_dirname, reuse_actors=cfg.run.train.in_trial_process)
    _tuner(cfg, study_dir, storage_path, SEARCH, trainable, tune_config, None, table, resume).fit()


def frontier_configs(table: pd.DataFrame) -> list[dict[str, Any]]:
    """The (study variant `search`, params) of every full-fidelity search trial on the Pareto front."""
    from analysis.pareto import pareto_front

    search = table[table["phase"] == "search"]
    final = search.sort_values("epoch").groupby("trial_id").tail(1)
    done = final[(final["status"] == "completed") & (final["fidelity"] >= 1)]
    if done.empty:
        return []
    on_front = pareto_front(done["params"].to_numpy(float), done["score"].to_numpy(float))
    return [{"search": r["search"], "params": json.loads(r["config"])} for _, r in done[on_front].iterrows()]


def run_points(cfg: StudyConfig, study_dir: Path, storage_path: str, trainable: Any, table: ResultsTable,
               name: str, runs: list[dict[str, Any]], resume: bool) -> None:
    """Train given trial descriptions (`describe_trial`) to full fidelity, no search: Tune's grid search
    over them in the experiment `name` (seed re-runs; the exhaustive grid of bench/search_efficiency.py)."""
    tune_config = tune.TuneConfig(max_concurrent_trials=cfg.settings.max_concurrent_trials,
                                  trial_dirname_creator=trial_dirname, reuse_actors=cfg.run.train.in_trial_process)
    _tuner(cfg, study_dir, storage_path, name, trainable, tune_config, {"run": tune.grid_search(runs)},
           table, resume).fit()


def run_seeds(cfg: StudyConfig, study_dir: Path, storage_path: str, trainable: Any, table: ResultsTable,
              resume: bool) -> None:
    """Re-run every frontier configuration with the extra seeds (`study.seeds` in all), full fidelity."""
    points = frontier_configs(table.frame())
    base = cfg.run.train.seed
    runs = [describe_trial(cfg, p["search"], p["params"], base + k)
            for p in points for k in range(1, cfg.settings.seeds)]
    if not runs:
        return
    print(f"re-running {len(points)} frontier configurations with {cfg.settings.seeds - 1} extra seed(s)", flush=True)
    run_points(cfg, study_dir, storage_path, trainable, table, "seeds", runs, resume)


def check_study_dir(study_dir: Path, resume: bool, min_free_mb: int = 200) -> None:
    """The study directory must be new (or resumed), writable, and on a disk with room."""
    if resume and not (study_dir / "study.json").is_file():
        raise ConfigError(f"--resume: {study_dir} holds no study (no study.json); run without --resume to start it")
    if not resume and (study_dir / RESULTS).is_file():
        raise ConfigError(f"{study_dir} already holds a study; pass --resume to continue it or choose another --name")
    try:
        study_dir.mkdir(parents=True, exist_ok=True)
        probe = study_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise ConfigError(f"study directory {study_dir} is not writable ({err.strerror}); choose --study-dir") from None
    free_mb = shutil.disk_usage(study_dir).free / 2**20
    if free_mb < min_free_mb:
        raise ConfigError(f"study directory {study_dir}: only {free_mb:.0f} MB free, need >= {min_free_mb} MB")


def study_trainable(cfg: StudyConfig, storage_path: str) -> Any:
    """The Tune trainable of every trial: `run_trial`. An in-process trial holds its worker's CPUs and
    GPUs itself; a worker-group trial only waits on its TorchTrainer (checkpoints under
    <storage_path>/train), so it holds no CPU, a token of memory (Ray refuses empty bundles)."""
    t = cfg.run.train
    in_process = t.in_trial_process
    bundle = ({"CPU": t.cpus_per_worker, **({"GPU": t.gpus_per_worker} if t.gpus_per_worker else {})} if in_process
              else {"CPU": 0, "memory": 2**20})
    trainable = tune.with_parameters(run_trial, max_params=cfg.settings.max_params,
                                     train_storage=f"{storage_path.rstrip('/')}/train", in_process=in_process)
    return tune.with_resources(trainable, tune.PlacementGroupFactory([bundle]))


def run_study(cfg: StudyConfig, study_dir: Path, storage_path: str | None = None, resume: bool = False) -> pd.DataFrame:
    """Search every variant, re-run the frontier with extra seeds, and return the results table.

    Expects Ray to be initialised (see studies.ray_cluster.connect).
    """
    study_dir = study_dir.resolve()
    check_study_dir(study_dir, resume)
    check_resources(cfg.run.train)
    storage_path = storage_path or str(study_dir / "ray")
    (study_dir / "study.json").write_text(json.dumps({**cfg.to_dict(), "backbone": f"{cfg.family}-base"}, indent=2))
    trainable = study_trainable(cfg, storage_path)
    table = ResultsTable(study_dir, "search", _devices_per_trial(cfg))
    start = time.perf_counter()
    trials = trials_per_variant(cfg.settings)
    print(f"== search: {', '.join(f'{v} {n}' for v, n in trials.items())} trials (Optuna {cfg.settings.sampler}"
          f"{', ASHA per variant' if cfg.settings.asha else ''}; {cfg.settings.max_concurrent_trials} at a time)",
          flush=True)
    search(cfg, trials, study_dir, storage_path, trainable, table, resume)
    if DeviceHoursStopper(table, cfg.settings.gpu_hours).stop_all():
        print("device-hour budget spent: no seed re-runs", flush=True)
    elif cfg.settings.seeds > 1:
        table.phase = "seeds"
        run_seeds(cfg, study_dir, storage_path, trainable, table, resume)
    frame = table.frame()
    frame.to_csv(study_dir / "results.csv", index=False)
    print(f"study {cfg.settings.name}: {frame['trial_id'].nunique()} trials in {time.perf_counter() - start:.0f} s; "
          f"results in {study_dir / RESULTS}", flush=True)
    return frame

