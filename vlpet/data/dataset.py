"""Datasets, collation and the paper's multi-task batching.

One DataLoader per task, each with its own (distributed) sampler and batch size; every epoch the
multi-task loader shuffles a list holding each task name once per batch of that task and draws the
next batch of that task at each step: every batch of every task is used exactly once per epoch, in
a random interleaving, one task per optimizer step.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, SequentialSampler
from transformers import PreTrainedTokenizerBase

from vlpet.config_base import Config, bounded
from vlpet.data.features import H5FeatureStore, NpzFrameStore
from vlpet.data.synthetic import SyntheticConfig, check_generator_owns, ensure_benchmark
from vlpet.data.synthetic_video import SyntheticVideoConfig, ensure_video_benchmark
from vlpet.data.tasks import TASKS, Example, Split, TaskSpec, get_task, load_examples
from vlpet.errors import ConfigError, unknown
from vlpet.models import VLInputs

# Feature store and synthetic benchmark of each TaskSpec.feature_format (image grids / video frames).
FEATURE_STORES = {"h5": H5FeatureStore, "npz": NpzFrameStore}
SYNTHETIC = {"h5": lambda root, dim: ensure_benchmark(root, SyntheticConfig(feat_dim=dim)),
             "npz": lambda root, dim: ensure_video_benchmark(root, SyntheticVideoConfig(feat_dim=dim))}


@dataclass(frozen=True)
class DataConfig(Config):
    """Which tasks, where their data is, and how they are batched.

    Attributes:
        root: the datasets root (VL-Adapter layout, see README).
        tasks: task names trained together.
        batch_size: base batch size; each task scales it by its share (VQA 1, GQA 100/60, NLVR2
            20/60, COCO 50/60, video tasks 1), as the paper's code.
        eval_batch_size: batch size for validation (defaults to batch_size).
        max_train_examples / max_eval_examples: per-task caps (first N), for quick runs.
        task_prompts: add each task's prompt to its input (`--use_tasks_prompts`; image tasks prepend
            it, video tasks append it).
        num_workers: DataLoader worker processes.
        synthetic: `root` holds the embedded synthetic benchmark (image or video tasks, not both in one
            root); it is generated there (deterministically) when missing, by whichever process needs it first.
        score_scale: factors by which tasks' metrics enter the average `score` (default 1 each: the paper's
            plain mean). The embedded configs put CIDEr at 0.1: its near-template references take CIDEr to
            0-1000, which would drown the accuracies. Per-task scores are always reported unscaled.
    """

    section: ClassVar[str] = "data"

    root: str = "datasets"
    tasks: tuple[str, ...] = ("vqa", "gqa", "nlvr", "caption")
    batch_size: int = bounded(500, ge=1)
    eval_batch_size: int | None = bounded(None, ge=1)
    max_train_examples: int | None = bounded(None, ge=1)
    max_eval_examples: int | None = bounded(None, ge=1)
    task_prompts: bool = True
    num_workers: int = bounded(0, ge=0)
    synthetic: bool = False
    score_scale: dict[str, float] = field(default_factory=dict,
                                          metadata={"problem": "must map task names to factors, e.g. {caption: 0.1}"})

    def check(self) -> None:
        if not self.tasks:
            raise ConfigError(f"data.tasks is empty; list at least one of {', '.join(TASKS)}")
        formats = {get_task(name).feature_format for name in self.tasks}
        if self.synthetic and len(formats) > 1:
            raise ConfigError(f"data.tasks={list(self.tasks)} mixes image and video tasks, but data.synthetic generates "
                              "one benchmark per data.root; run image and video tasks with separate roots")
        if self.synthetic:
            check_generator_owns(self.root)
        for name, factor in self.score_scale.items():
            if name not in TASKS:  # a task this run does not train is allowed: configs set scales for a family
                raise unknown("data.score_scale task", name, TASKS)
            if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor < float("inf"):
                raise ConfigError(f"data.score_scale.{name}={factor!r} must be a finite number > 0")

    def average(self, scores: dict[str, float]) -> float:
        """The run's `score`: the mean over tasks of each task's metric times its `score_scale` factor."""
        return sum(v * self.score_scale.get(k, 1.0) for k, v in scores.items()) / len(scores)

    def task_batch_size(self, task: TaskSpec, split: Split) -> int:
        """The batch size of one task (the paper's per-task share of the base size)."""
        base = self.batch_size if split == "train" else (self.eval_batch_size or self.batch_size)
        return max(1, int(base * task.batch_scale))


@dataclass
class TaskBatch:
    """A collated single-task batch."""

    task: str
    inputs: VLInputs
    labels: torch.Tensor
    weights: torch.Tensor
    uids: list[str]
    examples: list[Example] = field(repr=False)

    def to(self, device: torch.device | str) -> TaskBatch:
        """Move tensors to `device`."""
        i = self.inputs
        inputs = VLInputs(i.input_ids.to(device), i.attention_mask.to(device), i.vis_feats.to(device),
                          None if i.boxes is None else i.boxes.to(device))
        return TaskBatch(self.task, inputs, self.labels.to(device), self.weights.to(device), self.uids, self.examples)


class TaskDataset(Dataset):
    """Examples of one task with lazily read features. VQA/GQA targets are sampled per epoch with
    probability ∝ score from a seed, so a run is reproducible."""

    def __init__(self, task: TaskSpec, examples: list[Example], root: Path, feat_dim: int, seed: int = 0):
        if not examples:
            raise ConfigError(f"task {task.name!r}: no examples found under {root}; check data.root and the split files")
        self.task, self.examples, self.seed, self.epoch = task, examples, seed, 0
        store = FEATURE_STORES[task.feature_format]
        self.stores = {d: store(root / d, feat_dim) for d in {ex.feature_dir for ex in examples}}

    def __len__(self) -> int:
        return len(self.examples)

    def set_epoch(self, epoch: int) -> None:
        """Change the target sampling of the next epoch."""
        self.epoch = epoch

    def __getitem__(self, index: int) -> tuple[Example, np.ndarray, str, float]:
        ex = self.examples[index]
        feats = np.stack([self.stores[ex.feature_dir](img) for img in ex.images])
        answers = list(ex.targets)
        if not any(ex.targets.values()):  # unanswerable (no answer scored): the empty answer, weight 0,
            return ex, feats, "", 0.0      # as the official loader does
        if len(answers) == 1:
            target = answers[0]
        else:
            scores = np.array([ex.targets[a] for a in answers], dtype=np.float64)
            rng = np.random.default_rng((self.seed, self.epoch, index))
            target = answers[rng.choice(len(answers), p=scores / scores.sum())]
        weight = ex.targets[target] if self.task.weighted else 1.0
        return ex, feats, target, weight

    def check_features(self) -> int:
        """Check that every referenced image or video exists with the right shape (each file once); returns
        how many distinct files were checked."""
        files = {(ex.feature_dir, img) for ex in self.examples for img in ex.images}
        for feature_dir, img in sorted(files):
            self.stores[feature_dir].check(img)
        return len(files)


class Collator:
    """Tokenises a list of items into a TaskBatch (prompt and text -> encoder, target -> labels)."""

    def __init__(self, task: TaskSpec, tokenizer: PreTrainedTokenizerBase, task_prompts: bool):
        self.task, self.tokenizer, self.task_prompts = task, tokenizer, task_prompts

    def source_text(self, ex: Example) -> str:
        """The encoder input text of an example: image prompts prefix it, video prompts follow it after a space
        (`f"{sent} {prompt}"`)."""
        if not self.task_prompts:
            return ex.text
        return f"{self.task.prompt}{ex.text}" if self.task.prompt_position == "prefix" else f"{ex.text} {self.task.prompt}"

    def __call__(self, items: list[tuple[Example, np.ndarray, str, float]]) -> TaskBatch:
        examples = [it[0] for it in items]
        source = self.tokenizer([self.source_text(ex) for ex in examples], padding=True, return_tensors="pt",
                                truncation=self.task.max_source_len is not None, max_length=self.task.max_source_len)
        target = self.tokenizer([it[2] for it in items], padding=True, truncation=True,
                                max_length=self.task.max_target_len, return_tensors="pt")
        labels = target.input_ids.masked_fill(target.attention_mask == 0, -100)
        feats = torch.from_numpy(np.stack([it[1] for it in items]))
        return TaskBatch(self.task.name, VLInputs(source.input_ids, source.attention_mask, feats), labels,
                         torch.tensor([it[3] for it in items], dtype=torch.float32),
                         [ex.uid for ex in examples], examples)


def build_dataset(cfg: DataConfig, task: TaskSpec, split: Split, feat_dim: int, seed: int = 0) -> TaskDataset:
    """The dataset of one task and split, capped by the config's example limits."""
    if cfg.synthetic:
        SYNTHETIC[task.feature_format](cfg.root, feat_dim)
    examples = load_examples(task, cfg.root, split)
    cap = cfg.max_train_examples if split == "train" else cfg.max_eval_examples
    return TaskDataset(task, examples[:cap] if cap else examples, Path(cfg.root), feat_dim, seed)


def check_data(cfg: DataConfig, feat_dim: int, address: str | None = None) -> str:
    """Check, where the run starts and before any worker does, what a run reads: every annotation file of
    its tasks' train and val splits (fields and their types) and every feature file they reference (present,
    readable, of the right shape; HDF5 headers only, video frame files in full). A bad file fails here once,
    with one line naming the file and the entry. Returns what was checked, for the console.

    A driver that joins a cluster (`address`) may not see the data; then a root it lacks is left to the workers."""
    if address and not cfg.synthetic and not Path(cfg.root).is_dir():
        return f"data.root {cfg.root} is not on this machine: the workers read it"
    examples = files = 0
    for name in cfg.tasks:
        for split in ("train", "val"):
            dataset = build_dataset(cfg, get_task(name), split, feat_dim)
            files += dataset.check_features()
            examples += len(dataset)
    return f"data checked: {examples} examples and {files} feature files of {', '.join(cfg.tasks)} under {cfg.root}"


def build_loader(cfg: DataConfig, dataset: TaskDataset, tokenizer: PreTrainedTokenizerBase, split: Split,
                 rank: int = 0, world_size: int = 1, seed: int = 0) -> DataLoader:
    """A DataLoader over one task's dataset; sharded by a DistributedSampler when world_size > 1."""
    shuffle = split == "train"
    if world_size > 1:
        sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
    else:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)) if shuffle else SequentialSampler(dataset)
    return DataLoader(dataset, batch_size=cfg.task_batch_size(dataset.task, split), sampler=sampler,
                      collate_fn=Collator(dataset.task, tokenizer, cfg.task_prompts), num_workers=cfg.num_workers)


class MultitaskLoader:
    """Yields single-task batches: every batch of every task once per epoch, tasks interleaved at random."""

    def __init__(self, loaders: dict[str, DataLoader], seed: int = 0):
        self.loaders, self.seed, self.epoch = loaders, seed, 0

    def __len__(self) -> int:
        return sum(len(loader) for loader in self.loaders.values())

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle samplers, target sampling and the task order for `epoch`."""
        self.epoch = epoch
        for loader in self.loaders.values():
            loader.dataset.set_epoch(epoch)
            if isinstance(loader.sampler, DistributedSampler):
                loader.sampler.set_epoch(epoch)
            elif isinstance(loader.sampler, RandomSampler):
                loader.sampler.generator.manual_seed(self.seed * 100_003 + epoch)

    def __iter__(self) -> Iterator[TaskBatch]:
        order = [name for name, loader in self.loaders.items() for _ in range(len(loader))]
        random.Random(self.seed * 100_003 + self.epoch).shuffle(order)
        iterators = {name: iter(loader) for name, loader in self.loaders.items()}
        for name in order:
            yield next(iterators[name])
