"""The image-text and video-text tasks as data: where their annotations and features live (the
VL-Adapter / VALUE layout the paper uses), how an annotation becomes an example, how each task
decodes and is scored.

Layout under the datasets root (keys and shapes in the README):

    vqa/karpathy_{train,val,test}.json          [{img_id, question_id, sent | question, label{answer: score}, ...}]
    vqa/test_4.json                             test-server questions (no label)
    vqa/v2_mscoco_{train,val}2014_annotations.json
                                                official annotations (10 answers per question), merged
    COCO/clip_features/data_clip_RN101_att/<img_id>.h5
    COCO/dataset_coco.json                      Karpathy captions {images: [{filename, split, sentences}]}
    GQA/{train,valid,testdev}.json              [{img_id, question_id, sent, label{answer: 1.0}}]
    GQA/submit.json                             test-server questions (no label)
    VG/clip_features/data_clip_RN101_att/       features of GQA train/valid images
    GQA/clip_features/data_clip_RN101_att/      features of GQA testdev images
    nlvr/{train,valid,test}.json                [{identifier, img0, img1, label 0/1, sent, uid}]
    nlvr/clip_features/data_clip_RN101_att/

    video/ann/{tv,how2,yc2}_subtitles.jsonl     one line per video: {vid_name, sub: [{start, end, text}]}
    video/ann/tvqa/tvqa_{train,val,test_public,test_release}.jsonl
                                                {qid, vid_name, show_name, q, a0..a4, answer_idx, ts: "s-e"}
    video/ann/how2qa/how2qa_{train,val,test_public}_release.jsonl
                                                {qid, vid_name, q, a0..a3, answer_idx, ts}
    video/ann/tvc/tvc_{train,val,test}_release.jsonl
                                                {vid_name, duration, ts: [s, e], clip_id, descs: [{desc, desc_id, type}]}
    video/ann/yc2c/yc2c_{train,val,test}_release.jsonl
                                                {vid_name, duration, clip_id, descs: [{desc, desc_id}]}
    video/vis_features/{tv,how2,yc2}/clip-vit/<vid_name>.npz    array `features` [T, 512]

Video inputs follow the paper's loaders (`src/video/*_data.py`): the subtitle texts of the *whole* video
(`vid_name` is already a clip of the show) joined in file order after "[Subs]", then the question, the
raw `ts` value and the choices; the `ts` moment is given to the model as text, not used to cut subtitles
(cutting them would change the inputs the paper's numbers come from).

Unlabelled files (the VALUE test files without `answer_idx` / `descs`, GQA `submit`, VQA `test_4`, any
entry without its label field) load as the official loaders read them: one example per question or per
clip, `labelled=False`, to predict for the test servers (`vlpet-predict`); they cannot be trained on or
scored. docs/data.md lists each task's files per split.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Literal

from vlpet.errors import ConfigError, unknown

COCO_FEATS = "COCO/clip_features/data_clip_RN101_att"
VG_FEATS = "VG/clip_features/data_clip_RN101_att"
GQA_FEATS = "GQA/clip_features/data_clip_RN101_att"
NLVR_FEATS = "nlvr/clip_features/data_clip_RN101_att"
VIDEO_ANN = "video/ann"
# Video sources: subtitles file and frame-feature directory (TV shows: TVQA + TVC; How2; YouCook2).
VIDEO_SOURCES = {name: (f"{VIDEO_ANN}/{name}_subtitles.jsonl", f"video/vis_features/{name}/clip-vit")
                 for name in ("tv", "how2", "yc2")}
Split = Literal["train", "val", "test", "submit"]


@dataclass
class Example:
    """One training or evaluation item.

    `targets` maps each acceptable target text to its weight (VQA: the soft score, sampled p ∝ score
    and used as loss weight; others 1.0; empty for an unanswerable VQA/GQA question); `reference` is what
    the task's scorer compares with. `labelled` is False for an entry of a test-server file (no label:
    nothing to train on or score, only to predict). `meta` holds the annotation fields a test server wants
    back beside the prediction (TVC / YC2C: vid_name, clip_id, TVC also ts).
    """

    uid: str
    images: tuple[str, ...]
    feature_dir: str
    text: str
    targets: dict[str, float]
    reference: Any = None
    labelled: bool = True
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TaskSpec:
    """A task as data: prompt, batch share, decoding, loss and scoring, and its annotation loader.

    `prompt_position`: image prompts are prepended, video prompts appended.
    `feature_format`: "h5" per-image grid features (H5FeatureStore), "npz" per-video frame features
    (NpzFrameStore). `decode`: "beam_answer" is beam search for a short answer (video QA's "aK").
    """

    name: str
    prompt: str
    batch_scale: float
    decode: Literal["greedy", "beam", "beam_answer", "true_false"]
    loss: Literal["example", "token"]
    weighted: bool
    max_source_len: int | None
    max_target_len: int
    splits: dict[str, tuple[str, ...]]
    load: Callable[[Path, str], list[Example]] = field(repr=False)
    metric: str = "accuracy"
    prompt_position: Literal["prefix", "suffix"] = "prefix"
    feature_format: Literal["h5", "npz"] = "h5"


def read_json(path: Path) -> Any:
    """Parse an annotation file with a clear error when it is missing or malformed."""
    if not path.is_file():
        raise ConfigError(f"{path}: annotation file not found (see README, data layout)")
    try:
        return json.loads(_text(path))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}: not valid JSON ({err})") from None


def _text(path: Path) -> str:
    """A file's UTF-8 text (annotation files are UTF-8 JSON)."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}); save it as UTF-8") from None


def require(entry: Any, fields: tuple[str, ...], path: Path, index: int) -> None:
    """Every annotation entry must be a mapping with these fields."""
    if not isinstance(entry, dict):
        raise ConfigError(f"{path}: entry {index} is a {type(entry).__name__}, expected an object")
    for name in fields:
        if name not in entry:
            raise ConfigError(f"{path}: entry {index} has no field {name!r} (required: {', '.join(fields)})")


def read_jsonl(path: Path) -> list[Any]:
    """Parse a JSON Lines annotation file (blank lines skipped) with clear errors."""
    if not path.is_file():
        raise ConfigError(f"{path}: annotation file not found (see README, data layout)")
    data = []
    for number, line in enumerate(_text(path).splitlines(), 1):
        if line.strip():
            try:
                data.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise ConfigError(f"{path}: line {number} is not valid JSON ({err})") from None
    return data


def text_field(entry: dict[str, Any], name: str, path: Path, index: int) -> str:
    """An entry's field that must be a non-empty string (a question, a statement, a caption)."""
    value = entry[name]
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{path}: entry {index} has {name}={value!r:.60}; expected a non-empty string")
    return value


def int_field(entry: dict[str, Any], name: str, path: Path, index: int) -> int:
    """An entry's field that must be an integer (or a string of digits, as some files write ids)."""
    value = entry[name]
    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and value.isdigit())):
        raise ConfigError(f"{path}: entry {index} has {name}={value!r:.60}; expected an integer")
    return int(value)


