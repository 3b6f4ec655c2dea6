"""The image-text tasks as data: where their annotations and features live (the VL-Adapter layout the
paper uses, spec 6-9), how an annotation becomes an example, how each task decodes and is scored.

Layout under the datasets root (keys and shapes in the README):

    vqa/karpathy_{train,val,test}.json          [{img_id, question_id, sent, label{answer: score}, ...}]
    vqa/v2_mscoco_val2014_annotations.json      official annotations (10 answers per question)
    COCO/clip_features/data_clip_RN101_att/<img_id>.h5
    COCO/dataset_coco.json                      Karpathy captions {images: [{filename, split, sentences}]}
    GQA/{train,valid,testdev}.json              [{img_id, question_id, sent, label{answer: 1.0}}]
    VG/clip_features/data_clip_RN101_att/       features of GQA train/valid images
    GQA/clip_features/data_clip_RN101_att/      features of GQA testdev images
    nlvr/{train,valid,test}.json                [{identifier, img0, img1, label 0/1, sent, uid}]
    nlvr/clip_features/data_clip_RN101_att/
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from vlpet.errors import ConfigError, unknown

COCO_FEATS = "COCO/clip_features/data_clip_RN101_att"
VG_FEATS = "VG/clip_features/data_clip_RN101_att"
GQA_FEATS = "GQA/clip_features/data_clip_RN101_att"
NLVR_FEATS = "nlvr/clip_features/data_clip_RN101_att"
Split = Literal["train", "val", "test"]


@dataclass
class Example:
    """One training or evaluation item.

    `targets` maps each acceptable target text to its weight (VQA: the soft score, sampled p ∝ score
    and used as loss weight; others 1.0); `reference` is what the task's scorer compares with.
    """

    uid: str
    images: tuple[str, ...]
    feature_dir: str
    text: str
    targets: dict[str, float]
    reference: Any = None


@dataclass(frozen=True)
class TaskSpec:
    """A task as data: prompt, batch share, decoding, loss and scoring, and its annotation loader."""

    name: str
    prompt: str
    batch_scale: float
    decode: Literal["greedy", "beam", "true_false"]
    loss: Literal["example", "token"]
    weighted: bool
    max_source_len: int | None
    max_target_len: int
    splits: dict[str, tuple[str, ...]]
    load: Callable[[Path, str], list[Example]] = field(repr=False)
    metric: str = "accuracy"


def read_json(path: Path) -> Any:
    """Parse an annotation file with a clear error when it is missing or malformed."""
    if not path.is_file():
        raise ConfigError(f"{path}: annotation file not found (see README, data layout)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None


def require(entry: Any, fields: tuple[str, ...], path: Path, index: int) -> None:
    """Every annotation entry must be a mapping with these fields."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: entry {index} is a {type(entry).__name__}, expected an object")
    for name in fields:
        if name not in entry:
            raise ConfigError(f"{path}: entry {index} has no field {name!r} (required: {', '.join(fields)})")


