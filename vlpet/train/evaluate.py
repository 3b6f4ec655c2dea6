"""Per-task decoding and scoring: greedy answers for VQA/GQA, true/false logits for
NLVR2, beam search for captions (image and video) and for the video QA answers "aK"; each task scored by
its official metric, plus their average."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch.utils.data import DataLoader
from transformers import PreTrainedTokenizerBase

from vlpet.config_base import Config, bounded
from vlpet.data import DataConfig, TaskBatch, TaskSpec, get_task, load_examples
from vlpet.errors import ConfigError
from vlpet.metrics import cider, exact_match_accuracy, gqa_accuracy, vqa_accuracy
from vlpet.models import VLModel

METRICS = {"vqa_accuracy": vqa_accuracy, "gqa_accuracy": gqa_accuracy, "accuracy": exact_match_accuracy, "cider": cider}


@dataclass(frozen=True)
class DecodeConfig(Config):
    """Generation settings. The paper: captions with 5 beams and max length 20; image answers
    greedy; video QA answers ("aK") with the same beams, up to answer_max_new_tokens tokens.

    no_repeat_ngram_size applies to captions only, as bart-base's hub generation config did.
    """

    section: ClassVar[str] = "decode"

    num_beams: int = bounded(5, ge=1)
    caption_max_length: int = bounded(20, ge=1)
    answer_max_new_tokens: int = bounded(10, ge=1)
    no_repeat_ngram_size: int = bounded(3, ge=0)


def _decoder_prefix(model: VLModel, tokenizer: PreTrainedTokenizerBase) -> list[int]:
    """Decoder input that precedes the first answer token: the start token, plus <s> when targets carry it."""
    start = model.backbone.config.decoder_start_token_id
    first = tokenizer("x").input_ids[0]
    return [start, first] if first == tokenizer.bos_token_id and tokenizer.bos_token_id is not None else [start]


def predict(model: VLModel, batch: TaskBatch, task: TaskSpec, tokenizer: PreTrainedTokenizerBase,
            decode: DecodeConfig = DecodeConfig()) -> list[str]:
    """Predicted text of every example in `batch`."""
    if task.decode == "true_false":
        prefix = torch.tensor([_decoder_prefix(model, tokenizer)], device=batch.labels.device)
        logits = model(batch.inputs, decoder_input_ids=prefix.expand(len(batch.uids), -1)).logits[:, -1]
        true_id, false_id = (tokenizer(w, add_special_tokens=False).input_ids[0] for w in ("true", "false"))
        return ["true" if t > f else "false" for t, f in zip(logits[:, true_id].tolist(), logits[:, false_id].tolist())]
    if task.decode == "beam":
        kwargs: dict[str, Any] = {"num_beams": decode.num_beams, "max_length": decode.caption_max_length,
                                      "no_repeat_ngram_size": decode.no_repeat_ngram_size, "early_stopping": True}
    elif task.decode == "beam_answer":
        kwargs = {"num_beams": decode.num_beams, "max_new_tokens": decode.answer_max_new_tokens}
    else:
        kwargs = {"num_beams": 1, "max_new_tokens": decode.answer_max_new_tokens, "do_sample": False}
    ids = model.generate(batch.inputs, **kwargs)
    return [t.strip() for t in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def references(task: TaskSpec, batch: TaskBatch) -> dict[str, Any]:
    """What the task's metric compares predictions with, by example uid."""
    unlabelled = [ex.uid for ex in batch.examples if not ex.labelled]
    if unlabelled:
        raise ConfigError(f"{task.name}: example {unlabelled[0]} has no label, so it cannot be scored; predict for "
                          "test-server files with vlpet-predict instead")
    return {ex.uid: ex.reference for ex in batch.examples}


@torch.no_grad()
def predict_loader(model: VLModel, name: str, loader: DataLoader, tokenizer: PreTrainedTokenizerBase,
                   device: torch.device | str = "cpu", decode: DecodeConfig = DecodeConfig(),
                   ) -> tuple[dict[str, str], list[TaskBatch]]:
    """The predicted text of every example of task `name`'s loader by uid, and the batches they came from."""
    was_training = model.training
    model.eval()
    model.set_task(name)  # task-conditioned methods (Hyperformer) generate their weights per task
    task = get_task(name)
    preds: dict[str, str] = {}
    batches = []
    for batch in loader:
        batch = batch.to(device)
        preds.update(zip(batch.uids, predict(model, batch, task, tokenizer, decode)))
        batches.append(batch)
    model.train(was_training)
    return preds, batches


def evaluate(model: VLModel, loaders: dict[str, DataLoader], tokenizer: PreTrainedTokenizerBase,
             device: torch.device | str = "cpu", decode: DecodeConfig = DecodeConfig()) -> dict[str, float]:
    """Score every task's loader; returns {task: score} (scores in %, CIDEr x100). The run's average is
    `DataConfig.average` of these."""
    scores = {}
    for name, loader in loaders.items():
        task = get_task(name)
        preds, batches = predict_loader(model, name, loader, tokenizer, device, decode)
        refs = {uid: ref for batch in batches for uid, ref in references(task, batch).items()}
        scores[name] = float(METRICS[task.metric](preds, refs))
    return scores


def task_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, task: TaskSpec) -> torch.Tensor:
    """Token cross-entropy reduced as the paper's code: per-example mean then batch mean (VQA weighted
    by the sampled answer's score), or a plain mean over tokens for captions."""
    per_token = torch.nn.functional.cross_entropy(logits.transpose(1, 2).float(), labels, ignore_index=-100, reduction="none")
    mask = labels.ne(-100)
    if task.loss == "token":
        return per_token.sum() / mask.sum().clamp(min=1)
    per_example = per_token.sum(1) / mask.sum(1).clamp(min=1)
    return (per_example * weights).mean() if task.weighted else per_example.mean()


def constant_baselines(data: DataConfig, split: str = "val", candidates: int = 10) -> dict[str, float]:
    """Each task's score when every example gets the same output: the best of the split's `candidates`
    most frequent answers (picked on the split itself, a bar at least as high as any answer prior learned
    from training), or the split's most common reference caption. A method that does not beat this has
    learned the answer prior, not the task."""
    out = {}
    for name in data.tasks:
        task = get_task(name)
        examples = load_examples(task, data.root, split)
        refs = {ex.uid: ex.reference for ex in examples}
        pool = Counter(t for ex in examples for t in (ex.reference if task.metric == "cider" else ex.targets))
        tries = [text for text, _ in pool.most_common(1 if task.metric == "cider" else candidates)]
        out[name] = max(float(METRICS[task.metric](dict.fromkeys(refs, text), refs)) for text in tries)
    return out
