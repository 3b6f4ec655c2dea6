"""The embedded benchmark is learnable: the packaged tiny VL-BART, fine-tuned for a few CPU epochs,
beats chance on VQA and NLVR2 by a clear margin (answers depend on the visual features)."""

from __future__ import annotations

from collections import Counter

import pytest

from vlpet.data import get_task, load_examples
from vlpet.data.synthetic import SyntheticConfig, ensure_benchmark
from vlpet.metrics import vqa_accuracy
from vlpet.train.config import RunSpec
from vlpet.train.loop import run_training


def chance_levels(root) -> tuple[float, float]:
    """VQA accuracy of always answering the most frequent training answer; NLVR2 majority-class rate."""
    train, val = (load_examples(get_task("vqa"), root, split) for split in ("train", "val"))
    top = Counter(max(e.targets, key=e.targets.get) for e in train).most_common(1)[0][0]
    vqa = vqa_accuracy({e.uid: top for e in val}, {e.uid: e.reference for e in val})
    labels = Counter(e.reference for e in load_examples(get_task("nlvr"), root, "val"))
    return vqa, 100 * max(labels.values()) / sum(labels.values())


@pytest.mark.slow
def test_short_training_beats_chance_on_vqa_and_nlvr(tmp_path):
    root = ensure_benchmark(tmp_path / "data", SyntheticConfig())
    spec = RunSpec.from_dict({
        "backbone": {"pretrained": "embedded", "feat_dim": 128},
        "method": {"method": "full"},
        "data": {"root": str(root), "batch_size": 32, "eval_batch_size": 64},
        "train": {"epochs": 4, "lr": 1e-3, "log_every": 1000},
        "decode": {"num_beams": 1},
    })
    final = run_training(spec, lambda metrics, checkpoint: None)
    vqa_chance, nlvr_chance = chance_levels(root)
    assert final["score_vqa"] > vqa_chance + 10, (final["score_vqa"], vqa_chance)
    assert final["score_nlvr"] > nlvr_chance + 8, (final["score_nlvr"], nlvr_chance)
