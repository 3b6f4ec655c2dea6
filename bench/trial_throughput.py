"""Embedded trial throughput, before and after the changes that made trials cheaper, side by side in one run:

    before  every feature file read at every access (no cache), the backbone's dropout 0.1, torch's
            per-tensor AdamW loop: how an embedded trial trained until 2026-12-07
    after   features read once per process (`vlpet.data.features.FeatureCache`), no dropout in the 4-epoch
            embedded configs, fused AdamW (`vlpet.train.loop.ADAMW_FUSED`)

For full fine-tuning and VL-PET-large at their embedded default settings, one thread each (as a study's
trial runs), the two arms alternating: training examples/s of each epoch, the final score, and the
arithmetic: FLOPs per training example (torch.utils.flop_counter, forward + backward) against what one
core sustains on matmuls of the model's shapes.

    python bench/trial_throughput.py [--epochs 4] [--variants full,vlpet-large] [--data runs/embedded-data]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from vlpet.errors import entry_point

ARMS = {"before": {"cache": False, "dropout": 0.1, "fused": False},
        "after": {"cache": True, "dropout": 0.0, "fused": True}}
# (tokens, d_in, d_out) of the mini VL-BART's matmuls at batch 32: projections, FFN in/out, LM head
MATMULS = ((1792, 128, 128), (1792, 128, 256), (1792, 256, 128), (320, 128, 617))


def set_arm(arm: dict[str, Any]) -> None:
    """Switch the process to one arm's code paths (both are the product's, one flag each)."""
    from vlpet.data import features
    from vlpet.train import loop

    features.CACHE.arrays.clear()
    features.CACHE.used, features.CACHE.limit = 0, features.CACHE_BYTES if arm["cache"] else 0
    loop.ADAMW_FUSED = arm["fused"]


def spec_of(variant: str, arm: dict[str, Any], root: Path, epochs: int) -> Any:
    from studies.plan.study_config import load_study

    spec = load_study(None).first_spec(variant)
    return spec.replace(data={"root": str(root)}, backbone={"dropout": arm["dropout"]},
                        train={"epochs": epochs, "eval_every": epochs, "log_every": 10**6})


def train(variant: str, arm: dict[str, Any], root: Path, epochs: int) -> dict[str, Any]:
    """One run: examples/s per epoch, final score, wall time."""
    from vlpet.train.loop import run_training

    set_arm(arm)
    rates: list[float] = []
    start = time.perf_counter()
    final = run_training(spec_of(variant, arm, root, epochs), lambda m, c: rates.append(m["examples_per_s"]))
    return {"rates": rates, "score": final["score"], "wall_s": time.perf_counter() - start}


def flops_per_example(variant: str, arm: dict[str, Any], root: Path, steps: int = 20) -> float:
    """Forward + backward FLOPs per training example, counted over the first `steps` batches."""
    from torch.utils.flop_counter import FlopCounterMode

    from vlpet.data import MultitaskLoader, build_dataset, build_loader, get_task
    from vlpet.train.evaluate import task_loss
    from vlpet.train.loop import build_model

    spec = spec_of(variant, arm, root, 1)
    model = build_model(spec).train()
    loader = MultitaskLoader({n: build_loader(spec.data, build_dataset(spec.data, get_task(n), "train",
                                                                       spec.backbone.feat_dim), model.tokenizer, "train")
                              for n in spec.data.tasks})
    loader.set_epoch(1)
    examples = 0
    with FlopCounterMode(display=False) as counter:
        for batch, _ in zip(loader, range(steps)):
            model.set_task(batch.task)
            task_loss(model(batch.inputs, labels=batch.labels).logits, batch.labels, batch.weights,
                      get_task(batch.task)).backward()
            examples += len(batch.uids)
    return counter.get_total_flops() / examples


def matmul_rate(repeats: int = 30) -> float:
    """GFLOP/s one thread sustains on the model's matmul shapes (the median shape's rate)."""
    rates = []
    for m, k, n in MATMULS:
        a, b = torch.randn(m, k), torch.randn(k, n)
        for _ in range(3):
            a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        rates.append(2 * m * k * n * repeats / (time.perf_counter() - start) / 1e9)
    return sorted(rates)[len(rates) // 2]


@entry_point
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=4, help="epochs per run (the embedded study's)")
    p.add_argument("--variants", default="full,vlpet-large")
    p.add_argument("--data", type=Path, default=Path("runs/embedded-data"), help="the embedded benchmark's root")
    args = p.parse_args()
    from vlpet.data.synthetic import SyntheticConfig, ensure_benchmark

    torch.set_num_threads(1)  # a study trial's one core
    root = ensure_benchmark(args.data, SyntheticConfig())
    peak = matmul_rate()
    print(f"torch {torch.__version__}, 1 thread; matmul rate on the model's shapes: {peak:.1f} GFLOP/s", flush=True)
    print(f"{'variant':<12} {'arm':<7} {'ex/s per epoch':<30} {'mean ex/s':>9} {'score':>7} {'wall s':>7} "
          f"{'MFLOP/ex':>8} {'GFLOP/s':>7} {'of matmul':>9}")
    results = {}
    for variant in args.variants.split(","):
        for name, arm in ARMS.items():
            run = train(variant, arm, root, args.epochs)
            flops = flops_per_example(variant, arm, root)
            mean = sum(run["rates"]) / len(run["rates"])
            results[variant, name] = mean
            print(f"{variant:<12} {name:<7} {' '.join(f'{r:.0f}' for r in run['rates']):<30} {mean:>9.1f} "
                  f"{run['score']:>7.2f} {run['wall_s']:>7.1f} {flops / 1e6:>8.1f} {mean * flops / 1e9:>7.1f} "
                  f"{100 * mean * flops / 1e9 / peak:>8.0f} %", flush=True)
    for variant in args.variants.split(","):
        print(f"{variant}: after / before = {results[variant, 'after'] / results[variant, 'before']:.2f}x examples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
