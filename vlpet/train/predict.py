"""Predictions for any split, labelled or not, written in the form each benchmark's evaluation server
takes, as the paper's code writes them (file formats in docs/data.md):

    vqa      JSON list  [{"question_id": int, "answer": str}]
    gqa      JSON list  [{"questionId": str, "prediction": str}]
    nlvr     CSV lines  identifier,True|False
    caption  JSON list  [{"image_id": int, "caption": str}]       (COCO results; the paper's code writes none)
    tvqa, how2qa  JSON object  {qid: answer index}                 ("a3" -> 3; 0 when no index was generated)
    tvc, yc2c     JSON lines   {"vid_name", "clip_id", ["ts",] "descs": [{"desc": str}]}   one line per clip
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import torch

from vlpet.data import DataConfig, Example, build_dataset, build_loader, get_task
from vlpet.data.tasks import Split
from vlpet.models import VLModel
from vlpet.train.evaluate import DecodeConfig, predict_loader

Pairs = list[tuple[Example, str]]  # each example with its predicted text, in split order


def _json(data: object) -> str:
    return json.dumps(data, indent=4, sort_keys=True) + "\n"  # the paper's dumps: indented, keys sorted


def _vqa(pairs: Pairs) -> str:
    return _json([{"question_id": int(ex.uid), "answer": pred} for ex, pred in pairs])


def _gqa(pairs: Pairs) -> str:
    return _json([{"questionId": ex.uid, "prediction": pred} for ex, pred in pairs])


def _nlvr(pairs: Pairs) -> str:
    return "".join(f"{ex.uid},{'True' if pred == 'true' else 'False'}\n" for ex, pred in pairs)


def coco_image_id(img_id: str) -> int | str:
    """COCO's integer image id from a Karpathy file stem ("COCO_val2014_000000391895" -> 391895)."""
    digits = img_id.rsplit("_", 1)[-1]
    return int(digits) if digits.isdigit() else img_id


def _caption(pairs: Pairs) -> str:
    return _json([{"image_id": coco_image_id(ex.uid), "caption": pred} for ex, pred in pairs])


def answer_index(pred: str) -> int:
    """The choice index of a generated "aK", as the paper's dump reads it: the character after "a", 0 when
    that is not a digit (a malformed answer still gets a guess on the leaderboard)."""
    return int(pred[1]) if len(pred) > 1 and pred[1].isdigit() else 0


def _video_qa(pairs: Pairs) -> str:
    return json.dumps({ex.uid: answer_index(pred) for ex, pred in pairs}) + "\n"


def _video_caption(pairs: Pairs) -> str:
    """One line per clip: a labelled file's descs of a clip share its input, so its first prediction stands."""
    clips: dict[str, str] = {}
    for ex, pred in pairs:
        line = {**ex.meta, "descs": [{"desc": pred}]}
        clips.setdefault(str(ex.meta["clip_id"]), json.dumps(line))
    return "".join(line + "\n" for line in clips.values())


# task -> (file suffix, the file's text from its (example, prediction) pairs)
SUBMISSIONS: dict[str, tuple[str, Callable[[Pairs], str]]] = {
    "vqa": ("json", _vqa), "gqa": ("json", _gqa), "nlvr": ("csv", _nlvr), "caption": ("json", _caption),
    "tvqa": ("json", _video_qa), "how2qa": ("json", _video_qa), "tvc": ("jsonl", _video_caption),
    "yc2c": ("jsonl", _video_caption),
}


def prediction_file(output: Path, task: str, split: str) -> Path:
    """Where the predictions of one task and split go."""
    return output / f"{task}_{split}_predictions.{SUBMISSIONS[task][0]}"


def write_predictions(model: VLModel, data: DataConfig, split: Split, output: str | Path,
                      decode: DecodeConfig, device: torch.device | str = "cpu") -> list[Path]:
    """Predict every example of `split` for each of `data.tasks` and write one test-server file per task
    under `output`; returns the files."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    model.to(device)
    written = []
    for name in data.tasks:
        dataset = build_dataset(data, get_task(name), split, model.backbone_config.feat_dim)
        # read in file order at the evaluation batch size, whichever split it is
        loader = build_loader(data, dataset, model.tokenizer, "val")
        preds, batches = predict_loader(model, name, loader, model.tokenizer, device, decode)
        pairs = [(ex, preds[ex.uid]) for batch in batches for ex in batch.examples]
        path = prediction_file(output, name, split)
        path.write_text(SUBMISSIONS[name][1](pairs))
        written.append(path)
    return written