def _entries(path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    data = read_json(path)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
    for i, entry in enumerate(data):
        require(entry, fields, path, i)
    return data


@lru_cache(maxsize=4)
def _official_vqa_answers(path: Path) -> dict[int, list[str]]:
    """question_id -> the 10 human answers, from an official VQA v2 annotation file."""
    data = read_json(path)
    if "annotations" not in data:
        raise ConfigError(f"{path}: no 'annotations' list; expected the official VQA v2 annotation file")
    answers = {}
    for i, ann in enumerate(data["annotations"]):
        require(ann, ("question_id", "answers"), path, i)
        answers[int(ann["question_id"])] = [a["answer"] for a in ann["answers"]]
    return answers


def load_vqa(root: Path, name: str) -> list[Example]:
    """VQA v2, Karpathy split `name`; evaluation answers from the official val2014 annotations."""
    path = root / "vqa" / f"{name}.json"
    entries = _entries(path, ("img_id", "question_id", "sent", "label"))
    official = None if name == "karpathy_train" else _official_vqa_answers(root / "vqa" / "v2_mscoco_val2014_annotations.json")
    out = []
    for e in entries:
        qid = int(e["question_id"])
        if official is not None and qid not in official:
            raise ConfigError(f"{root / 'vqa' / 'v2_mscoco_val2014_annotations.json'}: no answers for question_id {qid} "
                              f"of {path.name}")
        out.append(Example(str(qid), (e["img_id"],), COCO_FEATS, e["sent"], dict(e["label"]),
                           official[qid] if official is not None else None))
    return out


def load_gqa(root: Path, name: str) -> list[Example]:
    """GQA split `name` (train/valid read VG features, testdev/submit GQA features)."""
    path = root / "GQA" / f"{name}.json"
    feats = VG_FEATS if name in ("train", "valid") else GQA_FEATS
    return [Example(str(e["question_id"]), (e["img_id"],), feats, e["sent"], dict(e["label"]), dict(e["label"]))
            for e in _entries(path, ("img_id", "question_id", "sent", "label"))]


def load_nlvr(root: Path, name: str) -> list[Example]:
    """NLVR2 split `name`: two images, a statement, target "true"/"false"."""
    path = root / "nlvr" / f"{name}.json"
    out = []
    for i, e in enumerate(_entries(path, ("identifier", "img0", "img1", "label", "sent"))):
        if e["label"] not in (0, 1):
            raise ConfigError(f"{path}: entry {i} has label {e['label']!r}; expected 0 or 1")
        answer = "true" if e["label"] == 1 else "false"
        out.append(Example(e["identifier"], (e["img0"], e["img1"]), NLVR_FEATS, e["sent"], {answer: 1.0}, answer))
    return out


def load_caption(root: Path, name: str) -> list[Example]:
    """COCO captions, Karpathy split `name`: training yields one example per (image, sentence), with
    all references kept; evaluation one example per image."""
    path = root / "COCO" / "dataset_coco.json"
    data = _karpathy(path)
    out = []
    for img in data:
        if img["split"] != name:
            continue
        img_id = Path(img["filename"]).stem
        refs = [s["raw"].strip() for s in img["sentences"]]
        if name in ("train", "restval"):
            out += [Example(f"{img_id}#{k}", (img_id,), COCO_FEATS, "", {r: 1.0}, refs) for k, r in enumerate(refs)]
        else:
            out.append(Example(img_id, (img_id,), COCO_FEATS, "", {refs[0]: 1.0}, refs))
    return out


@lru_cache(maxsize=2)
def _karpathy(path: Path) -> list[dict[str, Any]]:
    data = read_json(path)
    if not isinstance(data, dict) or "images" not in data:
        raise ConfigError(f"{path}: expected the Karpathy split file with an 'images' list")
    for i, img in enumerate(data["images"]):
        require(img, ("filename", "split", "sentences"), path, i)
        for s in img["sentences"]:
            if "raw" not in s:
                raise ConfigError(f"{path}: image {i} has a sentence without 'raw'")
    return data["images"]


# Batch shares, prompts and decoding follow the paper's code (spec 6.2, 6.4, 9). GQA's prompt keeps
# the code's typo "gpa: " so runs match the paper.
TASKS: dict[str, TaskSpec] = {
    "vqa": TaskSpec("vqa", "vqa: ", 1.0, "greedy", "example", True, 20, 10,
                    {"train": ("karpathy_train",), "val": ("karpathy_val",), "test": ("karpathy_test",)},
                    load_vqa, "vqa_accuracy"),
    "gqa": TaskSpec("gqa", "gpa: ", 100 / 60, "greedy", "example", False, 20, 10,
                    {"train": ("train", "valid"), "val": ("testdev",), "test": ("testdev",)}, load_gqa, "gqa_accuracy"),
    "nlvr": TaskSpec("nlvr", "nlvr: ", 20 / 60, "true_false", "example", False, None, 4,
                     {"train": ("train",), "val": ("valid",), "test": ("test",)}, load_nlvr, "accuracy"),
    "caption": TaskSpec("caption", "caption: ", 50 / 60, "beam", "token", False, 40, 40,
                        {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}, load_caption, "cider"),
}


def get_task(name: str) -> TaskSpec:
    """The TaskSpec registered under `name`."""
    if name not in TASKS:
        raise unknown("task", name, TASKS)
    return TASKS[name]


def load_examples(task: TaskSpec, root: str | Path, split: Split) -> list[Example]:
    """All examples of one task and split (the union of its annotation files)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root={str(root)!r}: no such directory; point it at the datasets root (see README)")
    return [ex for name in task.splits[split] for ex in task.load(root, name)]
