"""The study's console: one line per finished trial, the progress (plain lines off a terminal, rich's live view
on one), the header and the closing summary; the driver's library logs go to a file, not the console."""

from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from rich.console import Console

from analysis.report import build_report
from studies.driver import console as console_module
from studies.driver.console import StudyConsole, route_driver_logs, study_header, study_summary, trial_line
from studies.plan.study_config import study_from_dict
from tests.test_analysis import sample_study, study


class Table:
    """A results table stand-in: the rows the console reads (`frame()`), settable by the test."""

    def __init__(self, frame: pd.DataFrame):
        self.rows = frame

    def frame(self) -> pd.DataFrame:
        return self.rows


def with_phase(frame: pd.DataFrame, phase: str = "search") -> pd.DataFrame:
    return frame.assign(phase=phase, error="", log_path=[f"/study/logs/trial_{t}.log" for t in frame["trial_id"]])


def final(frame: pd.DataFrame, trial_id: str) -> pd.Series:
    return frame[frame["trial_id"] == trial_id].sort_values("epoch").iloc[-1]


def running(n: int) -> list:
    return [SimpleNamespace(status="RUNNING")] * n


def test_a_finished_trial_is_one_line_and_a_failed_one_says_why_and_where_its_log_is():
    rows = with_phase(study({"trial_id": "a", "variant": "lora", "pct": 5.73, "score": 70.62, "rank": 8, "lr": 3e-3},
                            {"trial_id": "b", "variant": "bitfit", "pct": 2.93, "score": 50.0, "status": "pruned"},
                            {"trial_id": "c", "variant": "adapter", "pct": 4.18, "score": float("nan"),
                             "status": "failed", "wall": 12.0}))
    rows.loc[rows["trial_id"] == "c", "error"] = "RuntimeError: CUDA out of memory"
    done = trial_line(final(rows, "a"))
    assert re.fullmatch(r"  lora +score +70\.62 +params +5\.73 % +completed +5m00s  seed=0 variant=lora rank=8 lr=0\.003",
                        done), done
    assert "pruned at epoch 1/3" in trial_line(final(rows, "b"))
    failed = trial_line(final(rows, "c")).splitlines()
    assert "FAILED" in failed[0] and "score      —" in failed[0] and " 12s  " in failed[0]
    assert failed[1].strip() == "RuntimeError: CUDA out of memory"
    assert failed[2].strip() == "log: /study/logs/trial_c.log"
    # failed before its first report: no score, no params yet (the line must not break the study)
    early = final(rows, "c").copy()
    early["params_pct"], early["wall_time_s"] = None, None
    assert "params      — %" in trial_line(early)


def test_plain_progress_counts_the_phase_and_tells_the_front_so_far(monkeypatch):
    table = Table(with_phase(sample_study().iloc[:0]))
    out = io.StringIO()
    view = StudyConsole(table, Console(file=out, force_terminal=False, width=200))
    assert not view.live
    with view.phase("search", 7, "search: 7 trials"):
        table.rows = with_phase(sample_study())
        view.trial_finished("t2", running(2))
        view.trial_finished("t6", running(1))
        monkeypatch.setattr(console_module, "PLAIN_PROGRESS_EVERY_S", 0.0)  # a minute has passed
        view.tick(running(0))
    text = out.getvalue()
    lines = text.splitlines()
    assert lines[0] == "== search: 7 trials"
    assert lines[1].lstrip().startswith("vlpet-large") and "completed" in lines[1]
    assert "FAILED" in lines[2] and lines[4].strip() == "log: /study/logs/trial_t6.log"
    # all 7 trials of the sample have finished: 1 pruned, 1 failed; its front's hypervolume
    assert "[search 7/7 done · 0 running · 1 pruned · 1 failed" in text
    # front: bitfit (1.21 %, 65) then vlpet-large's best seed (4.16 %, 79), box to 100 %: 2.95 x 65 + 95.84 x 79
    assert "front hypervolume so far 7,763" in text
    assert lines[-1] == lines[-2]  # the last tick's line, then the phase's closing one


def test_live_view_on_a_terminal_shows_the_bar_and_the_best_of_each_variant():
    table = Table(with_phase(sample_study()))
    out = io.StringIO()
    view = StudyConsole(table, Console(file=out, force_terminal=True, width=160, color_system=None))
    assert view.live
    with view.phase("search", 10, "search: 10 trials"):
        view.trial_finished("t3", running(2))
        view._progress.refresh()
    text = out.getvalue()
    assert "7/10" in text and "2 running, 1 pruned, 1 failed" in text
    # 3 trials left at the finished ones' mean wall time, (5 x 300 s + 2 x 100 s) / 7, two at a time: 364 s
    assert "about 6m04s left" in text
    assert re.search(r"vlpet-large +79\.00 +4\.16", text)  # its best seed, the full-fidelity points only
    assert "prompt" not in text.split("== search")[1].split("lora ")[0]  # pruned: not among the best
    assert "front hypervolume so far" in text


def test_header_and_summary_say_what_runs_and_where_everything_is(tmp_path):
    cfg = study_from_dict({"study": {"name": "demo", "variants": ["lora", "vlpet-large"], "max_params": 150_000}})
    header = study_header(cfg, tmp_path, "data checked: 10 examples")
    assert header[0] == "study demo: 2 variants (lora, vlpet-large)"
    assert "budgets: params <= 150,000" in header[2] and "data checked" in header[3] and str(tmp_path) in header[4]
    sample_study().to_parquet(tmp_path / "results.parquet")
    (tmp_path / "optuna.db").write_bytes(b"")
    report, result = build_report(tmp_path, png=False)
    summary = study_summary(tmp_path, report, result)
    assert summary[0].startswith("== the front")
    assert summary[1].split() == ["variant", "params", "%", "score", "wins", "for", "budgets", "(%)"]
    assert summary[2].split()[:2] == ["bitfit", "1.21"] and "[1.21, 4.16)" in summary[2]
    assert any("hypervolume" in line for line in summary) and not any(line.startswith("  frontier:") for line in summary)
    assert f"== outputs in {tmp_path}" in summary and any("report/report.md" in line for line in summary)
    assert summary[-1].strip().startswith("optuna.db") and f"vlpet-dashboard {tmp_path}" in summary[-1]


@pytest.fixture
def library_loggers():
    """Restore the library loggers that route_driver_logs rewires."""
    import optuna

    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).propagate) for n in ("ray", "optuna", "py.warnings")}
    yield
    for name, (handlers, propagate) in saved.items():
        logging.getLogger(name).handlers, logging.getLogger(name).propagate = handlers, propagate
    logging.captureWarnings(False)
    optuna.logging.enable_default_handler()


def test_the_driver_library_logs_go_to_the_study_log_not_the_console(tmp_path, capfd, monkeypatch, library_loggers):
    monkeypatch.setenv("RAY_AIR_NEW_OUTPUT", "1")
    path = route_driver_logs(tmp_path)
    logging.getLogger("ray.tune").warning("a Tune notice")
    logging.getLogger("optuna.storages").info("A new study created in RDB")
    import warnings

    warnings.warn("a library warning", stacklevel=1)
    out, err = capfd.readouterr()
    assert out == err == ""
    text = Path(path).read_text()
    assert path == tmp_path / "logs" / "driver.log"
    assert "a Tune notice" in text and "A new study created" in text and "a library warning" in text
    assert console_module.os.environ["RAY_AIR_NEW_OUTPUT"] == "0"  # Tune's own console reporter off
