"""One run = one Ray Train `TorchTrainer` (Train V2): the same code on one CPU here and on many GPUs
across nodes. Workers run `vlpet.train.loop.run_training`; DDP comes from `prepare_model`, data is
sharded by a DistributedSampler per task, and every epoch's report carries an adapter-only
checkpoint. A run re-created with the same name and storage path resumes from its latest checkpoint
(Train V2 restores the run's checkpoint state from storage), and `FailureConfig` restarts a failed
worker group from it.

`train_and_report` is the part shared with study trials that train in their own Tune trial process
(`studies.driver.trial`): the same loop, reports and checkpoints, with Tune's report instead of Train's.
This module imports neither transformers nor the model code at import time: a trial that starts a
worker group only builds the trainer, and only the workers pay for the heavy imports.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray
import ray.train
from ray.train import Checkpoint, FailureConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from vlpet.errors import ConfigError
from vlpet.output import output_to

if TYPE_CHECKING:
    from vlpet.train.config import RunSpec, TrainConfig
    from vlpet.train.loop import WorkerContext


def train_worker(config: dict[str, Any]) -> None:
    """Ray Train per-worker entry point: find rank and device, train the config's spec, report."""
    worker_started_at = time.time()
    import ray.train.torch

    from vlpet.train.loop import WorkerContext

    context = ray.train.get_context()
    world, rank = context.get_world_size(), context.get_world_rank()
    ctx = WorkerContext(rank=rank, world_size=world, device=ray.train.torch.get_device(),
                        prepare_model=ray.train.torch.prepare_model if world > 1 else (lambda m: m))
    log = config.get("log_path")
    with output_to(f"{log[:-len('.log')]}.rank{rank}.log" if log and rank else log):
        train_and_report(config["spec"], ctx, ray.train.report, Checkpoint,
                         ray.train.get_checkpoint(),
                         {"submitted_at": config.get("submitted_at"), "worker_started_at": worker_started_at})


def train_and_report(spec: RunSpec, ctx: WorkerContext, report_fn: Callable[..., None], checkpoint_cls: type,
                     checkpoint: Any, clocks: dict[str, float | None]) -> None:
    """Train `spec` (from `checkpoint`, if any) and hand every epoch to `report_fn(metrics, checkpoint=...)`:
    Train's report in a worker group, Tune's in a trial process, each with its own checkpoint class, which
    persists the epoch's checkpoint to storage. Every report says where it ran (node and process) and
    carries `clocks`, the wall clocks of the orchestration-overhead breakdown (bench/orchestration.py)."""
    from vlpet.train.loop import run_training

    # Train's per-report and per-checkpoint INFO lines ("Checkpoint successfully created at ...") drown the progress
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    ctx.tags = {"node_id": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), **clocks}

    def report(metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        saved = checkpoint_cls.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        report_fn(metrics, checkpoint=saved)

    if checkpoint is None:
        run_training(spec, report, None, ctx)
        return
    with checkpoint.as_directory() as resume_dir:
        run_training(spec, report, Path(resume_dir), ctx)


def check_resources(train: TrainConfig) -> None:
    """Fail before any worker starts when the run asks for more GPUs or CPUs than the cluster has."""
    available = ray.cluster_resources()
    gpus = train.gpus_per_worker * train.num_workers
    if gpus > available.get("GPU", 0):
        raise ConfigError(f"train.gpus_per_worker={train.gpus_per_worker} x num_workers={train.num_workers} needs "
                          f"{gpus:g} GPUs but the Ray cluster has {available.get('GPU', 0):g}; set "
                          "train.gpus_per_worker: 0 to train on CPU, or connect to a GPU cluster (--address)")
    cpus = train.cpus_per_worker * train.num_workers
    if cpus > available.get("CPU", 0):
        raise ConfigError(f"train.cpus_per_worker={train.cpus_per_worker} x num_workers={train.num_workers} needs "
                          f"{cpus:g} CPUs but the Ray cluster has {available.get('CPU', 0):g}; lower them")


def scaling_config(train: TrainConfig) -> ScalingConfig:
    """Workers and their resources from a run's `train` section: GPUs only when it asks for them."""
    use_gpu = train.gpus_per_worker > 0
    resources = {"CPU": train.cpus_per_worker, **({"GPU": train.gpus_per_worker} if use_gpu else {})}
    return ScalingConfig(num_workers=train.num_workers, use_gpu=use_gpu, resources_per_worker=resources)


def make_trainer(spec: RunSpec, storage_path: str | Path, name: str, max_failures: int = 0,
                 callbacks: list[Any] | None = None, log_path: str | Path | None = None) -> TorchTrainer:
    """A TorchTrainer for a run (pickled to its workers as it is), persisting checkpoints under
    `storage_path/name` (the 2 latest kept). With `log_path`, rank 0 writes its output there, rank k to
    `<log_path stem>.rank<k>.log`."""
    run_config = ray.train.RunConfig(
        name=name, storage_path=str(storage_path), failure_config=FailureConfig(max_failures=max_failures),
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2), callbacks=callbacks or [])
    return TorchTrainer(train_worker, train_loop_config={"spec": spec, "submitted_at": time.time(),
                                                         "log_path": str(log_path) if log_path else None},
                        scaling_config=scaling_config(spec.train), run_config=run_config)


def fit_run(spec: RunSpec, storage_path: str | Path, name: str, max_failures: int = 0) -> ray.train.Result:
    """Check resources, then train `spec` to completion (resuming `name` if it has checkpoints)."""
    check_resources(spec.train)
    return make_trainer(spec, storage_path, name, max_failures).fit()