def label_field(entry: dict[str, Any], path: Path, index: int) -> dict[str, float]:
    """A VQA/GQA `label`: answer -> soft score in [0, 1]. Empty for an unanswerable question (the official
    loader then trains on the empty answer with weight 0, see TaskDataset)."""
    label = entry["label"]
    valid = isinstance(label, dict) and all(
        isinstance(a, str) and isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v <= 1
        for a, v in label.items())
    if not valid:
        raise ConfigError(f"{path}: entry {index} has label {label!r:.80}; expected an object answer -> score in [0, 1]")
    return {a: float(v) for a, v in label.items()}


def _entries(path: Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    data = read_jsonl(path) if path.suffix == ".jsonl" else read_json(path)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of entries, got {type(data).__name__}")
    for i, entry in enumerate(data):
        require(entry, fields, path, i)
    return data


# Official VQA v2 annotation files; the official loader merges both, val2014's entry winning for a
# question in both (the Karpathy splits draw their questions from train2014 and val2014).
VQA_ANNOTATIONS = ("v2_mscoco_train2014_annotations.json", "v2_mscoco_val2014_annotations.json")


def _annotation_answers(path: Path) -> dict[int, list[str]]:
    """question_id -> the 10 human answers, from one official VQA v2 annotation file."""
    data = read_json(path)
    if not isinstance(data, dict) or "annotations" not in data:
        raise ConfigError(f"{path}: no 'annotations' list; expected the official VQA v2 annotation file")
    answers = {}
    for i, ann in enumerate(data["annotations"]):
        require(ann, ("question_id", "answers"), path, i)
        answers[int(ann["question_id"])] = [a["answer"] for a in ann["answers"]]
    return answers


@lru_cache(maxsize=2)
def _official_vqa_answers(vqa_dir: Path) -> dict[int, list[str]]:
    """question_id -> human answers of both official annotation files, merged (the later file wins)."""
    answers: dict[int, list[str]] = {}
    for name in VQA_ANNOTATIONS:
        answers |= _annotation_answers(vqa_dir / name)
    return answers


def _human_answers(vqa_dir: Path, qid: int, source: Path) -> list[str]:
    """The official human answers of question `qid` (of annotation file `source`)."""
    answers = _official_vqa_answers(vqa_dir).get(qid)
    if answers is None:
        raise ConfigError(f"{vqa_dir}: neither {' nor '.join(VQA_ANNOTATIONS)} has answers for question_id {qid} "
                          f"of {source.name}")
    return answers


def _question(entry: dict[str, Any], path: Path, index: int) -> str:
    """A VQA question: `sent`, else `question` (the official loader's fallback)."""
    for name in ("sent", "question"):
        if name in entry:
            return text_field(entry, name, path, index)
    raise ConfigError(f"{path}: entry {index} has neither 'sent' nor 'question'; one of them holds the question")


def load_vqa(root: Path, name: str) -> list[Example]:
    """VQA v2 file `name`. Evaluation answers (not for karpathy_train) come from the merged official
    annotations; an entry without `label` (test-server questions) is unlabelled, one with `label: {}`
    unanswerable (trained on "" with weight 0, scored against its human answers as any other)."""
    path = root / "vqa" / f"{name}.json"
    out = []
    for i, e in enumerate(_entries(path, ("img_id", "question_id"))):
        qid = int_field(e, "question_id", path, i)
        text = _question(e, path, i)
        if "label" not in e:
            out.append(Example(str(qid), (e["img_id"],), COCO_FEATS, text, {}, labelled=False))
            continue
        reference = None if name == "karpathy_train" else _human_answers(root / "vqa", qid, path)
        out.append(Example(str(qid), (e["img_id"],), COCO_FEATS, text, label_field(e, path, i), reference))
    return out


def load_gqa(root: Path, name: str) -> list[Example]:
    """GQA split `name` (train/valid read VG features, testdev/submit GQA features); an entry without
    `label` (the submit file) is unlabelled."""
    path = root / "GQA" / f"{name}.json"
    feats = VG_FEATS if name in ("train", "valid") else GQA_FEATS
    out = []
    for i, e in enumerate(_entries(path, ("img_id", "question_id", "sent"))):
        ex = Example(str(e["question_id"]), (e["img_id"],), feats, text_field(e, "sent", path, i), {}, labelled=False)
        if "label" in e:
            ex.targets = label_field(e, path, i)
            ex.reference, ex.labelled = dict(ex.targets), True
        out.append(ex)
    return out


def load_nlvr(root: Path, name: str) -> list[Example]:
    """NLVR2 split `name`: two images, a statement, target "true"/"false" (unlabelled without `label`)."""
    path = root / "nlvr" / f"{name}.json"
    out = []
    for i, e in enumerate(_entries(path, ("identifier", "img0", "img1", "sent"))):
        ex = Example(e["identifier"], (e["img0"], e["img1"]), NLVR_FEATS, text_field(e, "sent", path, i), {},
                     labelled=False)
        if "label" in e:
            if e["label"] not in (0, 1):
                raise ConfigError(f"{path}: entry {i} has label {e['label']!r}; expected 0 or 1")
            ex.reference = "true" if e["label"] == 1 else "false"
            ex.targets, ex.labelled = {ex.reference: 1.0}, True
        out.append(ex)
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
        if not isinstance(img["sentences"], list) or not img["sentences"]:
            raise ConfigError(f"{path}: image {i} has sentences={img['sentences']!r:.60}; expected a non-empty list")
        for s in img["sentences"]:
            if not isinstance(s, dict) or not isinstance(s.get("raw"), str) or not s["raw"].strip():
                raise ConfigError(f"{path}: image {i} has a sentence without a non-empty 'raw' text")
    return data["images"]


@lru_cache(maxsize=4)
def _subtitles(path: Path) -> dict[str, str]:
    """vid_name -> its subtitle texts, stripped and joined in file order (the paper's "[Subs]" body)."""
    subs = {}
    for i, entry in enumerate(_entries(path, ("vid_name", "sub"))):
        for line in entry["sub"]:
            if not isinstance(line, dict) or "text" not in line:
                raise ConfigError(f"{path}: entry {i} ({entry['vid_name']}) has a subtitle without 'text'")
        subs[entry["vid_name"]] = " ".join(line["text"].strip() for line in entry["sub"])
    return subs


def _video_text(root: Path, source: str, ann: Path, index: int, entry: dict[str, Any]) -> str:
    """"[Subs] <all subtitle texts of the video>" for one annotation entry."""
    path = root / VIDEO_SOURCES[source][0]
    subs = _subtitles(path)
    if entry["vid_name"] not in subs:
        raise ConfigError(f"{path}: no subtitles for video {entry['vid_name']!r} (used by {ann.name} entry {index})")
    return f"[Subs] {subs[entry['vid_name']]}"


def load_video_qa(root: Path, name: str, folder: str, source: str, n_choices: int) -> list[Example]:
    """TVQA / How2QA file `name`: "[Subs] … [Q] q [TS] (ts) [Choices] a0: …. a1: …." -> "a<answer_idx>";
    an entry without `answer_idx` (the test files) is unlabelled."""
    path = root / VIDEO_ANN / folder / f"{name}.jsonl"
    choices = tuple(f"a{k}" for k in range(n_choices))
    out = []
    for i, e in enumerate(_entries(path, ("qid", "vid_name", "q", "ts", *choices))):
        listed = " ".join(f"{a}: {text_field(e, a, path, i).strip('. ')}." for a in choices)
        text = " ".join([_video_text(root, source, path, i, e), f"[Q] {text_field(e, 'q', path, i).strip()}",
                         f"[TS] ({e['ts']})",
                         f"[Choices] {listed}"])
        ex = Example(str(e["qid"]), (e["vid_name"],), VIDEO_SOURCES[source][1], text, {}, labelled=False)
        if "answer_idx" in e:
            if e["answer_idx"] not in range(n_choices):
                raise ConfigError(f"{path}: entry {i} has answer_idx {e['answer_idx']!r}; expected 0..{n_choices - 1}")
            ex.reference = f"a{e['answer_idx']}"
            ex.targets, ex.labelled = {ex.reference: 1.0}, True
        out.append(ex)
    return out


def load_video_caption(root: Path, name: str, folder: str, source: str, with_ts: bool) -> list[Example]:
    """TVC / YC2C file `name`: "[Subs] …" (TVC: + " [TS] (ts)") -> one example per desc, whose single
    reference is that desc (the paper scores CIDEr with one reference per desc entry); an entry without
    `descs` (the test files) is one unlabelled example per clip, its uid the clip_id."""
    path = root / VIDEO_ANN / folder / f"{name}.jsonl"
    out = []
    for i, e in enumerate(_entries(path, ("vid_name", "clip_id", *(("ts",) if with_ts else ())))):
        text = _video_text(root, source, path, i, e) + (f" [TS] ({e['ts']})" if with_ts else "")
        meta = {"vid_name": e["vid_name"], "clip_id": e["clip_id"], **({"ts": e["ts"]} if with_ts else {})}
        video = ((e["vid_name"],), VIDEO_SOURCES[source][1], text)
        if "descs" not in e:
            out.append(Example(str(e["clip_id"]), *video, {}, labelled=False, meta=meta))
            continue
        if not isinstance(e["descs"], list) or not e["descs"]:
            raise ConfigError(f"{path}: entry {i} has descs={e['descs']!r:.60}; expected a non-empty list")
        for d in e["descs"]:
            if not isinstance(d, dict) or "desc" not in d or "desc_id" not in d:
                raise ConfigError(f"{path}: entry {i} has a desc without 'desc' or 'desc_id'")
            desc = text_field(d, "desc", path, i)  # as written: the official loader trains on it unstripped
            out.append(Example(str(d["desc_id"]), *video, {desc: 1.0}, [desc], meta=meta))
    return out


# Batch shares, prompts, decoding and each split's files follow the paper's code. GQA's prompt keeps
# the code's typo "gpa: " so runs match the paper. "submit" holds the image tasks' test-server questions
# (VQA test_4, GQA submit); the video tasks' test files are their test-server sets.
TASKS: dict[str, TaskSpec] = {
    "vqa": TaskSpec("vqa", "vqa: ", 1.0, "greedy", "example", True, 20, 10,
                    {"train": ("karpathy_train",), "val": ("karpathy_val",), "test": ("karpathy_test",),
                     "submit": ("test_4",)},
                    load_vqa, "vqa_accuracy"),
    "gqa": TaskSpec("gqa", "gpa: ", 100 / 60, "greedy", "example", False, 20, 10,
                    {"train": ("train", "valid"), "val": ("testdev",), "test": ("testdev",), "submit": ("submit",)},
                    load_gqa, "gqa_accuracy"),
    "nlvr": TaskSpec("nlvr", "nlvr: ", 20 / 60, "true_false", "example", False, None, 4,
                     {"train": ("train",), "val": ("valid",), "test": ("test",)}, load_nlvr, "accuracy"),
    "caption": TaskSpec("caption", "caption: ", 50 / 60, "beam", "token", False, 40, 40,
                        {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}, load_caption, "cider"),
}
# Video tasks: prompt appended, source <= 600 tokens, target <= 20, every task at the
# base batch size, per-example loss; QA answers "aK" by beam search and exact match, captions CIDEr.
_VIDEO = {"batch_scale": 1.0, "loss": "example", "weighted": False, "max_source_len": 600, "max_target_len": 20,
              "prompt_position": "suffix", "feature_format": "npz"}
TASKS |= {
    "tvqa": TaskSpec("tvqa", "tvqa: ", decode="beam_answer", metric="accuracy",
                     splits={"train": ("tvqa_train",), "val": ("tvqa_val",), "test": ("tvqa_test_public", "tvqa_test_release")},
                     load=partial(load_video_qa, folder="tvqa", source="tv", n_choices=5), **_VIDEO),
    "how2qa": TaskSpec("how2qa", "how2qa: ", decode="beam_answer", metric="accuracy",
                       splits={"train": ("how2qa_train_release",), "val": ("how2qa_val_release",),
                               "test": ("how2qa_test_public_release",)},
                       load=partial(load_video_qa, folder="how2qa", source="how2", n_choices=4), **_VIDEO),
    "tvc": TaskSpec("tvc", "tvc: ", decode="beam", metric="cider",
                    splits={"train": ("tvc_train_release",), "val": ("tvc_val_release",), "test": ("tvc_test_release",)},
                    load=partial(load_video_caption, folder="tvc", source="tv", with_ts=True), **_VIDEO),
    "yc2c": TaskSpec("yc2c", "yc2c: ", decode="beam", metric="cider",
                     splits={"train": ("yc2c_train_release",), "val": ("yc2c_val_release",), "test": ("yc2c_test_release",)},
                     load=partial(load_video_caption, folder="yc2c", source="yc2", with_ts=False), **_VIDEO),
}


def get_task(name: str) -> TaskSpec:
    """The TaskSpec registered under `name`."""
    if name not in TASKS:
        raise unknown("task", name, TASKS)
    return TASKS[name]


# Splits trained on or scored during a run: every entry of their files must carry its label.
LABELLED_SPLITS = ("train", "val")


def load_examples(task: TaskSpec, root: str | Path, split: Split) -> list[Example]:
    """All examples of one task and split (the union of its annotation files, in order)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"data.root={str(root)!r}: no such directory; point it at the datasets root (see README)")
    if split not in task.splits:
        raise unknown(f"{task.name} split", split, task.splits)
    out = []
    for name in task.splits[split]:
        examples = task.load(root, name)
        unlabelled = [ex.uid for ex in examples if not ex.labelled]
        if unlabelled and split in LABELLED_SPLITS:
            raise ConfigError(f"{task.name} {split} split: {len(unlabelled)} of {len(examples)} examples of {name} have "
                              f"no label (first: {unlabelled[0]}); a {split} split is trained on or scored, so each "
                              "entry needs its label field (docs/data.md lists them)")
        out += examples
    return out
