"""Plain accuracies: exact match (NLVR2 "true"/"false", video QA "a0".."a4") and GQA's label-dict score."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from vlpet.errors import ConfigError


def _mean_percent(
    name: str, preds: Mapping[Any, str], truth: Mapping[Any, Any], score: Callable[[str, Any], float]
) -> float:
    """100 x mean of score(pred, truth[id]) over the ids in `preds`; a ConfigError names an id without truth."""
    if not preds:
        raise ConfigError(f"{name} got no predictions")
    total = 0.0
    for qid, pred in preds.items():
        if qid not in truth:
            raise ConfigError(f"{name}: id {qid!r} has a prediction but no ground truth")
        total += score(pred, truth[qid])
    return 100.0 * total / len(preds)


def exact_match_accuracy(preds: Mapping[Any, str], targets: Mapping[Any, str]) -> float:
    """Percentage of predictions equal to their target after `.strip().lower()` on both."""
    return _mean_percent(
        "exact_match_accuracy", preds, targets, lambda p, t: float(p.strip().lower() == t.strip().lower())
    )


def gqa_accuracy(preds: Mapping[Any, str], labels: Mapping[Any, Mapping[str, float]]) -> float:
    """Mean (x100) of labels[id].get(stripped prediction, 0) over the ids in `preds` (GQA label dicts)."""
    return _mean_percent("gqa_accuracy", preds, labels, lambda p, lab: lab.get(p.strip(), 0.0))
