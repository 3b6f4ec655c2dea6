"""Predict a split of every task of a run config with a saved adapter checkpoint, and write one file per
task in the form its evaluation server takes (labelled splits too; nothing is scored).

    vlpet-predict CHECKPOINT_DIR --config studies/configs/embedded_run.yaml --split test
        # = python studies/predict.py ...; writes predictions/vqa_test_predictions.json, ...

CHECKPOINT_DIR is a checkpoint a run reported (vlpet-train prints the last one), or a PEFT adapter
directory (vlpet-export's, or a LoRA adapter trained elsewhere: adapter_config.json names its base).

The checkpoint directory (adapter.safetensors + pet_config.json, as a run reports it) gives the backbone
and the method; the config's `data` section the tasks and the data root, its `decode` section the
generation settings. File formats: README, "Predictions for the test servers".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vlpet.checkpoint import load_pet_model
from vlpet.data.tasks import TASKS
from vlpet.errors import ConfigError, entry_point
from vlpet.train.config import RunSpec, load_yaml
from vlpet.train.predict import write_predictions

SPLITS = sorted({split for task in TASKS.values() for split in task.splits})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", type=Path, help="adapter checkpoint directory")
    parser.add_argument("--config", type=Path, required=True, help="run config YAML (its data and decode sections)")
    parser.add_argument("--split", default="test", choices=SPLITS, help="split to predict (default: test)")
    parser.add_argument("--tasks", nargs="+", help="predict only these of the config's data.tasks")
    parser.add_argument("--output", type=Path, default=Path("predictions"), help="directory for the files")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                        help="torch device (default: cuda when available)")
    return parser.parse_args(argv)


def check_device(name: str) -> torch.device:
    """The torch device `name`, refused in one line when this machine does not have it."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"--device {name!r} is not a torch device; give cpu, cuda or cuda:<index>") from None
    if device.type == "cuda" and (not torch.cuda.is_available() or (device.index or 0) >= torch.cuda.device_count()):
        have = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device"
        raise ConfigError(f"--device {name}: this machine has {have}; give --device cpu or an index it has")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {name}: only cpu and cuda devices are supported")
    return device


def check_output(output: Path) -> None:
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output} is a file; give a directory for the prediction files")


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Load the checkpoint, predict, print the files written."""
    args = parse_args(argv)
    device = check_device(args.device)
    check_output(args.output)
    spec = RunSpec.from_dict(load_yaml(args.config))
    if args.tasks:
        spec = spec.replace(data={"tasks": args.tasks})
    model = load_pet_model(args.checkpoint)
    for path in write_predictions(model, spec.data, args.split, args.output, spec.decode, device):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
