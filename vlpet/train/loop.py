"""The training loop of one run, framework-neutral: Ray Train calls it on every worker
(`vlpet.train.ray_trainer`); tests and benchmarks call it directly.

Per step: one single-task batch, AdamW (eps 1e-6, wd 0.01), linear warm-up then decay, grad-norm
clip, bf16 autocast on GPU. Per epoch: validation on rank 0 (every task's metric and their average),
then a report with an adapter-only checkpoint plus the optimizer/scheduler/RNG state, so a restarted
run continues at the next epoch exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import copy
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from vlpet.checkpoint import load_adapter, save_adapter
from vlpet.data import MultitaskLoader, build_dataset, build_loader, get_task
from vlpet.methods import apply_method
from vlpet.models import BackboneConfig, VLModel, build_vl_model
from vlpet.params import param_report
from vlpet.train.config import RunSpec, TrainConfig
from vlpet.train.epoch_report import TASK_PREFIX
from vlpet.train.evaluate import evaluate, task_loss

STATE_FILE = "training_state.pt"
# One fused kernel for all trainable tensors (CPU and CUDA): 1.18x the embedded step rate of full fine-tuning,
# whose per-tensor AdamW loop was 11 % of its step; False: torch's loop (bench/trial_throughput.py's baseline)
ADAMW_FUSED = True


class NonFiniteLossError(FloatingPointError):
    """The loss became NaN or infinite: the run stops with this reason instead of training on."""


class ReplicasOutOfStepError(RuntimeError):
    """The data-parallel workers' trainable weights differ after an epoch: their gradients were not averaged."""


class Reporter(Protocol):
    """Receives each epoch's metrics and the directory of its checkpoint (rank 0 only has one)."""

    def __call__(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None: ...


@dataclass
class WorkerContext:
    """Where this worker sits in a data-parallel group, and how to wrap its model (DDP)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    prepare_model: Callable[[nn.Module], nn.Module] = lambda m: m
    backbones: BackboneCache | None = None  # set where one process trains run after run (a reused trial process)
    # in every epoch's metrics and saved with them: where the epoch ran (node, pid, clocks), so that a
    # finished run's last epoch reported again after a restart still says which process trained it
    tags: dict[str, Any] = field(default_factory=dict)


class BackboneCache:
    """The last backbone this process loaded, for a process that trains run after run.

    Every run gets its own deep copy (methods inject into the model they are given) and leaves torch's
    RNG where loading would have left it: loading draws from it (weights the checkpoint lacks are
    initialised at random), so the key holds the RNG state before loading, and a run served from the
    cache draws exactly what it would draw in a fresh process. One entry: a study's trials share
    their backbone and seed, and a backbone of paper size costs its memory only once.
    """

    def __init__(self) -> None:
        self._key: tuple[BackboneConfig, bytes] | None = None
        self._model: VLModel | None = None
        self._rng_after: torch.Tensor | None = None

    def build(self, cfg: BackboneConfig) -> VLModel:
        key = (cfg, torch.get_rng_state().numpy().tobytes())
        if key == self._key:
            torch.set_rng_state(self._rng_after)
        else:
            self._model = build_vl_model(cfg)
            self._key, self._rng_after = key, torch.get_rng_state()
        tokenizer = self._model.tokenizer  # read-only: shared, not copied
        return copy.deepcopy(self._model, memo={id(tokenizer): tokenizer})


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (the paper seeds the same three)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(spec: RunSpec, backbones: BackboneCache | None = None) -> VLModel:
    """Backbone + method of a run, before any weights are loaded from a checkpoint."""
    backbone = backbones.build(spec.backbone) if backbones else build_vl_model(spec.backbone)
    return apply_method(backbone, spec.method)


def linear_warmup_decay(optimizer: torch.optim.Optimizer, warmup_steps: int, total_steps: int) -> LambdaLR:
    """Linear warm-up from 0 over `warmup_steps`, then linear decay to 0 at `total_steps`: the schedule of
    the paper's code (transformers' get_linear_schedule_with_warmup, the same multipliers). Built on torch's
    LambdaLR: transformers' optimization module imports peft when it is installed, about 0.7 s more
    start-up for every Ray Train worker here (bench/orchestration.py)."""
    def multiplier(step: int) -> float:
        if step < warmup_steps:
            return step / max(1, warmup_steps)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))

    return LambdaLR(optimizer, multiplier)


def build_optimizer(model: nn.Module, train: TrainConfig, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW over the trainable parameters and the linear warm-up/decay schedule of the paper's code.

    Weight decay skips names containing "bias" or "LayerNorm.weight", exactly as the code, so BART's
    `*layer_norm.weight` still get decay.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if "bias" in name or "LayerNorm.weight" in name else decay).append(p)
    t = train
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": t.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=t.lr, eps=t.adam_eps,
                                  fused=ADAMW_FUSED)
    scheduler = linear_warmup_decay(optimizer, int(t.warmup_ratio * total_steps), total_steps)
    return optimizer, scheduler


def optimizer_step(model: nn.Module, loss: torch.Tensor, optimizer: torch.optim.Optimizer, scheduler: Any,
                   clip_grad_norm: float) -> None:
    """Back-propagate `loss`, clip the trainable parameters' gradient norm (0: no clipping), step the
    optimiser and the schedule, and clear the gradients."""
    loss.backward()
    if clip_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], clip_grad_norm)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def _autocast(spec: RunSpec, device: torch.device) -> contextlib.AbstractContextManager:
    use_bf16 = spec.train.precision == "bf16" or (spec.train.precision == "auto" and device.type == "cuda")
    return torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()


def _distributed() -> bool:
    """Whether this process is one worker of a data-parallel run (a process group is up)."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _all_reduce_sum(value: float, device: torch.device) -> float:
    if not _distributed():
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(t)
    return float(t.item())


