"""The study report: frontier plots, CSV tables and report.md with the paper's Table 2 (and Table 9 for
studies of VL-PET's designs on other methods) beside the results.

Reads `<study_dir>/results.parquet` (or results.csv) and writes `<study_dir>/report/`. The command that runs it,
also for a study's home URI, is vlpet-report (studies/report_command.py).
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from analysis.fronts import FrontierResult, find_fronts, mean_std, paper_references
from analysis.hypervolume import hypervolume_2d, hypervolume_history
from analysis.paper_table import PAPER_TASKS, baselines_note, paper_table, resolve_backbone
from analysis.plots import frontier_figure, hypervolume_figure, save_figures
from analysis.results_contract import PRUNED, TASK_PREFIX, task_name
from analysis.standalone import standalone_html
from analysis.study_layout import REPORT, STUDY_JSON
from analysis.table import AnalysisError, load_results

DEFAULT_BACKBONE = "bart-base"
CONSTANT_MARGIN = 10.0  # points above the best constant answer that count as having learned a task


def write_report(study_dir: str | Path, backbone: str | None = None, png: bool = True) -> Path:
    """Analyse `<study_dir>`'s results table and write `<study_dir>/report/`; returns the report.md path.

    Writes report.html (the whole report as one self-contained page), frontier.html (+ .png and .svg unless
    `png` is false), frontier_<task>.html per task, hypervolume.html,
    trials.csv, front.csv, best_per_variant.csv, hypervolume.csv and report.md. Raises AnalysisError when the
    table is missing, empty or lacks a required column; every lesser gap is reported in report.md.
    """
    return build_report(Path(study_dir), backbone, png)[0]


def build_report(study_dir: Path, backbone: str | None = None, png: bool = True) -> tuple[Path, FrontierResult]:
    """`write_report`, also returning the analysis (for the summaries that the commands print)."""
    results = load_results(study_dir)
    backbone, source = (backbone, "--backbone") if backbone else _study_backbone(study_dir)
    backbone = resolve_backbone(backbone)
    result = find_fronts(results)
    history = hypervolume_history(results)
    final = study_dir / REPORT
    if final.exists() and not final.is_dir():
        raise AnalysisError(f"{final} is a file, not the report directory; move it away and run again")
    out = study_dir / f".report-{uuid.uuid4().hex[:8]}"  # beside it, then renamed into place
    try:
        out.mkdir()
    except OSError as err:
        raise AnalysisError(f"cannot write the report in {study_dir} ({err.strerror}); make it writable, or "
                            "copy the study elsewhere and report the copy") from None
    try:
        _write_report(study_dir, out, result, history, (backbone, source), png)
        _replace_dir(out, final)
    except OSError as err:
        shutil.rmtree(out, ignore_errors=True)
        raise AnalysisError(f"cannot write the report in {study_dir} ({err.strerror}); free space or make it "
                            "writable and run again (the previous report, if any, is unchanged)") from None
    return final / "report.md", result


def _write_report(study_dir: Path, out: Path, result: FrontierResult, history: pd.DataFrame,
                  backbone: tuple[str, str], png: bool) -> None:
    """Every file of the report, into the empty directory `out`; `backbone` is the paper table's backbone
    and where it came from."""
    figures = {
        out / "frontier": frontier_figure(result),
        **{out / f"frontier_{task_name(c)}": frontier_figure(result, c) for c in result.tasks},
        out / "hypervolume": hypervolume_figure({study_dir.resolve().name: history}, result.reference),
    }
    save_figures(figures, png)
    for name, table in {"trials": result.trials, "front": result.front, "best_per_variant": result.best_per_variant,
                        "hypervolume": history}.items():
        table.to_csv(out / f"{name}.csv", index=False)
    sections = [
        _header(study_dir, result, f"{backbone[0]} ({backbone[1]})"),
        _frontier_section(result, out),
        _hypervolume_section(result, history, out),
        _best_section(result, _constant_baselines(study_dir)),
        _paper_reference_section(result),
        _per_task_section(result),
        _paper_section(result, backbone[0]),
    ]
    markdown = "\n\n".join(sections) + "\n"
    (out / "report.md").write_text(markdown, encoding="utf-8")
    page = standalone_html(markdown, out, {path.name: fig for path, fig in figures.items()},
                           f"study {study_dir.resolve().name}")
    (out / "report.html").write_text(page, encoding="utf-8")


def _replace_dir(new: Path, final: Path) -> None:
    """Put the finished report directory `new` in place of `final` by renames: a reader sees the old report
    or the new one, never a half-written one."""
    if final.exists():
        old = final.with_name(f"{new.name}-old")
        final.rename(old)
        new.rename(final)
        shutil.rmtree(old)
    else:
        new.rename(final)


def summary_lines(result: FrontierResult, front: bool = True) -> list[str]:
    """A few lines on the study: trials by status, compute, the front (unless `front` is false: shown as a
    table by the caller) and its hypervolume."""
    trials = result.trials
    counts = ", ".join(f"{n} {s}" for s, n in trials["status"].value_counts().items())
    lines = [(f"trials: {len(trials)} ({counts}); full-fidelity: {int(trials['full_fidelity'].sum())} trials in "
              f"{len(result.aggregated)} configurations (seeds averaged)")]
    wall = trials["wall_time_s"].astype(float)
    if wall.notna().any():
        pruned = wall[trials["status"] == PRUNED].sum()
        lines.append(f"compute: {wall.sum() / 3600:.2f} h of trial wall time, {pruned / 3600:.2f} h of it in pruned "
                     "trials")
    saved = _early_stopping_saving(trials)
    if saved:
        lines.append(saved)
    if front:
        points = ", ".join(f"{r.variant} ({getattr(r, result.params_col):.3g} %)" for r in result.front.itertuples())
        lines.append(f"frontier: {points or 'empty: no completed full-fidelity trial with a score'}")
    lines.append(f"hypervolume: {result.hypervolume:,.1f} (reference {_reference(result)})")
    refs = paper_references(result)
    if len(refs):
        beaten, stopped = refs[refs["dominated_by"].notna()], refs[refs["stopped_at"].notna()]
        lines.append(f"the paper's hand-picked configurations: the search dominated {len(beaten)} of {len(refs)}"
                     + (f" ({', '.join(beaten['variant'])})" if len(beaten) else "")
                     + (f"; {len(stopped)} more could not reach its front and were stopped early "
                        f"({', '.join(stopped['variant'])})" if len(stopped) else ""))
    return lines


def _early_stopping_saving(trials: pd.DataFrame) -> str | None:
    """What early stopping saved: the epochs the pruned trials did not train, against training every trial
    of their phases to its last epoch (in epochs, and in hours at each pruned trial's own epoch time)."""
    pruned = trials[trials["status"] == PRUNED]
    if pruned.empty:
        return None
    phases = trials[trials["phase"].isin(pruned["phase"].unique())] if "phase" in trials else trials
    left = (pruned["max_epochs"] - pruned["epoch"]).clip(lower=0)
    saved_h = (left * pruned["wall_time_s"].astype(float) / pruned["epoch"].clip(lower=1)).sum() / 3600
    trained, skipped = float(phases["epoch"].sum()), float(left.sum())
    return (f"early stopping: {len(pruned)} trials stopped, {skipped:.0f} of {trained + skipped:.0f} epochs not trained "
            f"({100 * skipped / (trained + skipped):.0f} % of training every drawn configuration to the end; "
            f"{saved_h:.2f} h)")


def _study_backbone(study_dir: Path) -> tuple[str, str]:
    """The backbone named in study.json, else the default, with where it came from."""
    path = study_dir / STUDY_JSON
    if not path.exists():
        return DEFAULT_BACKBONE, "default"
    try:
        backbone = json.loads(path.read_text()).get("backbone")
    except (ValueError, AttributeError) as err:
        raise AnalysisError(f"cannot read {path}: {err}") from None
    return (backbone, STUDY_JSON) if backbone else (DEFAULT_BACKBONE, f"default: {STUDY_JSON} names no backbone")


def _reference(result: FrontierResult) -> str:
    return f"{result.params_col} = {result.reference[0]:g}, {result.score_col} = {result.reference[1]:g}"


def _header(study_dir: Path, result: FrontierResult, backbone: str) -> str:
    lines = [f"# Study report: {study_dir.resolve().name}", "", f"Paper table for comparison: {backbone}.", "",
             "## Summary", "", *(f"- {line}" for line in summary_lines(result))]
    if result.warnings:
        lines += ["", "## Warnings", "", *(f"- {w}" for w in result.warnings)]
    return "\n".join(lines)


def front_table(result: FrontierResult) -> pd.DataFrame:
    """The front by increasing params (formatted cells): each configuration's scores, the params budgets it
    is the best choice for (from its own params up to the next one's) and its trials."""
    front, x = result.front, result.params_col
    upper = [*front[x].iloc[1:], result.reference[0]]
    return _score_table(front, result).assign(**{
        "wins for budgets (%)": [f"[{_num(p)}, {_num(u)})" for p, u in zip(front[x], upper)],
        "trials": front["trial_ids"]})


def _frontier_section(result: FrontierResult, out: Path) -> str:
    """The front with the params budget each front configuration wins, and the plot."""
    table = front_table(result)
    return "\n".join([
        "## Efficiency-effectiveness frontier", "",
        ("Full-fidelity configurations (completed at fidelity 1, seeds averaged) that no other configuration beats "
         "on both trainable params and average score; pruned trials have low-fidelity scores only and never enter. "
         "Each front configuration is the best choice for a params budget from its own params up to the next one's."),
        "", _images(out, "frontier"), "", _markdown(table),
    ])


def _hypervolume_section(result: FrontierResult, history: pd.DataFrame, out: Path) -> str:
    if history["full_fidelity"].any():
        top = history.loc[history["hypervolume"].idxmax()]  # the first trial that reached the final value
        when = (f"reached its final {top['hypervolume']:,.1f} after {top['n_finished']} of {len(history)} finished "
                f"trials ({top['compute_s'] / 3600:.2f} h of compute)")
    else:
        when = "stays 0: no trial reached full fidelity"
    return "\n".join([
        "## Hypervolume", "",
        (f"Hypervolume of the front: **{result.hypervolume:,.1f}**, reference point ({_reference(result)}): the area "
         "of the (params %, score) plane that the front dominates inside params <= 100 % (full fine-tuning) and "
         f"score >= 0. Over the study, counting every seed as its own point, it {when}."), "",
        _images(out, "hypervolume"),
    ])


def _best_section(result: FrontierResult, constants: dict[str, float] | None) -> str:
    best = result.best_per_variant
    table = _score_table(best, result).assign(**{"tied with": tie_marks(best, result.score_col)},
                                              config=best["config"].map(lambda c: f"`{c}`"))
    return "\n".join(["## Best configuration per variant", "",
                      "The full-fidelity configuration with the highest mean score over seeds, best first.", "",
                      _markdown(table), "", noise_note(best, result.score_col), "", constant_note(best, constants)])


def _paper_reference_section(result: FrontierResult) -> str:
    refs = paper_references(result)
    head = ["## The paper's hand-picked configurations", "",
            ("Each variant's configuration from the paper's scripts (sizes scaled to this backbone, the paper's "
            "learning rate), trained as a reference point: is it dominated by a configuration the search found "
            "(no more params, no lower score)? With front early stopping, one whose best possible final score "
            "(by the search's learning curves) is already beaten at its size is stopped early; its score is "
            "then that epoch's."), ""]
    if refs.empty:
        return "\n".join([*head, "None trained in this study (study.paper_reference: false, or none finished)."])
    table = pd.DataFrame({
        "variant": refs["variant"], "params %": refs["params"].map(_num), "score": refs["score"].map(_num),
        "dominated by (cheapest)": [
            f"stopped at epoch {int(e)}: cannot reach the front at its size" if pd.notna(e)
            else "not dominated" if pd.isna(v) else f"{v} ({_num(bp)} %, {_num(bs)})"
            for v, bp, bs, e in zip(refs["dominated_by"], refs["by_params"], refs["by_score"], refs["stopped_at"])]})
    return "\n".join([*head, _markdown(table)])


def constant_note(best: pd.DataFrame, constants: dict[str, float] | None) -> str:
    """The best constant answer per task, and which variants do not clear it by CONSTANT_MARGIN points."""
    if not constants:
        return "Best constant answer: not computed (the study's data root is not readable here)."
    line = ", ".join(f"{task} {score:.2f}" for task, score in constants.items())
    short = [f"{row['variant']} ({', '.join(t for t in constants if row.get(TASK_PREFIX + t, np.nan) < constants[t] + CONSTANT_MARGIN)})"
             for _, row in best.iterrows()
             if any(row.get(TASK_PREFIX + t, np.nan) < constants[t] + CONSTANT_MARGIN for t in constants)]
    verdict = (f"Within {CONSTANT_MARGIN:g} points of it on some task (learned little beyond the answer prior there): "
               + "; ".join(short)) if short else f"Every variant clears it by {CONSTANT_MARGIN:g} points or more on every task."
    return (f"Best constant answer (one output for every validation example, the best of the most frequent ones): "
            f"{line}. {verdict}")


def _constant_baselines(study_dir: Path) -> dict[str, float] | None:
    """The best constant answer per task on the study's validation data (study.json's run.data), or None
    when the data is not readable from here (a cluster path, a study copied without its data)."""
    from vlpet.data import DataConfig
    from vlpet.errors import build_dataclass
    from vlpet.train.evaluate import constant_baselines

    try:
        data = json.loads((study_dir / STUDY_JSON).read_text())["run"]["data"]
        return constant_baselines(build_dataclass(DataConfig, data, "run.data"))
    except (OSError, ValueError, KeyError, TypeError):  # ConfigError is a ValueError
        return None


def tie_marks(rows: pd.DataFrame, score_col: str) -> list[str]:
    """For rows sorted by decreasing mean score: the better-ranked rows whose mean ± std interval overlaps
    this row's ('≈ vlpet-large, lora'), i.e. differences inside the seed spread; '—' for single-seed rows."""
    lo, hi = rows[score_col] - rows[f"{score_col}_std"], rows[score_col] + rows[f"{score_col}_std"]
    marks = []
    for i in range(len(rows)):
        if rows["n_seeds"].iloc[i] < 2:
            marks.append("—")
            continue
        tied = [rows["variant"].iloc[j] for j in range(i) if rows["n_seeds"].iloc[j] > 1 and lo.iloc[j] <= hi.iloc[i]]
        marks.append("≈ " + ", ".join(tied) if tied else "")
    return marks


def noise_note(rows: pd.DataFrame, score_col: str) -> str:
    """Whether the ranking of `rows` is established by seeds: the seed spread, or why it is unknown."""
    seeded = rows[rows["n_seeds"] > 1]
    if seeded.empty:
        return ("**Ranking not established:** every configuration ran with one seed, so the seed spread is unknown "
                "and differences between rows may be noise. Run with `study.seeds: 2` or more (`--seeds 2`) for "
                "mean ± std and tie markers.")
    spread = seeded[f"{score_col}_std"]
    single = len(rows) - len(seeded)
    return (f"Seed spread (std of the {score_col} over seeds): median {spread.median():.2f}, max {spread.max():.2f} "
            f"over {len(seeded)} configuration(s) with >= 2 seeds. Rows marked ≈ are inside the spread of a better row: "
            "their order is not established." + (f" {single} row(s) have one seed only (—)." if single else ""))


def _per_task_section(result: FrontierResult) -> str:
    lines = ["## Per-task frontiers", ""]
    for task, front in result.per_task.items():
        col = f"{TASK_PREFIX}{task}"
        points = ", ".join(f"{r['variant']} ({r[result.params_col]:.3g} %, {r[col]:.2f})" for _, r in front.iterrows())
        lines.append(f"- **{task}**: {points or 'empty'} ([plot](frontier_{task}.html))")
    return "\n".join(lines if result.per_task else [*lines, "No per-task score columns."])


def _paper_section(result: FrontierResult, backbone: str) -> str:
    """Our best configuration per variant beside the paper's Table 2 (+ Table 9 when the study has its
    variants), then the shape: ranks and budget winners. Video-only studies get a note instead: the
    paper's video-text table is not available to this project."""
    if not {task_name(c) for c in result.tasks} & set(PAPER_TASKS):
        return "\n".join(["## Beside the paper", "",
                          (f"This study's tasks ({', '.join(task_name(c) for c in result.tasks)}) are video-text "
                           "tasks; the paper's video-text results table is not available to this project, so there "
                           "is no side-by-side comparison. The image-text tables (Table 2, Table 9) are not "
                           "comparable.")])
    paper = paper_table(backbone, result.trials["variant"])
    ours = result.best_per_variant.set_index("variant")
    tables = " + ".join(f"Table {t}" for t in paper["table"].unique())
    return "\n".join([
        f"## Beside the paper ({tables}, VL-{backbone.split('-')[0].upper()}, {backbone})", "",
        ("Paper: test scores on VQA / GQA / NLVR2 / COCO captioning (CIDEr). Ours: validation scores of the best "
         "configuration per variant in this study. On the embedded synthetic benchmark the absolute numbers (and the "
         "params % of a small model) differ from the paper's, so compare the *shape*: which variants rank where by "
         "score and by params, and which variant wins under each params budget."), "",
        ("Cells are paper / ours; the paper's scores are means ± std over its 3 seeds. "
         + baselines_note(backbone)).strip(), "",
        _markdown(_side_by_side(paper, ours, result)), "",
        "### Ranks (1 = best score, fewest params), over the variants in both", "",
        *_ranks(paper, ours, result), "",
        "### Best variant under each params budget (the paper's Params % values)", "",
        "Each table in its own Params %: the highest-scoring variant with params <= the budget.", "",
        _markdown(_budgets(paper, result)), "",
        (f"Hypervolume of the paper's (Params %, Avg) front with the same reference: "
         f"{hypervolume_2d(paper['params_pct'], paper['avg'], *result.reference):,.1f}; ours: "
         f"{result.hypervolume:,.1f}."),
    ])


def _side_by_side(paper: pd.DataFrame, ours: pd.DataFrame, result: FrontierResult) -> pd.DataFrame:
    ours_cols = {"params_pct": result.params_col, **{t: f"{TASK_PREFIX}{t}" for t in PAPER_TASKS}, "avg": result.score_col}
    rows = paper.set_index("variant").reindex([*paper["variant"], *sorted(set(ours.index) - set(paper["variant"]))])
    mine = ours.reindex(rows.index)
    table = {"method": rows["method"].fillna(rows.index.to_series()), "variant": rows.index}
    names = {"params_pct": "Params %", **PAPER_TASKS, "avg": "Avg"}
    for col, our_col in ours_cols.items():
        values = mine[our_col] if our_col in mine else [np.nan] * len(rows)
        stds = rows[f"{col}_std"] if f"{col}_std" in rows else [np.nan] * len(rows)
        table[names[col]] = [f"{_num(p)}{'' if pd.isna(sd) else f' ± {sd:.2f}'} / {_num(o)}"
                             for p, sd, o in zip(rows[col], stds, values)]
    return pd.DataFrame(table)


def _ranks(paper: pd.DataFrame, ours: pd.DataFrame, result: FrontierResult) -> list[str]:
    both = [v for v in paper["variant"] if v in ours.index]
    if len(both) < 2:
        return ["Fewer than two of the paper's variants have a full-fidelity result: no ranking to compare."]
    p = paper.set_index("variant").loc[both]
    o = ours.loc[both]
    ranks = pd.DataFrame({
        "variant": both,
        "score rank paper": p["avg"].rank(ascending=False, method="min").astype(int),
        "score rank ours": o[result.score_col].rank(ascending=False, method="min").astype(int),
        "params rank paper": p["params_pct"].rank(method="min").astype(int),
        "params rank ours": o[result.params_col].rank(method="min").astype(int),
    }, index=both)
    # Spearman = Pearson correlation of the ranks (pandas' own spearman needs scipy)
    rho = {k: ranks[f"{k} rank paper"].corr(ranks[f"{k} rank ours"]) for k in ("score", "params")}
    return [_markdown(ranks), "", ("Spearman rank correlation, paper vs ours: "
                                   f"by score {_num(rho['score'])}, by params {_num(rho['params'])}.")]


def _budgets(paper: pd.DataFrame, result: FrontierResult) -> pd.DataFrame:
    agg = result.aggregated.dropna(subset=[result.score_col])
    rows = []
    for budget in sorted(paper["params_pct"].unique()):
        theirs = _winner(paper, "params_pct", "avg", budget)
        mine = _winner(agg, result.params_col, result.score_col, budget)
        rows.append({
            "budget (Params %)": f"<= {budget:g}",
            "paper winner": f"{theirs['variant']} ({theirs['avg']:.2f})",
            "our winner": "—" if mine is None else f"{mine['variant']} ({mine[result.score_col]:.2f})",
            "same": "—" if mine is None else "yes" if mine["variant"] == theirs["variant"] else "no",
        })
    return pd.DataFrame(rows)


def _winner(table: pd.DataFrame, params: str, score: str, budget: float) -> pd.Series | None:
    """The highest-scoring row with params <= budget, or None."""
    within = table[table[params] <= budget]
    return None if within.empty else within.loc[within[score].idxmax()]


def _score_table(rows: pd.DataFrame, result: FrontierResult) -> pd.DataFrame:
    """variant, params %, params, mean ± std of the score and the mean of each task."""
    y = result.score_col
    return pd.DataFrame({
        "variant": rows["variant"],
        "params %": rows[result.params_col].map(_num),
        "params": rows["params"].map(lambda p: "—" if pd.isna(p) else f"{p:,.0f}"),
        y: [mean_std(m, s, n) for m, s, n in zip(rows[y], rows[f"{y}_std"], rows["n_seeds"])],
        **{task_name(c): rows[c].map(_num) for c in result.tasks},
    })


def _images(out: Path, stem: str) -> str:
    png = f"![{stem}]({stem}.png)\n\n" if (out / f"{stem}.png").exists() else ""
    return f"{png}Interactive: [{stem}.html]({stem}.html)"


def _num(x: float) -> str:
    return "—" if pd.isna(x) else f"{x:.2f}" if abs(x) >= 1 else f"{x:.3g}"


def _markdown(df: pd.DataFrame) -> str:
    """A GitHub markdown table of already formatted cells (pandas' to_markdown needs tabulate)."""
    if df.empty:
        return "_none_"
    cells = df.astype(str).map(lambda s: s.replace("|", "\\|").replace("\n", " "))
    lines = [list(map(str, df.columns)), ["---"] * len(df.columns), *cells.to_numpy().tolist()]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
