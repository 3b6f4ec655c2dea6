"""The vlpet-report command: the report of a (finished or running) study, from its directory or its home.

    vlpet-report runs/studies/embedded [--backbone bart-base|t5-base] [--no-png]  # = python studies/report_command.py
    vlpet-report s3://BUCKET/studies/paper-bart-base      # a study's home (--storage-path): fetched, then reported

Reads `<study_dir>/results.parquet` (or results.csv) and writes `<study_dir>/report/` (analysis.report); a study's
home URI is first fetched into a local copy (`--study-dir`), and its report uploaded beside the study. The paper
table is picked by `--backbone`, else the "backbone" key of `<study_dir>/study.json`, else bart-base.
Exit status 2, with a one-line message, when the study directory or its results table is missing or unusable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from analysis.report import build_report, summary_lines
from analysis.study_layout import REPORT, STUDY_JSON
from analysis.table import AnalysisError
from studies.storage.study_home import StudyHome, working_copy
from vlpet.errors import entry_point


@entry_point
def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", help="the study's directory, or its home: s3://, gs:// (vlpet-study --storage-path)")
    parser.add_argument("--study-dir", type=Path, help="for a home URI: where its files are fetched (default: "
                                                       "~/.cache/vlpet-studies/<name>-<hash>-report)")
    parser.add_argument("--backbone", help="paper table: bart-base or t5-base (default: study.json, else bart-base)")
    parser.add_argument("--no-png", action="store_true", help="skip the static PNG and SVG images")
    args = parser.parse_args(argv)
    home = fetched_home(args.study, args.study_dir) if "://" in args.study else None
    report, result = build_report(home.local if home else Path(args.study), args.backbone, png=not args.no_png)
    if home:
        home.sync(REPORT)  # the report only: the study's own files are the running driver's to write
        print(f"report uploaded to {home.uri}/{REPORT}")
    print(f"report: {report}")
    for line in summary_lines(result) + [f"warning: {w}" for w in result.warnings]:
        print(f"  {line}")
    return 0


def fetched_home(uri: str, study_dir: Path | None) -> StudyHome:
    """The study homed at `uri`, its files fetched into a local copy."""
    home = StudyHome(uri, study_dir or working_copy(uri, "report"))
    if not home.holds_study():
        raise AnalysisError(f"{uri} holds no study (no {STUDY_JSON}); give the study's home, <storage-path>/<name>")
    home.fetch()
    return home


if __name__ == "__main__":
    sys.exit(main())