def check_replicas_in_step(model: nn.Module, device: torch.device, epoch: int) -> None:
    """Data-parallel workers see different shards, so their weights stay equal only when DDP averages the
    gradients of every step: compare a checksum of each worker's trainable weights across workers."""
    if not _distributed():
        return
    with torch.no_grad():
        checksum = sum(p.double().sum() for p in model.parameters() if p.requires_grad)
    extremes = torch.tensor([checksum, -checksum], dtype=torch.float64, device=device)
    torch.distributed.all_reduce(extremes, op=torch.distributed.ReduceOp.MAX)
    spread = float(extremes[0] + extremes[1])  # max - min
    if spread > 1e-6 * max(1.0, abs(float(checksum))):
        raise ReplicasOutOfStepError(f"after epoch {epoch} the {torch.distributed.get_world_size()} workers' trainable "
                                     f"weights differ (checksums {spread:.3g} apart): the model was not wrapped for "
                                     "data-parallel training (ray.train.torch.prepare_model)")


def save_training_state(directory: Path, model: VLModel, optimizer: torch.optim.Optimizer, scheduler: Any,
                        epoch: int, metrics: dict[str, Any]) -> None:
    """Adapter-only weights + optimizer, scheduler and RNG state of a finished epoch."""
    save_adapter(model, directory, metadata={"epoch": epoch, "metrics": metrics})
    torch.save({"epoch": epoch, "metrics": metrics, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "numpy_rng": torch.from_numpy(np.random.get_state()[1].astype(np.int64)),
                "python_rng": list(random.getstate()[1])}, directory / STATE_FILE)


def load_training_state(directory: Path, model: VLModel) -> dict[str, Any]:
    """Load weights into `model` and return the saved state (read without unpickling code)."""
    load_adapter(model, directory)
    return torch.load(directory / STATE_FILE, weights_only=True)


def _restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_rng"])
    np_state = np.random.get_state()
    np.random.set_state((np_state[0], state["numpy_rng"].numpy().astype(np.uint32), *np_state[2:]))
    py_state = random.getstate()
    random.setstate((py_state[0], tuple(state["python_rng"]), py_state[2]))


def _log(rank: int, message: str) -> None:
    if rank == 0:
        print(message, file=sys.stdout, flush=True)


