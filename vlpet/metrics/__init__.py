"""Evaluation metrics, computed as the official scorers do: VQA v2 accuracy, exact-match / GQA accuracy and
the COCO caption metrics (pycocoevalcap)."""

from vlpet.metrics.accuracy import exact_match_accuracy, gqa_accuracy
from vlpet.metrics.captions import caption_scores, cider
from vlpet.metrics.vqa import normalize_answer, topk_score, vqa_accuracy, vqa_soft_score

__all__ = [
    "caption_scores",
    "cider",
    "exact_match_accuracy",
    "gqa_accuracy",
    "normalize_answer",
    "topk_score",
    "vqa_accuracy",
    "vqa_soft_score",
]
