"""What a study prints, and where everything else goes.

The console: a header (variants, trials, budgets, the study directory), then for each phase (the search,
the paper's configurations, the seed re-runs) a progress view: trials done of the phase's total with the
running, pruned and failed ones, elapsed and estimated time left, the best score of each variant and the
front's hypervolume so far; one line per finished trial; at the end a summary (the front with the params
budget each configuration wins, and where every output is). On a terminal rich draws the view live; elsewhere
(CI, a file, `ray job logs`) the same facts come as plain lines, a progress line at most once a minute.

Everything else goes to files under <study_dir>/logs: the driver's libraries (Ray, Tune, Train, Optuna) to
driver.log (`route_driver_logs`), each trial's own output to trial_<id>.log (`studies.driver.trial`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
from ray import tune
from rich.console import Console, Group, RenderableType
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from analysis.hypervolume import DEFAULT_REFERENCE, hypervolume_2d
from analysis.results_contract import COMPLETED, FAILED, PRUNED, RUNNING, SKIPPED, final_rows
from analysis.study_layout import DRIVER_LOG, LOGS, OPTUNA_DB
from studies.storage.results_table import ResultsTable

PLAIN_PROGRESS_EVERY_S = 60.0
_LIBRARY_LOGGERS = ("ray", "optuna", "py.warnings")
_view: StudyConsole | None = None  # the driver's view of the running phase (see ConsoleCallback)


def route_driver_logs(study_dir: Path) -> Path:
    """Send the driver's library logging (Ray with Tune and Train, Optuna, Python warnings) to
    <study_dir>/logs/driver.log and turn Tune's own console reporter off; returns the log's path. Call it
    after `studies.driver.ray_cluster.loopback_local_cluster()` (it imports ray) and before connecting."""
    import optuna
    import ray  # noqa: F401  (ray installs its console handler when imported: it is replaced below)

    path = Path(study_dir) / LOGS / DRIVER_LOG
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    optuna.logging.disable_default_handler()
    logging.captureWarnings(True)
    for name in _LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.propagate = False
    # Tune's newer console engine prints every experiment's configuration box whatever RunConfig.verbose
    # says; the classic one is silent at verbose=0
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    return path


class ConsoleCallback(tune.Callback):
    """Tune's events, handed to the driver's `StudyConsole`. It holds no state: Tune pickles the callbacks
    with the experiment, and the copy a restored experiment brings back must reach the current view."""

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if _view:
            _view.tick(trials)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _view:
            _view.trial_finished(trial.trial_id, trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if _view:
            _view.trial_finished(trial.trial_id, trials)


class _LiveView(Progress):
    """rich's progress bar of the phase with the study's standings under it."""

    def __init__(self, view: StudyConsole):
        self.view = view  # before Progress's own set-up, which renders once
        super().__init__(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TextColumn("{task.fields[states]}"), TimeElapsedColumn(), TextColumn("{task.fields[left]}"),
                         console=view.console, refresh_per_second=2,
                         transient=True)  # at the end of the phase its closing progress line stays instead

    def get_renderables(self) -> Iterator[RenderableType]:
        yield Group(self.make_tasks_table(self.tasks), self.view.standings_view)


class StudyConsole:
    """The study's console (see the module docstring). `console`: where it prints (live when that is a
    terminal); `Console(quiet=True)` prints nothing (benchmarks)."""

    def __init__(self, table: ResultsTable, console: Console):
        self.table, self.console = table, console
        self.live = self.console.is_terminal and not self.console.quiet
        self.standings_view: RenderableType = ""
        self._phase: dict[str, Any] = {}
        self._progress: _LiveView | None = None
        self._running = 0
        self._counts = {"done": 0, PRUNED: 0, FAILED: 0}  # the phase's finished trials, as of the last event
        self._mean_wall_s = math.nan  # their mean wall time
        self._points = full_fidelity_points(pd.DataFrame())  # none yet

    def print(self, text: str = "") -> None:
        """A plain line (above the live view, when there is one)."""
        self.console.print(text, markup=False, highlight=False)

    @contextlib.contextmanager
    def phase(self, name: str, total: int, title: str) -> Iterator[None]:
        """Show the progress of phase `name` (its `total` trials) while the block runs."""
        global _view
        self.print(f"== {title}")
        self._phase = {"name": name, "total": total, "start": time.monotonic(), "last_line": time.monotonic()}
        self._refresh(self.table.frame())
        if self.live:
            self._progress = _LiveView(self)
            self._progress.add_task(name, total=total, completed=self._counts["done"], states="", left="")
            self._progress.start()
        _view = None if self.console.quiet else self  # a quiet console has nothing to show
        try:
            yield
        finally:
            _view = None
            if self._progress:
                self._progress.stop()
                self._progress = None
            self.print(f"  {self.progress_line()}")

    def tick(self, trials: list) -> None:
        """Tune's loop turned: count the running trials; a plain progress line when a minute has passed."""
        self._running = sum(t.status == "RUNNING" for t in trials)
        if self._progress:
            self._update_bar()
        elif time.monotonic() - self._phase.get("last_line", math.inf) >= PLAIN_PROGRESS_EVERY_S:
            self._phase["last_line"] = time.monotonic()
            self.print(f"  {self.progress_line()}")

    def trial_finished(self, trial_id: str, trials: list) -> None:
        """One line for the trial (from its final row of the results table), then the progress."""
        frame = self.table.frame()
        rows = frame[frame["trial_id"] == trial_id] if len(frame) else frame
        if len(rows):
            self.print(trial_line(final_rows(rows).iloc[0]))
        self._refresh(frame)
        self.tick(trials)

    def progress_line(self) -> str:
        """Where the phase stands, in words."""
        c, p, left = self._counts, self._phase, self._left()
        left = f" · {left}" if left else ""
        return (f"[{p['name']} {c['done']}/{p['total']} done · {self._running} running · {c[PRUNED]} pruned · "
                f"{c[FAILED]} failed · {_duration(time.monotonic() - p['start'])} elapsed{left} · "
                f"{self._hypervolume_text()}]")

    def _left(self) -> str:
        """The time left: the phase's trials still to finish, at the mean wall time of its finished ones, as
        many at a time as are running ('' until one has finished)."""
        c = self._counts
        if not c["done"] or c["done"] >= self._phase["total"] or math.isnan(self._mean_wall_s):
            return ""
        return f"about {_duration(self._mean_wall_s * (self._phase['total'] - c['done']) / max(self._running, 1))} left"

    def _update_bar(self) -> None:
        c = self._counts
        states = f"{self._running} running, {c[PRUNED]} pruned, {c[FAILED]} failed"
        self._progress.update(self._progress.task_ids[0], completed=c["done"], states=states, left=self._left())

    def _refresh(self, frame: pd.DataFrame) -> None:
        """From the results table: the phase's counts, and the standings under the live view's bar (the best
        full-fidelity score of each variant, the front's hypervolume)."""
        trials = final_rows(frame) if len(frame) else frame
        final = trials[trials["phase"] == self._phase["name"]] if len(trials) else trials
        status = final["status"] if len(final) else pd.Series(dtype=str)
        self._counts = {"done": int((status != RUNNING).sum()), PRUNED: int((status == PRUNED).sum()),
                        FAILED: int((status == FAILED).sum())}
        finished = final[(status != RUNNING) & (status != SKIPPED)] if len(final) else final
        self._mean_wall_s = float(finished["wall_time_s"].astype(float).mean()) if len(finished) else math.nan
        self._points = full_fidelity_points(trials)
        best = self._points.sort_values("score", ascending=False).drop_duplicates("variant")
        grid = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        for column in ("variant", "best score", "params %", "config"):
            grid.add_column(column)
        for r in best.itertuples():
            grid.add_row(r.variant, f"{r.score:.2f}", f"{r.params_pct:.3g}", short_config(r.config))
        self.standings_view = Group(grid, self._hypervolume_text()) if len(best) else self._hypervolume_text()

    def _hypervolume_text(self) -> str:
        if self._points.empty:
            return "front: no finished full-fidelity trial yet"
        hv = hypervolume_2d(self._points["params_pct"], self._points["score"], *DEFAULT_REFERENCE)
        return f"front hypervolume so far {hv:,.0f}"


