"""The learnability trainings of tests/test_learnable.py, run two at a time in processes of one thread each
(1.9x the throughput of one process on both cores, bench/RESULTS.md), each started once per session and
awaited by the tests that read it."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from studies.plan.study_config import load_study
from vlpet.checkpoint import load_pet_model
from vlpet.data import build_dataset, build_loader, get_task
from vlpet.train.evaluate import predict
from vlpet.train.loop import run_training

CONFIGS = Path(__file__).resolve().parents[1] / "studies" / "configs"

# (config, variant, benchmark) of every training, the longest first so that the two processes end together
RUNS = [("embedded_video.yaml", "vlpet-large", "video"), ("embedded_video.yaml", "full", "video"),
        ("embedded.yaml", "full", "image"), ("embedded.yaml", "vlpet-large", "image"),
        ("embedded.yaml", "adapter", "image"), ("embedded.yaml", "lora", "image"),
        ("embedded_t5.yaml", "vlpet-large", "image"), ("embedded_t5.yaml", "full", "image")]


def train(config: str, variant: str, root: str, seed: int | None = None) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Train a variant at its embedded default setting (the first value of every choice) for the study's
    epochs (with the config's seed, or `seed`), evaluating once at the end; returns the final metrics and,
    per captioning task, the caption predicted for every validation image or video."""
    spec = load_study(CONFIGS / config).first_spec(variant)
    train = {"eval_every": spec.train.epochs, "log_every": 10**6, **({"seed": seed} if seed is not None else {})}
    spec = spec.replace(data={"root": root}, train=train)
    captions: dict[str, list[str]] = {}

    def report(metrics: dict, checkpoint: Path | None) -> None:
        if metrics["epoch"] == spec.train.epochs:
            for name in spec.data.tasks:
                if get_task(name).metric == "cider":
                    captions[name] = predict_captions(checkpoint, spec, name)

    return run_training(spec, report), captions


def predict_captions(checkpoint: Path, spec: Any, name: str) -> list[str]:
    """The captions that the checkpointed model writes for task `name`'s validation split."""
    model = load_pet_model(checkpoint).eval()
    task = get_task(name)
    dataset = build_dataset(spec.data, task, "val", spec.backbone.feat_dim)
    loader = build_loader(spec.data, dataset, model.tokenizer, "val")
    model.set_task(name)
    return [c for batch in loader for c in predict(model, batch, task, model.tokenizer, spec.decode)]


@contextmanager
def trainings(roots: dict[str, Path], seed: int | None = None) -> Iterator[dict[tuple[str, str], Future]]:
    """Start every training of RUNS on `roots` ({"image": ..., "video": ...}); (config, variant) -> its future."""
    pool = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"),
                               initializer=torch.set_num_threads, initargs=(1,))
    try:
        yield {(config, variant): pool.submit(train, config, variant, str(roots[data]), seed)
                for config, variant, data in RUNS}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
