"""The analysis package: Pareto fronts, hypervolume, seed aggregation, plots and the study report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import AnalysisError, find_fronts, hypervolume_2d, hypervolume_history, load_results, pareto_front, plots
from analysis.report import write_report
from studies.report_command import main

ROOT = Path(__file__).resolve().parents[1]

NAN = float("nan")


def trial_rows(trial_id: str, variant: str, pct: float, score: float, status: str = "completed", seed: int = 0,
               epochs: int | None = None, max_epochs: int = 3, wall: float = 100.0, **config) -> list[dict]:
    """One trial's reports, one per epoch: the score climbs to `score` at the last epoch reached
    (every epoch for "completed", one for anything else unless `epochs` says otherwise)."""
    epochs = epochs or (max_epochs if status == "completed" else 1)
    cfg = json.dumps({"seed": seed, "variant": variant, **config})
    return [{
        "trial_id": trial_id, "variant": variant, "method": variant.split("-")[0], "seed": seed, "config": cfg,
        "epoch": e, "max_epochs": max_epochs, "fidelity": e / max_epochs,
        "status": status if e == epochs else "running",
        "params": int(pct * 1e6), "total_params": 100_000_000, "params_pct": pct,
        "score": score - (epochs - e), "score_vqa": score + 1 - (epochs - e), "score_gqa": score - 1 - (epochs - e),
        "wall_time_s": wall * e, "checkpoint_path": "",
    } for e in range(1, epochs + 1)]


def study(*trials: dict) -> pd.DataFrame:
    """A results table from trial specs (keyword arguments of `trial_rows`)."""
    return pd.DataFrame([row for spec in trials for row in trial_rows(**spec)])


def sample_study() -> pd.DataFrame:
    """Four variants, two seeds of one VL-PET config, a pruned trial with the best score, a failed trial."""
    return study(
        {"trial_id": "t0", "variant": "full", "pct": 100.0, "score": 77.0},
        {"trial_id": "t1", "variant": "bitfit", "pct": 1.21, "score": 65.0},
        {"trial_id": "t2", "variant": "vlpet-large", "pct": 4.16, "score": 79.0, "seed": 0, "lr": 1e-3},
        {"trial_id": "t3", "variant": "lora", "pct": 5.93, "score": 76.0},
        {"trial_id": "t4", "variant": "prompt", "pct": 2.0, "score": 99.0, "status": "pruned"},
        {"trial_id": "t5", "variant": "vlpet-large", "pct": 4.16, "score": 78.0, "seed": 1, "lr": 1e-3},
        {"trial_id": "t6", "variant": "adapter", "pct": 4.18, "score": NAN, "status": "failed"},
    )


def dominates(a: np.ndarray, b: np.ndarray) -> bool:
    return a[0] <= b[0] and a[1] >= b[1] and (a[0] < b[0] or a[1] > b[1])


# ---------------------------------------------------------------- Pareto front


@pytest.mark.parametrize("points, expected", [
    ([(1, 1), (2, 2), (2, 1), (3, 3), (3, 2.5)], [1, 1, 0, 1, 0]),
    ([(1, 5), (1, 4)], [1, 0]),  # same params: the higher score wins
    ([(1, 5), (2, 5)], [1, 0]),  # same score: fewer params wins
    ([(1, 5), (1, 5), (2, 6)], [1, 1, 1]),  # exact duplicates of a front point both stay on the front
    ([(1, 5), (2, 4), (2, 4)], [1, 0, 0]),  # ... and duplicates of a dominated point both stay off
    ([(3, 7)], [1]),  # a single point
    ([(1, 10), (2, 9), (3, 8), (5, 1), (1, 9.5)], [1, 0, 0, 0, 0]),  # all dominated but one
    ([(1, NAN), (2, 3), (NAN, 9)], [0, 1, 0]),  # NaN is never on the front and dominates nothing
    ([(1, NAN)], [0]),
])
def test_pareto_front_hand_made(points, expected):
    params, scores = zip(*points)
    assert pareto_front(params, scores).tolist() == [bool(e) for e in expected]


def test_pareto_front_empty_and_matches_brute_force():
    assert pareto_front([], []).tolist() == []
    rng = np.random.default_rng(0)
    pts = rng.integers(0, 6, size=(200, 2)).astype(float)  # small integers: many ties and duplicates
    brute = [not any(dominates(q, p) for q in pts) for p in pts]
    assert pareto_front(pts[:, 0], pts[:, 1]).tolist() == brute


# ---------------------------------------------------------------- hypervolume


def test_hypervolume_hand_computed():
    # Front (1,5), (2,8), (4,9), ref (10, 0): strips (2-1)*5 + (4-2)*8 + (10-4)*9 = 5 + 16 + 54 = 75.
    assert hypervolume_2d([1, 2, 4], [5, 8, 9], 10, 0) == pytest.approx(75)
    # A dominated point (3,7), a duplicate (2,8), NaN, and points outside the box (12,20), (5,-1) change nothing.
    assert hypervolume_2d([1, 2, 4, 3, 2, 6, 12, 5], [5, 8, 9, 7, 8, NAN, 20, -1], 10, 0) == pytest.approx(75)
    # ref (4, 2): (2-1)*(5-2) + (4-2)*(8-2) = 3 + 12 = 15.
    assert hypervolume_2d([1, 2], [5, 8], 4, 2) == pytest.approx(15)
    # One point at the default reference (100 %, 0): (100-4.16)*79.18 = 95.84*79.18 = 7588.6112.
    assert hypervolume_2d([4.16], [79.18], *analysis.DEFAULT_REFERENCE) == pytest.approx(7588.6112)
    assert hypervolume_2d([], [], 10, 0) == 0.0


def test_hypervolume_history_is_monotone_and_counts_pruned_compute():
    hist = hypervolume_history(sample_study())
    assert np.all(np.diff(hist["hypervolume"]) >= 0)
    assert list(hist["trial_id"]) == [f"t{i}" for i in range(7)]
    # every finished trial's final wall time: 5 completed (3 epochs x 100 s), pruned and failed 1 epoch each
    assert hist["compute_s"].iloc[-1] == pytest.approx(5 * 300 + 100 + 100)
    assert hist["epochs"].iloc[-1] == 5 * 3 + 1 + 1
    assert hist.loc[hist["trial_id"] == "t4", "full_fidelity"].item() is False
    # seeds are separate points in the history: t2 (79) is the vlpet-large point, t5 (78) adds nothing
    expected = hypervolume_2d([100, 1.21, 4.16, 5.93, 4.16], [77, 65, 79, 76, 78], 100, 0)
    assert hist["hypervolume"].iloc[-1] == pytest.approx(expected)


# ---------------------------------------------------------------- frontier


def test_pruned_and_unfinished_trials_never_on_the_front():
    res = find_fronts(sample_study())
    trials = res.trials.set_index("trial_id")
    assert trials.loc["t4", "score"] == 99.0 and not trials.loc["t4", "full_fidelity"]
    assert not trials.loc["t4", "on_front"] and "prompt" not in set(res.front["variant"])
    assert list(res.front["variant"]) == ["bitfit", "vlpet-large"]
    assert trials["on_front"].sum() == 2  # t1 and t2 (t5 is a worse seed of t2's configuration)
    running = study({"trial_id": "r", "variant": "lora", "pct": 0.1, "score": 99, "status": "running", "epochs": 3})
    assert not find_fronts(pd.concat([sample_study(), running])).trials.set_index("trial_id").loc["r", "on_front"]


def test_seeds_are_aggregated_by_config_without_seed():
    res = find_fronts(sample_study())
    row = res.aggregated.set_index("variant").loc["vlpet-large"]
    assert row["n_seeds"] == 2 and row["seeds"] == "0, 1" and row["trial_ids"] == "t2, t5"
    assert row["score"] == pytest.approx(78.5)
    assert row["score_std"] == pytest.approx(np.std([79, 78], ddof=1))
    assert row["score_vqa"] == pytest.approx(79.5) and row["config"] == '{"lr": 0.001, "variant": "vlpet-large"}'
    best = res.best_per_variant.set_index("variant")
    assert best.loc["vlpet-large", "score"] == pytest.approx(78.5) and "adapter" not in best.index
    assert res.hypervolume == pytest.approx(hypervolume_2d([100, 1.21, 4.16, 5.93], [77, 65, 78.5, 76], 100, 0))
    assert set(res.per_task) == {"vqa", "gqa"} and list(res.per_task["vqa"]["variant"]) == ["bitfit", "vlpet-large"]
    # a different learning rate is a different configuration
    other = study({"trial_id": "t7", "variant": "vlpet-large", "pct": 4.16, "score": 70.0, "seed": 2, "lr": 1e-4})
    assert len(find_fronts(pd.concat([sample_study(), other])).aggregated.query("variant == 'vlpet-large'")) == 2


def test_a_configuration_run_twice_on_one_seed_is_one_seed():
    """A search that ran out of unseen points trains a known one again, on the same seed: one seed, not two
    with a spread of 0 (seen in a study of bitfit's two learning rates in three trials)."""
    again = study({"trial_id": "t8", "variant": "vlpet-large", "pct": 4.16, "score": 79.0, "seed": 0, "lr": 1e-3})
    row = find_fronts(pd.concat([sample_study(), again])).aggregated.set_index("variant").loc["vlpet-large"]
    assert row["n_seeds"] == 2 and row["seeds"] == "0, 1" and row["trial_ids"] == "t5, t8"


def test_tie_marks_and_noise_note_say_which_differences_are_inside_the_seed_spread():
    from analysis.report import noise_note, tie_marks
    # seeds: full 80 ± 1.4, vlpet-large 79 ± 1.4 (overlaps full), lora 70 ± 1.4 (overlaps nobody); bitfit one seed
    rows = study(*({"trial_id": f"{v}{k}", "variant": v, "pct": pct, "score": base + d, "seed": k}
                   for v, pct, base in (("full", 100.0, 80), ("vlpet-large", 4.16, 79), ("lora", 5.93, 70))
                   for k, d in ((0, 1), (1, -1))),
                 {"trial_id": "b0", "variant": "bitfit", "pct": 1.21, "score": 60.0})
    best = find_fronts(rows).best_per_variant
    assert list(best["variant"]) == ["full", "vlpet-large", "lora", "bitfit"]
    assert tie_marks(best, "score") == ["", "≈ full", "", "—"]
    note = noise_note(best, "score")
    assert "median 1.41, max 1.41 over 3 configuration(s)" in note and "1 row(s) have one seed only" in note
    single = find_fronts(sample_study().query("seed == 0")).best_per_variant
    assert set(tie_marks(single, "score")) == {"—"} and "Ranking not established" in noise_note(single, "score")


def test_constant_note_names_the_variants_that_do_not_clear_the_best_constant_answer():
    from analysis.report import constant_note
    best = find_fronts(sample_study()).best_per_variant  # score_vqa = score + 1, score_gqa = score - 1
    note = constant_note(best, {"vqa": 60.0, "gqa": 60.0})
    assert "vqa 60.00, gqa 60.00" in note and "bitfit (vqa, gqa)" in note and "vlpet-large" not in note
    assert "clears it by 10 points or more" in constant_note(best, {"vqa": 10.0, "gqa": 10.0})
    assert "not computed" in constant_note(best, None)


def test_nan_scores_are_left_out_and_reported():
    df = pd.concat([sample_study(), study({"trial_id": "n", "variant": "lora", "pct": 0.5, "score": NAN, "seed": 1})])
    res = find_fronts(df)  # n is a second seed of t3's configuration
    assert res.aggregated.set_index("variant").loc["lora", "trial_ids"] == "t3"
    assert not res.trials.set_index("trial_id").loc["n", "on_front"]
    assert any("1 completed full-fidelity trial(s) have a NaN `score`" in w and w.endswith(": n") for w in res.warnings)
    assert any("1 trial(s) failed" in w for w in res.warnings)


def test_missing_and_derivable_columns():
    with pytest.raises(AnalysisError, match="`score`"):
        find_fronts(sample_study().drop(columns="score"))
    with pytest.raises(AnalysisError, match="empty"):
        find_fronts(sample_study().iloc[:0])
    res = find_fronts(sample_study().drop(columns=["params_pct", "config", "wall_time_s"]))
    assert res.front["params_pct"].tolist() == pytest.approx([1.21, 4.16])
    assert any("derived from `params` and `total_params`" in w for w in res.warnings)
    assert any("no `config` column" in w for w in res.warnings)
    assert (res.aggregated["n_seeds"] == 1).all()  # without configs, seeds cannot be matched


def test_load_results_errors(tmp_path):
    assert issubclass(AnalysisError, ValueError)
    with pytest.raises(AnalysisError, match="study directory not found"):
        load_results(tmp_path / "nope")
    with pytest.raises(AnalysisError, match="results.parquet"):
        load_results(tmp_path)
    sample_study().iloc[:0].to_parquet(tmp_path / "results.parquet")
    with pytest.raises(AnalysisError, match="is empty"):
        load_results(tmp_path)
    (tmp_path / "results.parquet").unlink()
    sample_study().to_csv(tmp_path / "results.csv", index=False)
    assert len(load_results(tmp_path)) == len(sample_study())


# ---------------------------------------------------------------- report and plots


def test_report_renders_from_a_stored_table(tmp_path):
    sample_study().to_parquet(tmp_path / "results.parquet")
    report = write_report(tmp_path, png=False)
    text = report.read_text()
    out = tmp_path / "report"
    for name in ("frontier.html", "frontier_vqa.html", "frontier_gqa.html", "hypervolume.html", "trials.csv",
                 "front.csv", "best_per_variant.csv"):
        assert (out / name).exists(), name
    assert "plotly" in (out / "frontier.html").read_text().lower() and (out / "plotly.min.js").exists()
    front = text.split("## Efficiency-effectiveness frontier")[1].split("## Hypervolume")[0]
    assert "| bitfit |" in front and "| vlpet-large |" in front and "lora" not in front
    assert "78.50 ± 0.71 (2 seeds)" in text
    assert "VL-PET-large" in text and "79.18" in text and "Table 2, VL-BART" in text  # the paper's table
    assert "Spearman" in text and "<= 4.16" in text
    assert "1 trial(s) failed" in text and "12 pruned" not in text
    assert list(pd.read_csv(out / "front.csv")["variant"]) == ["bitfit", "vlpet-large"]


def test_a_report_that_cannot_be_written_leaves_the_previous_one_whole(tmp_path, monkeypatch):
    """A full disk mid-report: one error line naming the fix, the previous report byte-identical, no
    half-written directory left beside it; the next report replaces the old one whole."""
    import errno

    import analysis.report as report_module

    sample_study().to_parquet(tmp_path / "results.parquet")
    write_report(tmp_path, png=False)
    before = {p.name: p.read_bytes() for p in (tmp_path / "report").iterdir()}

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report_module, "save_figures", full_disk)
    with pytest.raises(AnalysisError, match=r"cannot write the report in .* \(No space left on device\); free space"):
        write_report(tmp_path, png=False)
    assert {p.name: p.read_bytes() for p in (tmp_path / "report").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results.parquet"]
    monkeypatch.undo()
    (tmp_path / "report" / "stale.txt").write_text("from an older report")
    write_report(tmp_path, png=False)
    assert not (tmp_path / "report" / "stale.txt").exists() and (tmp_path / "report" / "report.md").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "results.parquet"]