def study_header(cfg: Any, study_dir: Path, data: str, home: str | None = None) -> list[str]:
    """The lines that open a study's console: what it runs, within which budgets, on which data, where
    (`home`: the study's home, `studies.storage.study_home`, of which `study_dir` is the working copy)."""
    s = cfg.settings
    budgets = [f"params <= {s.max_params:,}" if s.max_params else "",
               f"{s.gpu_hours:g} device-hours" if s.gpu_hours else "",
               f"search {_duration(s.time_budget_s)}" if s.time_budget_s else ""]
    then = ", then the paper's configurations" if s.paper_reference else ""
    seeds = (f", then {s.seeds} seeds for the front and what is within {s.seed_noise:g} of it" if s.seeds > 1
             else "")
    return [f"study {s.name}: {len(s.variants)} variants ({', '.join(s.variants)})",
            (f"  trials: {s.trials_per_variant} per variant{then}{seeds}; {s.max_concurrent_trials} at a time; "
             f"sampler {s.sampler}, early stopping {s.early_stopping}"),
            f"  budgets: {', '.join(b for b in budgets if b) or 'none'}",
            f"  {data}",
            *([f"  home: {home} (Tune's state, checkpoints and the study's files; resume from it alone)"] if home
              else []),
            f"  study dir: {study_dir} (trial logs: {LOGS}/trial_<id>.log; Ray, Tune, Optuna: {LOGS}/{DRIVER_LOG})"]


