"""Tasks, on-disk formats, multi-task batching and the embedded synthetic benchmark."""

from vlpet.data.dataset import (
           Collator,
           DataConfig,
           MultitaskLoader,
           TaskBatch,
           TaskDataset,
           build_dataset,
           build_loader,
)
from vlpet.data.tasks import TASKS, Example, TaskSpec, get_task, load_examples

__all__ = ["TASKS", "Collator", "DataConfig", "Example", "MultitaskLoader", "TaskBatch", "TaskDataset", "TaskSpec",
           "build_dataset", "build_loader", "get_task", "load_examples"]