def test_the_report_command_runs_under_an_ascii_locale(tmp_path):
    """A non-UTF-8 console: the summary's '±' and '—' are escaped, not a crash; report.md is UTF-8 whole."""
    sample_study().to_parquet(tmp_path / "results.parquet")
    env = {**os.environ, "LANG": "C", "LC_ALL": "C", "PYTHONIOENCODING": "ascii", "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "studies.report_command", str(tmp_path), "--no-png"], env=env,
                         capture_output=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    assert "78.50 ± 0.71 (2 seeds)" in (tmp_path / "report" / "report.md").read_text(encoding="utf-8")


def test_report_lists_table9_beside_a_designs_study(tmp_path):
    """Table 9 joins the paper comparison only when the study has its combinations (e.g. a `designs` study)."""
    designs = study({"trial_id": "d0", "variant": "compacter+g-large+lw", "pct": 3.28, "score": 77.0},
                    {"trial_id": "d1", "variant": "adapter+lw", "pct": 3.5, "score": 76.0},
                    {"trial_id": "d2", "variant": "adapter", "pct": 4.18, "score": 75.0})
    designs.to_parquet(tmp_path / "results.parquet")
    paper = write_report(tmp_path, png=False).read_text().split("## Beside the paper")[1]
    assert paper.startswith(" (Table 2 + Table 9, VL-BART")
    assert "| Compacter + G_large + LW | compacter+g-large+lw | 3.28 / 3.28 | 65.60 ± 0.15 / 78.00 |" in paper
    assert "| VL-Adapter + G_small + LW | adapter+g-small+lw | 2.98 / — | 65.56 ± 0.17 / — |" in paper
    assert "| adapter+lw | adapter+lw |" in paper  # ours, not in the paper
    assert paper.count("| Compacter |") == 1  # Table 9 repeats the Table 2 baseline
    assert "| <= 2.07 | compacter+g-middlex+lw (76.76) |" in paper  # Table 9 rows take part in the budgets


def test_report_backbone_from_study_json(tmp_path):
    sample_study().to_parquet(tmp_path / "results.parquet")
    (tmp_path / "study.json").write_text(json.dumps({"backbone": "t5-base"}))
    text = write_report(tmp_path, png=False).read_text()
    assert "Table 2, VL-T5" in text and "79.52 ± 0.21" in text and "(study.json)" in text
    assert "baseline rows for t5-base are the LST paper's three-seed results" in text


def test_report_when_every_trial_failed(tmp_path):
    df = study(*({"trial_id": f"f{i}", "variant": "lora", "pct": 5.93, "score": NAN, "status": "failed"}
                 for i in range(3)))
    df["error"] = "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory"
    df.to_csv(tmp_path / "results.csv", index=False)
    text = write_report(tmp_path, png=False).read_text()
    assert "no completed full-fidelity trials; 3 failed: RuntimeError: CUDA out of memory" in text
    assert "frontier: empty" in text and (tmp_path / "report" / "frontier.html").exists()


def test_malformed_tables_get_one_line_or_a_warning_never_a_traceback(tmp_path, capsys):
    """Failed rows with an empty error, a string score, infinite scores, and `report` taken by a file."""
    df = sample_study()
    df["error"] = ""
    df.to_csv(tmp_path / "results.csv", index=False)  # CSV: the empty errors come back as missing values
    assert "1 trial(s) failed" in write_report(tmp_path, png=False).read_text()

    df["score"] = df["score"].astype(object)
    df.loc[df["trial_id"] == "t3", "score"] = "high"
    df.to_csv(tmp_path / "results.csv", index=False)
    assert main([str(tmp_path), "--no-png"]) == 2
    assert capsys.readouterr().err == ("error: results table column `score` holds 'high' (trial t3), not a number; "
                                       "fix or remove the row\n")

    df = sample_study()
    df.loc[df["trial_id"] == "t3", "score"] = np.inf
    df.to_csv(tmp_path / "results.csv", index=False)
    text = write_report(tmp_path, png=False).read_text()
    assert "`score` is infinite for trial(s) t3: read as missing" in text and "nan" not in text.split("## ")[1]
    history = pd.read_csv(tmp_path / "report" / "hypervolume.csv")
    assert np.isfinite(history.select_dtypes("number").to_numpy()).all()

    shutil.rmtree(tmp_path / "report")
    (tmp_path / "report").write_text("not a directory")
    assert main([str(tmp_path), "--no-png"]) == 2
    assert "report is a file, not the report directory" in capsys.readouterr().err


def test_cli(tmp_path, capsys):
    assert main([str(tmp_path / "nope"), "--no-png"]) == 2
    assert "study directory not found" in capsys.readouterr().err
    assert main([str(tmp_path), "--no-png"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.parquet" in err
    sample_study().drop(columns="status").to_parquet(tmp_path / "results.parquet")
    assert main([str(tmp_path), "--no-png"]) == 2
    assert "`status`" in capsys.readouterr().err
    sample_study().to_parquet(tmp_path / "results.parquet")
    assert main([str(tmp_path), "--no-png"]) == 0
    out = capsys.readouterr().out
    assert "report.md" in out and "frontier: bitfit (1.21 %), vlpet-large (4.16 %)" in out


def test_cli_entry_point_exit_status(tmp_path):
    run = subprocess.run([sys.executable, "-m", "studies.report_command", str(tmp_path / "missing")],
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], check=False)
    assert run.returncode == 2 and run.stderr.startswith("error: study directory not found")


def test_static_images_are_drawn_without_a_browser(tmp_path):
    """PNG and SVG of the frontier and the hypervolume history from matplotlib, beside the HTML: the
    images hold the figure's points (the front's markers, the hollow pruned one) and its labels."""
    result = find_fronts(sample_study())
    plots.save_figures({tmp_path / "frontier": plots.frontier_figure(result),
                        tmp_path / "hypervolume": plots.hypervolume_figure(
                            {"s": hypervolume_history(sample_study())}, result.reference)})
    for name in ("frontier", "hypervolume"):
        png = (tmp_path / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 20_000 and (tmp_path / f"{name}.html").exists()
    svg = (tmp_path / "frontier.svg").read_text()
    assert "vlpet-large" in svg and "Pareto frontier" in svg and "Efficiency-effectiveness frontier" in svg
    assert "trainable parameters (% of the model, log scale)" in svg


def test_report_writes_its_pictures_and_no_png_skips_them(tmp_path):
    sample_study().to_parquet(tmp_path / "results.parquet")
    write_report(tmp_path)
    assert {"frontier.png", "frontier.svg", "hypervolume.png", "frontier_vqa.png"} <= {
        p.name for p in (tmp_path / "report").iterdir()}
    shutil.rmtree(tmp_path / "report")
    write_report(tmp_path, png=False)
    assert not list((tmp_path / "report").glob("*.png")) and (tmp_path / "report" / "frontier.html").exists()


def test_report_says_whether_the_search_dominated_the_papers_hand_picked_configurations(tmp_path):
    """Two reference trials: one dominated by a searched configuration (fewer params, higher score), one
    not; the cheapest dominating search trial is named."""
    table = sample_study().assign(phase="search")
    refs = study({"trial_id": "r1", "variant": "vlpet-large", "pct": 8.0, "score": 70.0, "lr": 1e-4},
                 {"trial_id": "r2", "variant": "bitfit", "pct": 1.0, "score": 60.0, "lr": 1e-4}).assign(phase="reference")
    pd.concat([table, refs]).to_parquet(tmp_path / "results.parquet")
    text = write_report(tmp_path, png=False).read_text()
    assert "the paper's hand-picked configurations: the search dominated 1 of 2 (vlpet-large)" in text
    section = text.split("## The paper's hand-picked configurations")[1].split("##")[0]
    assert "| vlpet-large | 8.00 | 70.00 | vlpet-large (4.16 %, 79.00) |" in section  # not bitfit: 65 < 70
    assert "| bitfit | 1.00 | 60.00 | not dominated |" in section
