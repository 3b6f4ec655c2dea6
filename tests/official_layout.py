"""A tiny dataset written by hand in the layout and with the keys the paper's official loaders read
(HenryHZY/VL-PET `src/*_clip_data.py`, `src/video/*_data.py`), independent of the synthetic generators,
with the real files' edge cases: unanswerable VQA questions (`label: {}`), a VQA entry with `question` and
no `sent`, answers split over the train2014 and val2014 annotation files, unlabelled test-server files
(VQA test_4, GQA submit, the video test files), blank subtitle lines and videos without subtitles.

Features are FEAT_DIM-wide and a function of their id (`image_features`, `video_frames`), so a test can
check that the loaders return each file's own values.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FEAT_DIM = 16
COCO, VG, GQA, NLVR = ("COCO/clip_features/data_clip_RN101_att", "VG/clip_features/data_clip_RN101_att",
                       "GQA/clip_features/data_clip_RN101_att", "nlvr/clip_features/data_clip_RN101_att")
TV, HOW2, YC2 = "video/vis_features/tv/clip-vit", "video/vis_features/how2/clip-vit", "video/vis_features/yc2/clip-vit"

TRAIN9, TRAIN25, VAL42, VAL73, VAL74, TEST1 = ("COCO_train2014_000000000009", "COCO_train2014_000000000025",
                                               "COCO_val2014_000000000042", "COCO_val2014_000000000073",
                                               "COCO_val2014_000000000074", "COCO_test2015_000000000001")
FRIENDS, CASTLE, HOUSE = "friends_s01e01_seg02_clip_00", "castle_s01e02_seg01_clip_01", "house_s02e03_seg02_clip_05"
HOW2_A, HOW2_B = "how2_vid1_0_30", "how2_vid2_30_60"
YC2_A, YC2_B = "yc2_abc_0", "yc2_def_1"
FRAMES = {FRIENDS: 70, CASTLE: 3, HOUSE: 64, HOW2_A: 5, HOW2_B: 100, YC2_A: 64, YC2_B: 2}  # pad, pool, as is


def _ten(*answers: str) -> list[dict[str, Any]]:
    return [{"answer": a, "answer_confidence": "yes", "answer_id": k + 1} for k, a in enumerate(answers)]


VQA = {
    "karpathy_train": [
        {"img_id": TRAIN9, "question_id": 9000, "sent": "What color is the bus?", "label": {"red": 1, "orange": 0.3},
         "answer_type": "other", "question_type": "what color is", "is_topk_optimal": True},
        {"img_id": TRAIN25, "question_id": 25000, "sent": "What does the sign say?", "label": {},
         "answer_type": "other", "question_type": "what", "is_topk_optimal": False},  # unanswerable
        {"img_id": VAL42, "question_id": 42000, "question": "How many dogs are there?", "label": {"2": 1}},  # no sent
    ],
    "karpathy_val": [
        {"img_id": VAL73, "question_id": 73000, "sent": "Is it raining?", "label": {"yes": 1}},
        {"img_id": VAL73, "question_id": 73001, "sent": "Why is he smiling?", "label": {}},  # unanswerable
    ],
    "karpathy_test": [
        {"img_id": VAL74, "question_id": 74000, "question": "What is the man holding?",
         "label": {"umbrella": 0.9, "an umbrella": 0.3}},
    ],
    "test_4": [  # test-server questions: no label
        {"img_id": TEST1, "question_id": 1000, "sent": "What animal is this?"},
        {"img_id": TEST1, "question_id": 1001, "question": "Is the sky blue?"},
    ],
}
# Human answers. 73000 is in both files (val2014's wins in the official merge); 73001's are in train2014 only.
VQA_ANSWERS = {
    "train2014": {9000: _ten(*["red"] * 7, *["orange"] * 3),
                  25000: _ten("stop", "yield", "exit", "slow", "go", "no", "left", "right", "one", "way"),
                  73000: _ten(*["no"] * 10),
                  73001: _ten("happy", "happy", "joke", "he", "is", "happy", "because", "fun", "happy", "joy")},
    "val2014": {42000: _ten(*["2"] * 9, "two"), 73000: _ten(*["yes"] * 8, "no", "yes"),
                74000: _ten(*["umbrella"] * 6, *["an umbrella"] * 2, "stick", "umbrella")},
}
GQA_FILES = {
    "train": [{"img_id": "2375429", "question_id": "07333408", "sent": "What is on the white wall?",
               "label": {"pipe": 1.0}}],
    "valid": [{"img_id": "2375430", "question_id": "07333409", "sent": "Is the cup empty?", "label": {}}],
    "testdev": [{"img_id": "n161313", "question_id": "201307251", "sent": "Is the sky cloudy?", "label": {"yes": 1.0}}],
    "submit": [{"img_id": "n161314", "question_id": "201640614", "sent": "Who is wearing a hat?"}],
}
NLVR_FILES = {
    split: [{"identifier": f"{split}-10171-{k}-0", "img0": f"{split}-10171-{k}-img0", "img1": f"{split}-10171-{k}-img1",
             "label": k % 2, "sent": f"An image shows {k + 1} leather pencil cases.", "uid": f"nlvr2_{split}_{k}"}
            for k in range(2)]
    for split in ("train", "valid", "test")
}
COCO_CAPTIONS = [  # Karpathy's dataset_coco.json: raw sentences keep their stray spaces
    {"filename": f"{TRAIN9}.jpg", "split": "train", "sentences": [{"raw": "A red bus. "}, {"raw": " A bus on a street."}]},
    {"filename": f"{VAL42}.jpg", "split": "restval", "sentences": [{"raw": "Two dogs play."}]},
    {"filename": f"{VAL73}.jpg", "split": "val", "sentences": [{"raw": "A man in the rain."}, {"raw": "A smiling man."}]},
    {"filename": f"{VAL74}.jpg", "split": "test", "sentences": [{"raw": "A man holds an umbrella ."}]},
]
SUBTITLES = {
    "tv": [{"vid_name": FRIENDS, "sub": [{"start": 0.0, "end": 1.5, "text": "Hi there. "},
                                         {"start": 1.5, "end": 2.0, "text": "   "},  # a blank line
                                         {"start": 2.0, "end": 3.0, "text": "How are you?"}]},
           {"vid_name": CASTLE, "sub": []},  # a video without subtitles
           {"vid_name": HOUSE, "sub": [{"start": 0.0, "end": 2.0, "text": "It's never lupus."}]}],
    "how2": [{"vid_name": HOW2_A, "sub": [{"start": 0.0, "end": 4.0, "text": "take the knife"}]},
             {"vid_name": HOW2_B, "sub": []}],
    "yc2": [{"vid_name": YC2_A, "sub": [{"start": 0.0, "end": 3.0, "text": " add salt "}]},
            {"vid_name": YC2_B, "sub": []}],
}


def _tvqa(qid: int, vid: str, answer: int | None) -> dict[str, Any]:
    entry = {"qid": qid, "vid_name": vid, "show_name": vid.split("_")[0], "q": " What does he say? ",
             "a0": "Hello.", "a1": "Bye", "a2": "Nothing. ", "a3": "Yes.", "a4": "No", "ts": "10.5-20.3"}
    return entry if answer is None else {**entry, "answer_idx": answer}


def _how2qa(qid: str, vid: str, answer: int | None) -> dict[str, Any]:
    entry = {"qid": qid, "vid_name": vid, "q": "What is cut?", "a0": "bread", "a1": "an onion.", "a2": "cake",
             "a3": "meat", "ts": "0.0-30.0"}
    return entry if answer is None else {**entry, "answer_idx": answer}


VIDEO_FILES = {
    "tvqa/tvqa_train": [_tvqa(1, FRIENDS, 2)],
    "tvqa/tvqa_val": [_tvqa(2, CASTLE, 0)],
    "tvqa/tvqa_test_public": [_tvqa(3, HOUSE, None)],
    "tvqa/tvqa_test_release": [_tvqa(4, FRIENDS, None)],
    "how2qa/how2qa_train_release": [_how2qa("how2qa_1", HOW2_A, 1)],
    "how2qa/how2qa_val_release": [_how2qa("how2qa_2", HOW2_B, 3)],
    "how2qa/how2qa_test_public_release": [_how2qa("how2qa_3", HOW2_A, None)],
    "tvc/tvc_train_release": [{"vid_name": FRIENDS, "duration": 61.3, "ts": [10.0, 14.5], "clip_id": 1001,
                               "descs": [{"desc": "Ross hugs Rachel.", "desc_id": 5001, "type": "v"},
                                         {"desc": " Rachel laughs ", "desc_id": 5002, "type": "t"}]}],
    "tvc/tvc_val_release": [{"vid_name": CASTLE, "duration": 40.0, "ts": [1.0, 3.0], "clip_id": 1002,
                             "descs": [{"desc": "Castle opens a door.", "desc_id": 5003, "type": "v"}]}],
    "tvc/tvc_test_release": [{"vid_name": HOUSE, "duration": 50.0, "ts": [2.5, 9.0], "clip_id": 1003},
                             {"vid_name": FRIENDS, "duration": 61.3, "ts": [30.0, 33.0], "clip_id": 1004}],
    "yc2c/yc2c_train_release": [{"vid_name": YC2_A, "duration": 12.0, "clip_id": 2001,
                                 "descs": [{"desc": "add salt to the pan", "desc_id": 6001}]}],
    "yc2c/yc2c_val_release": [{"vid_name": YC2_B, "duration": 8.0, "clip_id": 2002,
                               "descs": [{"desc": "stir the soup", "desc_id": 6002}]}],
    "yc2c/yc2c_test_release": [{"vid_name": YC2_A, "duration": 12.0, "clip_id": 2003}],
}


def _values(key: str, shape: tuple[int, int]) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float16)


def image_features(img_id: str) -> np.ndarray:
    """The [49, FEAT_DIM] float16 grid written for `img_id`."""
    return _values(img_id, (49, FEAT_DIM))


def video_frames(vid_name: str) -> np.ndarray:
    """The [T, FEAT_DIM] float32 frames written for `vid_name`."""
    return _values(vid_name, (FRAMES[vid_name], FEAT_DIM)).astype(np.float32)


def _json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))


def _h5(directory: Path, img_id: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with h5py.File(directory / f"{img_id}.h5", "w") as f:
        f.create_group(img_id).create_dataset("features", data=image_features(img_id))


def write_official_layout(root: Path) -> Path:
    """Write every file above under `root` (the datasets root); returns it."""
    for name, entries in VQA.items():
        _json(root / "vqa" / f"{name}.json", entries)
    for year, answers in VQA_ANSWERS.items():
        _json(root / "vqa" / f"v2_mscoco_{year}_annotations.json",
              {"annotations": [{"question_id": q, "answers": a, "question_type": "what", "answer_type": "other"}
                               for q, a in answers.items()]})
    for img_id in (TRAIN9, TRAIN25, VAL42, VAL73, VAL74, TEST1):
        _h5(root / COCO, img_id)
    for name, entries in GQA_FILES.items():
        _json(root / "GQA" / f"{name}.json", entries)
        for e in entries:
            _h5(root / (VG if name in ("train", "valid") else GQA), e["img_id"])
    for name, entries in NLVR_FILES.items():
        _json(root / "nlvr" / f"{name}.json", entries)
        for e in entries:
            _h5(root / NLVR, e["img0"])
            _h5(root / NLVR, e["img1"])
    _json(root / "COCO" / "dataset_coco.json", {"images": COCO_CAPTIONS, "dataset": "coco"})
    for source, rows in SUBTITLES.items():
        _jsonl(root / "video" / "ann" / f"{source}_subtitles.jsonl", rows)
    for name, rows in VIDEO_FILES.items():
        _jsonl(root / "video" / "ann" / f"{name}.jsonl", rows)
    for directory, videos in ((TV, (FRIENDS, CASTLE, HOUSE)), (HOW2, (HOW2_A, HOW2_B)), (YC2, (YC2_A, YC2_B))):
        (root / directory).mkdir(parents=True, exist_ok=True)
        for vid in videos:
            np.savez(root / directory / f"{vid}.npz", features=video_frames(vid))
    return root
