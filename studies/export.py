"""Export a study's trials for use elsewhere: LoRA and DoRA trials in Hugging Face PEFT's adapter format
(loads with `PeftModel.from_pretrained` onto the backbone), every other method in the project's own format.

    vlpet-export runs/studies/embedded --front              # = python studies/export.py ...
    vlpet-export runs/studies/embedded --trial 33a0c_00013 --output exported/

Each trial goes to <output>/<trial id>-<variant>/ (default output: <study dir>/export). A PEFT directory holds
adapter_config.json + adapter_model.safetensors (the text side, PEFT's key names) and, beside them, the VL
wrapper's trained parts (vlpet_extras.safetensors: the visual embedding) and its backbone config
(vlpet_backbone.json); `vlpet.checkpoint.load_pet_model(directory)` (and vlpet-predict) reads both formats.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path

import pandas as pd

from analysis.pareto import pareto_front
from analysis.results_contract import final_rows
from analysis.study_layout import EXPORT
from analysis.table import load_results
from vlpet.checkpoint import load_pet_model
from vlpet.errors import ConfigError, entry_point
from vlpet.peft_format import PEFT_METHODS, export_peft


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study_dir", type=Path, help="a study directory (holds results.parquet and ray/)")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--trial", nargs="+", metavar="ID", help="these trials (the table's trial_id)")
    which.add_argument("--best", action="store_true", help="the finished trial with the highest score")
    which.add_argument("--front", action="store_true", help="the finished trials on the front (score, params)")
    parser.add_argument("--output", type=Path, help="where to write (default: <study_dir>/export)")
    return parser.parse_args(argv)


def chosen_trials(table: pd.DataFrame, args: argparse.Namespace) -> pd.DataFrame:
    """The final rows of the trials asked for: named ones, the best, or the front of the finished ones."""
    final = final_rows(table)
    if args.trial:
        unknown = sorted(set(args.trial) - set(final["trial_id"]))
        if unknown:
            raise ConfigError(f"--trial {' '.join(unknown)}: not in the study's results; its trials: "
                              f"{', '.join(final['trial_id'].head(8))}{' ...' if len(final) > 8 else ''}")
        return final[final["trial_id"].isin(args.trial)]
    finished = final[final["full_fidelity"]]
    if finished.empty:
        raise ConfigError(f"{args.study_dir}: no trial has finished (completed at full fidelity) yet")
    if args.best:
        return finished.nlargest(1, "score")
    return finished[pareto_front(finished["params"], finished["score"])].sort_values("params")


def checkpoint_dir(row: pd.Series, study_dir: Path) -> Path:
    """The trial's last checkpoint: the table's path, else the same path under this study directory's ray/
    (a study copied or fetched from its home elsewhere)."""
    recorded = str(row["checkpoint_path"] or "")
    candidates = [Path(recorded)] if recorded and "://" not in recorded else []
    if "/ray/" in recorded:
        candidates.append(study_dir / "ray" / recorded.split("/ray/", 1)[1])
    for path in candidates:
        if path.is_dir():
            return path
    raise ConfigError(f"trial {row['trial_id']}: no checkpoint at {recorded or '(none recorded)'}; copy the "
                      f"study's ray/ directory from its home into {study_dir / 'ray'}")


def export_trial(row: pd.Series, study_dir: Path, output: Path) -> str:
    """Write one trial into output/<trial id>-<variant>; returns the line to print."""
    source, target = checkpoint_dir(row, study_dir), output / f"{row['trial_id']}-{row['variant']}"
    if target.exists():
        shutil.rmtree(target)
    model = load_pet_model(source)
    if model.method.method in PEFT_METHODS:
        export_peft(model, target)
        return f"{row['variant']} {row['trial_id']} (score {row['score']:.2f}): PEFT adapter in {target}"
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("training_state.pt"))
    return (f"{row['variant']} {row['trial_id']} (score {row['score']:.2f}): PEFT has no {model.method.method}; "
            f"the project's format in {target} (vlpet.checkpoint.load_pet_model)")


@entry_point
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per model built: two per trial
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")  # PEFT's calls into it
    trials = chosen_trials(load_results(args.study_dir), args)
    output = args.output or args.study_dir / EXPORT
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file; give a directory")
    for _, row in trials.iterrows():
        print(export_trial(row, args.study_dir, output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
