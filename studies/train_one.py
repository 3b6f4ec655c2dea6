"""Train one configuration (backbone + PET method + data + optimisation) as a Ray Train run, without
a search. With no --config it trains VL-PET-large on the embedded benchmark.

    vlpet-train [--config studies/configs/embedded_run.yaml] [--address HOST:PORT]    # = python studies/train_one.py

Progress (epoch, step, loss, examples/s, per-task scores) is printed by the workers; adapter-only
checkpoints land under <storage-path>/<name>/. Re-running with the same --name resumes from the
latest checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from studies.driver.ray_cluster import connect, storage_uri
from vlpet.data.dataset import check_data
from vlpet.errors import entry_point
from vlpet.train.config import RunSpec, load_yaml

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "embedded_run.yaml"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line flags."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="run config YAML")
    parser.add_argument("--address", help="existing Ray cluster (host:port or auto); default: start a local one")
    parser.add_argument("--storage-path", type=storage_uri, default="runs/train", help="where checkpoints go (local dir or s3://, gs://)")
    parser.add_argument("--name", help="run name (default: the config file's stem); same name = resume")
    parser.add_argument("--max-failures", type=int, default=2, help="restarts of a failed worker group")
    return parser.parse_args(argv)


@entry_point
def main(argv: list[str] | None = None) -> int:
    """Validate the config, connect to Ray, train, print the final metrics."""
    args = parse_args(argv)
    spec = RunSpec.from_dict(load_yaml(args.config)).with_absolute_paths()
    print(check_data(spec.data, spec.backbone.feat_dim, args.address), flush=True)
    connect(args.address)
    from vlpet.train.ray_trainer import fit_run

    result = fit_run(spec, args.storage_path, args.name or args.config.stem, max_failures=args.max_failures)
    metrics = {k: v for k, v in result.metrics.items() if k.startswith(("score", "params", "epoch", "loss"))}
    print("final:", ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in metrics.items()))
    print(f"checkpoint: {result.checkpoint.path if result.checkpoint else '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
