"""The product's main job: efficiency-effectiveness frontiers of VL-PET and PET baselines.

    vlpet-study                                                  # embedded default: CPU, minutes
    vlpet-study --config studies/configs/paper_bart_base.yaml --address auto
    vlpet-study --resume --study-dir runs/studies/embedded       # continue a stopped study
    vlpet-study --config studies/configs/paper_bart_base.yaml --address auto --storage-path s3://BUCKET/studies
    vlpet-study --resume --address auto --storage-path s3://BUCKET/studies/paper-bart-base   # on a fresh head

(`vlpet-study` is `python studies/frontier.py`.)

Per variant, a Ray Tune study searched by Optuna (max score, min trainable params; the front sampler by
default) with early stopping of trials that cannot reach the front at their size, beside the paper's
hand-picked configurations, then a second seed for the front (studies/driver/study.py). Ends by writing the
frontier report.
Outputs: <study-dir>/results.parquet|csv, optuna.db, report/ (frontier.html, report.md, ...).
`--resume --study-dir X` continues a stopped (Ctrl-C: exit 130) or killed study with its own config
(X/study.json), every finished result kept. With `--storage-path URI` the study lives in URI/<name> (its
home: Tune's state, checkpoints, results, optuna.db, logs, report; studies/storage/study_home.py), and
`--resume --storage-path URI/<name>` continues it from there alone, on any head.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from studies.driver.ray_cluster import check_address, connect, loopback_local_cluster, storage_uri
from vlpet.errors import entry_point

if TYPE_CHECKING:
    from studies.storage.study_home import StudyHome


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer >= 1")
    return int(text)


def seed_int(text: str) -> int:
    """An argparse type: a seed every library takes, 0 <= seed <= 2**32 - 1."""
    from vlpet.config_base import MAX_SEED

    if not text.strip().isdigit() or int(text) > MAX_SEED:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed: give an integer from 0 to {MAX_SEED}")
    return int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags; each overrides the study config's value of the same name."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", type=Path, help="study config YAML (default: studies/configs/embedded.yaml)")
    p.add_argument("--address", help="existing Ray cluster: host:port, 'auto' or ray://; default: a local one")
    p.add_argument("--study-dir", type=Path, help="where the study lives (default: runs/studies/<name>)")
    p.add_argument("--storage-path", type=storage_uri, help="where the study lives, as <storage-path>/<name>: s3://, "
                   "gs:// or a shared directory (default: only --study-dir); --study-dir is then its working copy "
                   "(default: ~/.cache/vlpet-studies)")
    p.add_argument("--resume", action="store_true", help="continue the study in --study-dir, with the config in "
                                                           "its study.json")
    p.add_argument("--name", help="study name (study.name)")
    p.add_argument("--variants", help="comma-separated variants (study.variants); designs: module x gate x LW")
    p.add_argument("--trials", type=positive_int, help="trials per variant (study.trials_per_variant)")
    p.add_argument("--max-params", type=positive_int, help="trainable-parameter budget (study.max_params)")
    p.add_argument("--seeds", type=positive_int, help="seeds per frontier point (study.seeds; the paper uses 3)")
    p.add_argument("--seed", type=seed_int, help="base seed: every trial's run.train.seed and the Optuna sampler's seed "
                                            "(study.sampler_seed); another value gives an independent second run")
    p.add_argument("--num-cpus", type=positive_int, help="logical CPUs of the local Ray cluster")
    p.add_argument("--no-report", action="store_true", help="skip the frontier report at the end")
    return p.parse_args(argv)


def load_config(args: argparse.Namespace):
    """The study config with command-line overrides, validated."""
    from studies.plan.study_config import DEFAULT_CONFIG, study_from_dict
    from vlpet.train.config import load_yaml

    return study_from_dict(with_overrides(load_yaml(args.config or DEFAULT_CONFIG), args))


def resumed_config(args: argparse.Namespace, study_dir: Path):
    """A resumed study's config: the one in its study.json. A --config or flag that would change it is an
    error (a study keeps its config; a changed one is another study)."""
    from studies.plan.study_config import study_from_dict
    from studies.storage import study_record
    from vlpet.errors import ConfigError

    recorded = study_from_dict(study_record.recorded_config(study_record.recorded(study_dir)))
    given = load_config(args) if args.config else study_from_dict(with_overrides(recorded.to_dict(), args))
    diff = study_record.first_difference(recorded.to_dict(), given.to_dict())
    if diff:
        key, old, new = diff
        raise ConfigError(f"--resume: {key} is {old!r} in {study_dir / study_record.STUDY_JSON} but {new!r} in the "
                          f"given config/flags; a resumed study keeps its config: drop the change, or start a new "
                          f"study (--name)")
    return recorded


def overrides(args: argparse.Namespace) -> dict:
    """The study settings the flags set (None: not given)."""
    return {"name": args.name, "trials_per_variant": args.trials, "max_params": args.max_params,
            "seeds": args.seeds, "variants": args.variants.split(",") if args.variants is not None else None}


def with_overrides(data: dict, args: argparse.Namespace) -> dict:
    """A study config's plain dicts with the command-line flags applied."""
    study, run = data.get("study") or {}, data.get("run") or {}
    if not (isinstance(study, dict) and isinstance(run, dict)):
        return data  # a section that is no mapping: validation names it
    study = {**study, **{k: v for k, v in overrides(args).items() if v is not None}}
    train = run.get("train") or {}
    if args.seed is not None and isinstance(train, dict):  # a malformed train section is reported by validation
        study["sampler_seed"] = args.seed
        run = {**run, "train": {**train, "seed": args.seed}}
    return {**data, "study": study, "run": run}


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Validate everything, connect to Ray, run the study, write the report."""
    args = parse_args(argv)
    if not args.address:
        loopback_local_cluster()  # before anything imports ray
    given = load_config(args)
    study_dir, home = study_location(args, given.settings.name)
    cfg = resumed_config(args, study_dir) if args.resume else given
    from rich.console import Console

    from analysis.study_layout import RESULTS
    from studies.driver.console import route_driver_logs, study_header, study_summary
    from studies.driver.interrupts import StudyInterrupted
    from studies.driver.study import run_study
    from studies.search.searcher import optuna_storage
    from studies.storage.study_record import check_study_dir
    from vlpet.data.dataset import check_data

    check_study_dir(study_dir.resolve(), args.resume)
    server = not (cfg.settings.optuna_storage or "sqlite").startswith("sqlite")
    if server:
        optuna_storage(cfg, study_dir.resolve())  # a database server: reachable, and nothing written here
    if "mlflow" in cfg.settings.tracking:
        from studies.driver.tracking import check_mlflow, mlflow_uri

        check_mlflow(mlflow_uri(cfg.settings.mlflow_uri))  # reachable before any trial
    if args.address:
        check_address(args.address)
    console = Console(highlight=False, soft_wrap=True)
    data = check_data(cfg.template.data, cfg.template.backbone.feat_dim, args.address)
    study_dir.mkdir(parents=True, exist_ok=True)  # every check passed: the first write
    if not server:
        optuna_storage(cfg, study_dir.resolve())  # the SQLite file, creatable
    for line in study_header(cfg, study_dir, data, home and home.uri):
        console.print(line, markup=False)
    route_driver_logs(study_dir)
    connect(args.address, args.num_cpus, log_to_driver=False)  # the trials' output is in their logs
    try:
        run_study(cfg, study_dir, resume=args.resume, console=console, home=home)
    except StudyInterrupted as stop:
        kept = f"{study_dir / RESULTS}{f' and {home.uri}' if home else ''}"
        print(f"study interrupted ({stop}): every finished epoch is in {kept}; no report written.\n"
              f"resume with: python studies/frontier.py {resume_flags(study_dir, home)}", file=sys.stderr)
        return stop.exit_code
    if not args.no_report:
        from analysis.report import build_report

        report, result = build_report(study_dir, backbone=f"{cfg.family}-base")
        if home:
            home.sync()  # the report too
        for line in study_summary(study_dir, report, result, home and home.uri):
            console.print(line, markup=False)
    return 0


def study_location(args: argparse.Namespace, name: str) -> tuple[Path, StudyHome | None]:
    """The study's directory and, with --storage-path, its home (checked writable; resumed: the study's
    files fetched from it into the working copy)."""
    if not args.storage_path:
        return args.study_dir or Path("runs/studies") / name, None
    from studies.storage.study_home import StudyHome  # imports ray: after loopback_local_cluster()

    home = StudyHome.locate(args.storage_path, name, args.resume, args.study_dir)
    if args.resume:
        home.fetch()
    return home.local, home


def resume_flags(study_dir: Path, home: StudyHome | None) -> str:
    """The flags that resume this study: its home (which holds everything) or its directory."""
    return f"--resume --storage-path {home.uri}" if home else f"--resume --study-dir {study_dir}"


if __name__ == "__main__":
    sys.exit(main())