def run_training(spec: RunSpec, report: Reporter, resume_dir: Path | None = None,
                 ctx: WorkerContext | None = None) -> dict[str, Any]:
    """Train `spec` from scratch or from `resume_dir`, reporting every epoch; returns the last metrics."""
    ctx = ctx or WorkerContext()
    setup_start = time.perf_counter()
    seed_everything(spec.train.seed)
    model = build_model(spec, ctx.backbones)
    tokenizer = model.tokenizer
    if tokenizer is None:
        raise ValueError("backbone.tokenizer is required for training (a tokenizer directory or a pretrained model)")
    state = load_training_state(resume_dir, model) if resume_dir else None
    report_params = param_report(model)
    model.to(ctx.device)
    wrapped = ctx.prepare_model(model)

    feat_dim = spec.backbone.feat_dim
    train_loader = MultitaskLoader(
        {name: build_loader(spec.data, build_dataset(spec.data, get_task(name), "train", feat_dim, spec.train.seed),
                            tokenizer, "train", ctx.rank, ctx.world_size, spec.train.seed)
         for name in spec.data.tasks}, seed=spec.train.seed)
    val_loaders = {name: build_loader(spec.data, build_dataset(spec.data, get_task(name), "val", feat_dim), tokenizer, "val")
                   for name in spec.data.tasks} if ctx.rank == 0 else {}
    total_steps = len(train_loader) * spec.train.epochs
    optimizer, scheduler = build_optimizer(wrapped, spec.train, total_steps)
    start_epoch = 1
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _restore_rng(state)
        start_epoch = state["epoch"] + 1
        _log(ctx.rank, f"resumed from {resume_dir} at epoch {start_epoch}")
    _log(ctx.rank, f"training {spec.method.method} on {spec.backbone.name}: {report_params.trainable:,} trainable "
                   f"({report_params.percent:.2f} %), {len(train_loader)} steps/epoch x {spec.train.epochs} epochs, "
                   f"world size {ctx.world_size}")

    def checkpoint_and_report(epoch: int, metrics: dict[str, Any]) -> None:
        with tempfile.TemporaryDirectory(prefix="vlpet-ckpt-") as tmp:
            checkpoint = None
            if ctx.rank == 0:
                checkpoint = Path(tmp)
                save_training_state(checkpoint, model, optimizer, scheduler, epoch, metrics)
            report(metrics, checkpoint)

    metrics: dict[str, Any] = dict(state["metrics"]) if state is not None else {}
    if start_epoch > spec.train.epochs:  # a finished run restarted (its last report may not have
        checkpoint_and_report(state["epoch"], metrics)  # reached the caller): report it again
        return metrics
    setup_time = time.perf_counter() - setup_start  # model, data and optimizer of this (re)start
    run_start = time.perf_counter() - metrics.get("run_time_s", 0.0)  # cumulative over restarts
    for epoch in range(start_epoch, spec.train.epochs + 1):
        train_stats = _train_epoch(wrapped, train_loader, optimizer, scheduler, spec, ctx, epoch)
        check_replicas_in_step(model, ctx.device, epoch)
        # `score` is in every report (Tune's searchers require it): NaN in epochs without a validation
        metrics = {"epoch": epoch, "max_epochs": spec.train.epochs, "fidelity": epoch / spec.train.epochs,
                   "score": float("nan"), "setup_time_s": setup_time, **train_stats, "params": report_params.trainable,
                   "total_params": report_params.total, "params_pct": report_params.percent,
                   "world_size": int(_all_reduce_sum(1.0, ctx.device)), **ctx.tags}
        if ctx.rank == 0 and (epoch % spec.train.eval_every == 0 or epoch == spec.train.epochs):
            eval_start = time.perf_counter()
            scores = evaluate(model, val_loaders, tokenizer, ctx.device, spec.decode)
            metrics.update({f"{TASK_PREFIX}{k}": v for k, v in scores.items()}, score=spec.data.average(scores),
                           eval_time_s=time.perf_counter() - eval_start)
            _log(ctx.rank, f"[epoch {epoch}] " + "  ".join(f"{k} {v:.2f}" for k, v in scores.items())
                 + f"  score {metrics['score']:.2f}")
        metrics["run_time_s"] = time.perf_counter() - run_start
        checkpoint_and_report(epoch, metrics)
    return metrics


def _train_epoch(model: nn.Module, loader: MultitaskLoader, optimizer: torch.optim.Optimizer, scheduler: Any,
                 spec: RunSpec, ctx: WorkerContext, epoch: int) -> dict[str, float]:
    """One pass over every batch of every task; returns loss and throughput figures."""
    model.train()
    loader.set_epoch(epoch)
    start, examples, loss_sum, steps = time.perf_counter(), 0, 0.0, 0
    for step, batch in enumerate(loader, 1):
        batch = batch.to(ctx.device)
        getattr(model, "module", model).set_task(batch.task)  # DDP wraps the VLModel in .module
        with _autocast(spec, ctx.device):
            logits = model(batch.inputs, labels=batch.labels).logits
        loss = task_loss(logits, batch.labels, batch.weights, get_task(batch.task))
        value = loss.item()
        if not np.isfinite(value):
            raise NonFiniteLossError(f"loss became {value} at epoch {epoch}, step {step} (task {batch.task}); "
                                     f"lower train.lr (now {spec.train.lr}) or check the data")
        optimizer_step(model, loss, optimizer, scheduler, spec.train.clip_grad_norm)
        examples += len(batch.uids)
        loss_sum += value
        steps += 1
        if step % spec.train.log_every == 0:
            rate = examples / (time.perf_counter() - start)
            _log(ctx.rank, f"[epoch {epoch}/{spec.train.epochs}] step {step}/{len(loader)} loss {loss_sum / steps:.4f} "
                           f"lr {scheduler.get_last_lr()[0]:.2e} {rate:.1f} ex/s")
    elapsed = time.perf_counter() - start
    total_examples = _all_reduce_sum(examples, ctx.device)
    return {"loss": loss_sum / max(steps, 1), "steps": steps, "train_time_s": elapsed,
            "examples_per_s": total_examples / elapsed if elapsed > 0 else 0.0}


def copy_checkpoint(source: Path, target: Path) -> Path:
    """Copy a reported checkpoint directory (the temporary one is removed after the report)."""
    shutil.copytree(source, target, dirs_exist_ok=True)
    return target