def study_summary(study_dir: Path, report: Path, result: Any, home: str | None = None) -> list[str]:
    """The lines that close a study's console: the front with the params budget each configuration wins,
    the study in numbers, and where every output is."""
    from analysis.report import front_table, summary_lines

    front = front_table(result)[["variant", "params %", result.score_col, "wins for budgets (%)"]]
    lines = ["== the front: the best configuration for each params budget"]
    lines += [f"  {line}" for line in aligned(front)] if len(front) else ["  (empty: no full-fidelity trial)"]
    lines += [f"  {line}" for line in summary_lines(result, front=False)]
    lines += [f"  warning: {w}" for w in result.warnings]
    outputs = {"results.parquet, results.csv": "every trial's epochs (and each trial's log: column log_path)",
               f"{report.parent.name}/{report.name}": "the report; beside it frontier.html (interactive), frontier.png, "
                                                      "hypervolume.png",
               f"{LOGS}/": f"trial_<id>.log per trial, {DRIVER_LOG} (Ray, Tune, Optuna)"}
    if (Path(study_dir) / OPTUNA_DB).exists():
        outputs[OPTUNA_DB] = f"the searches; browse them with: vlpet-dashboard {study_dir}"
    where = f"{study_dir}{f' (uploaded to {home})' if home else ''}"
    return [*lines, f"== outputs in {where}", *(f"  {k:<30}  {v}" for k, v in outputs.items())]


def aligned(table: pd.DataFrame) -> list[str]:
    """A table of text cells as left-aligned columns, its header first."""
    rows = [list(map(str, table.columns)), *table.astype(str).to_numpy().tolist()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]


def full_fidelity_points(final: pd.DataFrame) -> pd.DataFrame:
    """Of the trials' final rows (`final_rows`), the full-fidelity ones with a score: variant, score,
    params_pct, config."""
    if final.empty:
        return pd.DataFrame(columns=["variant", "score", "params_pct", "config"])
    done = final[final["full_fidelity"] & final["score"].notna()]
    return done[["variant", "score", "params_pct", "config"]].astype({"score": float, "params_pct": float})


def trial_line(row: pd.Series) -> str:
    """A finished trial in one line: variant, its hyperparameters in short, score, params %, status, wall time;
    a failed one's last error line and log."""
    status = row["status"]
    score = "—" if pd.isna(row.get("score")) else f"{float(row['score']):.2f}"
    what = {COMPLETED: "completed", PRUNED: f"pruned at epoch {_int(row.get('epoch'))}/{_int(row.get('max_epochs'))}",
            FAILED: "FAILED", SKIPPED: "skipped: over the params budget"}.get(status, status)
    # the hyperparameters last: their length varies, the columns before them line up
    pct = "—" if pd.isna(row.get("params_pct")) else f"{float(row['params_pct']):6.2f}"  # none: failed at start
    line = (f"  {row['variant']:<14} score {score:>6}  params {pct:>6} %  {what:<20} "
            f"{_duration(row.get('wall_time_s')):>6}  {short_config(row['config'])}")
    if status == FAILED:
        line += f"\n      {row.get('error') or 'no error message'}\n      log: {row.get('log_path') or '-'}"
    return line.rstrip()


def short_config(config: Any) -> str:
    """A trial's hyperparameters (its JSON config) as `name=value` pairs, numbers in short."""
    params = json.loads(config) if isinstance(config, str) and config else {}
    return " ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _int(value: Any) -> str:
    return "?" if value is None or pd.isna(value) else str(int(value))


def _duration(seconds: Any) -> str:
    """12s, 3m05s, 1h02m: how long, for people."""
    if seconds is None or pd.isna(seconds):
        return ""
    s = round(float(seconds))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"
