"""The GPU path on a real accelerator, checked in one command of at most about 8 minutes:

    python bench/gpu_check.py [--out gpu_check.json]    # on a CUDA machine: bf16, bart-base dims
    python bench/gpu_check.py --cpu                     # the same three checks on CPU, smaller, fp32

1. Step cost (bench/step_cost.py) of full fine-tuning, VL-PET-large, VL-PET-small, LoRA and VL-Adapter:
   median step time and peak memory as ratios to full fine-tuning, tokens/s and model FLOPs utilisation
   (MFU: (4 N + 2 N_trainable) FLOPs per token, forward and activation gradients of every weight plus
   weight gradients of the trained ones, over the device's dense bf16 peak).
2. One real trial of the embedded study holding one GPU under Tune (the in-process trial path of
   `train.runner: trial`): its start-up (trial start + worker setup) and epoch times, from the results
   table's clocks (bench/orchestration.py's breakdown).
3. The embedded default's VL-PET-large trained for a few epochs on the GPU and on the CPU from the same
   seed: the per-task scores side by side. bf16 and other kernels change the sums, so the scores differ by
   training noise, not by more; on CPU both runs are fp32 on the CPU and must be identical.

Prints each part and writes the figures as JSON (`--out`).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benches (bench/ is not a package)
from orchestration import breakdown
from step_cost import measure_all

from studies.driver.ray_cluster import loopback_local_cluster
from vlpet.errors import entry_point

METHODS = ("full", "vlpet-large", "vlpet-small", "lora", "adapter")
# The --cpu variant (how the check is tested) trains parts 2 and 3 on the first examples of each task only
CPU_DATA = {"max_train_examples": 96, "max_eval_examples": 24}
# Dense bf16 peak FLOP/s (no sparsity) by device name, for MFU.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12}


def device_peak(device: str) -> float | None:
    """The dense bf16 peak of this CUDA device, when its name is known."""
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def step_cost(device: str, arch: str, batch: int, steps: int) -> dict[str, dict[str, float]]:
    """Part 1: per method, its step figures with tokens/s, MFU and the ratios to full fine-tuning."""
    rows = measure_all(arch, batch, steps, device, METHODS)
    full, peak = rows["full"], device_peak(device)
    for r in rows.values():
        flops = (4 * r["total"] + 2 * r["trainable"]) * r["tokens"]
        r.update(tokens_per_s=r["tokens"] / r["step_s"], step_x_full=r["step_s"] / full["step_s"],
                 peak_x_full=r["peak_bytes"] / full["peak_bytes"],
                 mfu=flops / r["step_s"] / peak if peak else float("nan"))
    return rows


def one_gpu_trial(gpus: float, epochs: int, data_caps: dict[str, int]) -> dict[str, float]:
    """Part 2: a one-trial study of the embedded default's VL-PET-large holding `gpus` GPUs, in its Tune trial
    process (its data capped by `data_caps`); its start-up and per-epoch seconds."""
    import ray

    from studies.driver.ray_cluster import connect
    from studies.driver.study import run_study
    from studies.plan.study_config import load_study, study_from_dict

    data = load_study(None).to_dict()
    data["study"].update(name="gpu-check", variants=["vlpet-large"], trials_per_variant=1, paper_reference=False, seeds=1,
                         early_stopping="none", max_concurrent_trials=1)
    data["run"]["train"].update(epochs=epochs, gpus_per_worker=gpus, runner="trial")
    data["run"]["data"].update(data_caps)
    cfg = study_from_dict(data)
    connect(num_cpus=2, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory(prefix="vlpet-gpu-check-") as tmp:
            table = run_study(cfg, Path(tmp) / "study")
    finally:
        ray.shutdown()
    trial = breakdown(table).iloc[0]
    epochs_done = int(trial["epochs"])
    return {"startup_s": float(trial["trial start"] + trial["worker setup"]),
            "epoch_s": float(trial["train + eval"]) / epochs_done, "epochs": epochs_done,
            "score": float(table.sort_values("epoch")["score"].iloc[-1])}


def scores_on(device: str, epochs: int, data_caps: dict[str, int]) -> dict[str, float]:
    """Part 3, one side: the embedded default's VL-PET-large trained on `device` for `epochs` (its data capped
    by `data_caps`); its scores."""
    from analysis.results_contract import TASK_PREFIX
    from studies.plan.study_config import load_study
    from vlpet.train.loop import WorkerContext, run_training

    spec = load_study(None).first_spec("vlpet-large").replace(train={"epochs": epochs}, data=data_caps)
    metrics = run_training(spec, lambda m, c: None, None, WorkerContext(device=torch.device(device)))
    return {k.removeprefix(TASK_PREFIX): v for k, v in metrics.items() if k.startswith(TASK_PREFIX) or k == "score"}


def print_step_cost(rows: dict[str, dict[str, float]], arch: str, device: str) -> None:
    print(f"\n1. step cost, {arch} on {device} ({'bf16' if device == 'cuda' else 'fp32'})")
    print(f"{'method':<14}{'trainable':>13}{'step ms':>9}{'x full':>8}{'peak MB':>9}{'x full':>8}{'tokens/s':>10}"
          f"{'MFU':>7}")
    for name, r in rows.items():  # no allocator statistics on CPU and no known peak: n/a
        peak = f"{r['peak_bytes'] / 2**20:>9.0f}{r['peak_x_full']:>8.2f}" if device == "cuda" else f"{'n/a':>9}{'n/a':>8}"
        mfu = f"{r['mfu']:>7.1%}" if r["mfu"] == r["mfu"] else f"{'n/a':>7}"
        print(f"{name:<14}{r['trainable']:>13,}{1000 * r['step_s']:>9.1f}{r['step_x_full']:>8.2f}{peak}"
              f"{r['tokens_per_s']:>10,.0f}{mfu}")


@entry_point
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true", help="run the checks on CPU (shorter, fp32): how they are tested")
    p.add_argument("--out", type=Path, default=Path("gpu_check.json"), help="where the figures go (JSON)")
    args = p.parse_args(argv)
    loopback_local_cluster()  # before ray is imported: the local cluster on 127.0.0.1 only
    if not args.cpu and not torch.cuda.is_available():
        print("error: no CUDA device visible; run on a GPU machine, or with --cpu", file=sys.stderr)
        return 2
    device = "cpu" if args.cpu else "cuda"
    start = time.perf_counter()
    name = "CPU" if args.cpu else torch.cuda.get_device_name()
    print(f"gpu check on {name}, torch {torch.__version__}")
    arch, batch, steps = ("tiny-bart", 4, 3) if args.cpu else ("bart-base", 32, 10)
    figures: dict[str, Any] = {"device": name, "torch": torch.__version__, "arch": arch, "batch": batch}
    figures["step_cost"] = step_cost(device, arch, batch, steps)
    print_step_cost(figures["step_cost"], arch, device)

    epochs = 1 if args.cpu else 2
    caps = CPU_DATA if args.cpu else {}
    figures["trial"] = one_gpu_trial(0 if args.cpu else 1, epochs, caps)
    t = figures["trial"]
    print(f"\n2. one trial holding {0 if args.cpu else 1} GPU under Tune: start-up {t['startup_s']:.1f} s, "
          f"{t['epoch_s']:.1f} s per epoch, score {t['score']:.2f} after {t['epochs']} epoch(s)")

    epochs = 1 if args.cpu else 3
    here = scores_on(device, epochs, caps)
    cpu = here if device == "cpu" else scores_on("cpu", epochs, caps)  # on --cpu there is no second device to compare
    figures["scores"] = {"device": here, "cpu": cpu, "max_abs_diff": max(abs(here[k] - cpu[k]) for k in cpu)}
    print(f"\n3. embedded default VL-PET-large, {epochs} epoch(s), same seed: {device} vs cpu")
    for key in cpu:
        print(f"  {key:<10}{here[key]:>9.2f}{cpu[key]:>9.2f}{here[key] - cpu[key]:>+9.2f}")
    figures["wall_s"] = time.perf_counter() - start
    args.out.write_text(json.dumps(figures, indent=2))
    print(f"\n{figures['wall_s']:.0f} s; figures in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
