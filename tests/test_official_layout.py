"""The loaders on a dataset written in the official layout (tests/official_layout.py): every task and split
yields the examples the paper's official loaders build (ids, texts, targets, references, features);
unanswerable VQA questions train and score; unlabelled test files are predicted from a saved adapter
checkpoint into the files the evaluation servers take."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from studies.predict import main as predict_main
from tests import official_layout as ol
from vlpet.checkpoint import load_pet_model
from vlpet.data import DataConfig, Example, build_dataset, build_loader, get_task, load_examples
from vlpet.data.features import VIDEO_FRAMES
from vlpet.errors import ConfigError
from vlpet.metrics import vqa_accuracy
from vlpet.train.config import RunSpec
from vlpet.train.evaluate import evaluate, predict_loader
from vlpet.train.loop import copy_checkpoint, run_training
from vlpet.train.predict import write_predictions


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    return ol.write_official_layout(tmp_path_factory.mktemp("official"))


def answers(year: str, qid: int) -> list[str]:
    return [a["answer"] for a in ol.VQA_ANSWERS[year][qid]]


def unlabelled(uid: str, images: tuple[str, ...], feats: str, text: str, **meta) -> Example:
    return Example(uid, images, feats, text, {}, labelled=False, meta=meta)


F_SUBS, C_SUBS, H_SUBS = "[Subs] Hi there.  How are you?", "[Subs] ", "[Subs] It's never lupus."  # blank line kept
TVQA_REST = " [Q] What does he say? [TS] (10.5-20.3) [Choices] a0: Hello. a1: Bye. a2: Nothing. a3: Yes. a4: No."
HOW2_REST = " [Q] What is cut? [TS] (0.0-30.0) [Choices] a0: bread. a1: an onion. a2: cake. a3: meat."
TVC_F = {"vid_name": ol.FRIENDS, "clip_id": 1001, "ts": [10.0, 14.5]}

# What the official loaders make of each file (their keys, fallbacks and text templates), by task and split.
OFFICIAL = {
    ("vqa", "train"): [Example("9000", (ol.TRAIN9,), ol.COCO, "What color is the bus?", {"red": 1.0, "orange": 0.3}),
                       Example("25000", (ol.TRAIN25,), ol.COCO, "What does the sign say?", {}),
                       Example("42000", (ol.VAL42,), ol.COCO, "How many dogs are there?", {"2": 1.0})],
    ("vqa", "val"): [Example("73000", (ol.VAL73,), ol.COCO, "Is it raining?", {"yes": 1.0}, answers("val2014", 73000)),
                     Example("73001", (ol.VAL73,), ol.COCO, "Why is he smiling?", {}, answers("train2014", 73001))],
    ("vqa", "test"): [Example("74000", (ol.VAL74,), ol.COCO, "What is the man holding?",
                              {"umbrella": 0.9, "an umbrella": 0.3}, answers("val2014", 74000))],
    ("vqa", "submit"): [unlabelled("1000", (ol.TEST1,), ol.COCO, "What animal is this?"),
                        unlabelled("1001", (ol.TEST1,), ol.COCO, "Is the sky blue?")],
    ("gqa", "train"): [Example("07333408", ("2375429",), ol.VG, "What is on the white wall?", {"pipe": 1.0}, {"pipe": 1.0}),
                       Example("07333409", ("2375430",), ol.VG, "Is the cup empty?", {}, {})],
    ("gqa", "val"): [Example("201307251", ("n161313",), ol.GQA, "Is the sky cloudy?", {"yes": 1.0}, {"yes": 1.0})],
    ("gqa", "test"): [Example("201307251", ("n161313",), ol.GQA, "Is the sky cloudy?", {"yes": 1.0}, {"yes": 1.0})],
    ("gqa", "submit"): [unlabelled("201640614", ("n161314",), ol.GQA, "Who is wearing a hat?")],
    **{("nlvr", split): [Example(f"{name}-10171-{k}-0", (f"{name}-10171-{k}-img0", f"{name}-10171-{k}-img1"), ol.NLVR,
                                 f"An image shows {k + 1} leather pencil cases.", {answer: 1.0}, answer)
                         for k, answer in enumerate(("false", "true"))]
       for split, name in (("train", "train"), ("val", "valid"), ("test", "test"))},
    ("caption", "train"): [
        Example(f"{ol.TRAIN9}#0", (ol.TRAIN9,), ol.COCO, "", {"A red bus.": 1.0}, ["A red bus.", "A bus on a street."]),
        Example(f"{ol.TRAIN9}#1", (ol.TRAIN9,), ol.COCO, "", {"A bus on a street.": 1.0},
                ["A red bus.", "A bus on a street."]),
        Example(f"{ol.VAL42}#0", (ol.VAL42,), ol.COCO, "", {"Two dogs play.": 1.0}, ["Two dogs play."])],
    ("caption", "val"): [Example(ol.VAL73, (ol.VAL73,), ol.COCO, "", {"A man in the rain.": 1.0},
                                 ["A man in the rain.", "A smiling man."])],
    ("caption", "test"): [Example(ol.VAL74, (ol.VAL74,), ol.COCO, "", {"A man holds an umbrella .": 1.0},
                                  ["A man holds an umbrella ."])],
    ("tvqa", "train"): [Example("1", (ol.FRIENDS,), ol.TV, F_SUBS + TVQA_REST, {"a2": 1.0}, "a2")],
    ("tvqa", "val"): [Example("2", (ol.CASTLE,), ol.TV, C_SUBS + TVQA_REST, {"a0": 1.0}, "a0")],  # no subtitles
    ("tvqa", "test"): [unlabelled("3", (ol.HOUSE,), ol.TV, H_SUBS + TVQA_REST),  # test_public, then test_release
                       unlabelled("4", (ol.FRIENDS,), ol.TV, F_SUBS + TVQA_REST)],
    ("how2qa", "train"): [Example("how2qa_1", (ol.HOW2_A,), ol.HOW2, "[Subs] take the knife" + HOW2_REST, {"a1": 1.0}, "a1")],
    ("how2qa", "val"): [Example("how2qa_2", (ol.HOW2_B,), ol.HOW2, "[Subs] " + HOW2_REST, {"a3": 1.0}, "a3")],
    ("how2qa", "test"): [unlabelled("how2qa_3", (ol.HOW2_A,), ol.HOW2, "[Subs] take the knife" + HOW2_REST)],
    ("tvc", "train"): [  # one example per desc, the desc as written
        Example("5001", (ol.FRIENDS,), ol.TV, F_SUBS + " [TS] ([10.0, 14.5])", {"Ross hugs Rachel.": 1.0},
                ["Ross hugs Rachel."], meta=TVC_F),
        Example("5002", (ol.FRIENDS,), ol.TV, F_SUBS + " [TS] ([10.0, 14.5])", {" Rachel laughs ": 1.0},
                [" Rachel laughs "], meta=TVC_F)],
    ("tvc", "val"): [Example("5003", (ol.CASTLE,), ol.TV, C_SUBS + " [TS] ([1.0, 3.0])", {"Castle opens a door.": 1.0},
                             ["Castle opens a door."], meta={"vid_name": ol.CASTLE, "clip_id": 1002, "ts": [1.0, 3.0]})],
    ("tvc", "test"): [  # one example per clip
        unlabelled("1003", (ol.HOUSE,), ol.TV, H_SUBS + " [TS] ([2.5, 9.0])", vid_name=ol.HOUSE, clip_id=1003, ts=[2.5, 9.0]),
        unlabelled("1004", (ol.FRIENDS,), ol.TV, F_SUBS + " [TS] ([30.0, 33.0])", vid_name=ol.FRIENDS, clip_id=1004,
                   ts=[30.0, 33.0])],
    ("yc2c", "train"): [Example("6001", (ol.YC2_A,), ol.YC2, "[Subs] add salt", {"add salt to the pan": 1.0},
                                ["add salt to the pan"], meta={"vid_name": ol.YC2_A, "clip_id": 2001})],
    ("yc2c", "val"): [Example("6002", (ol.YC2_B,), ol.YC2, "[Subs] ", {"stir the soup": 1.0}, ["stir the soup"],
                              meta={"vid_name": ol.YC2_B, "clip_id": 2002})],
    ("yc2c", "test"): [unlabelled("2003", (ol.YC2_A,), ol.YC2, "[Subs] add salt", vid_name=ol.YC2_A, clip_id=2003)],
}


def test_every_task_and_split_is_covered():
    assert set(OFFICIAL) == {(t, s) for t in ("vqa", "gqa", "nlvr", "caption", "tvqa", "how2qa", "tvc", "yc2c")
                             for s in get_task(t).splits}


@pytest.mark.parametrize("task, split", sorted(OFFICIAL))
def test_examples_are_the_official_loaders(root, task, split):
    assert load_examples(get_task(task), root, split) == OFFICIAL[task, split]


def _expected_features(ex: Example) -> np.ndarray:
    """The official loaders' visual input: each image's grid as written; a video's frames zero-padded or
    adaptive-max-pooled to 64 (their `resize`)."""
    if get_task_of(ex).feature_format == "h5":
        return np.stack([ol.image_features(img).astype(np.float32) for img in ex.images])
    frames = torch.from_numpy(ol.video_frames(ex.images[0]))
    if len(frames) < VIDEO_FRAMES:
        frames = torch.cat([frames, torch.zeros(VIDEO_FRAMES - len(frames), frames.shape[1])])
    elif len(frames) > VIDEO_FRAMES:
        frames = torch.nn.functional.adaptive_max_pool1d(frames.T[None], VIDEO_FRAMES)[0].T
    return frames.numpy()[None]


def get_task_of(ex: Example):
    return get_task("tvqa" if ex.feature_dir.startswith("video/") else "vqa")


@pytest.mark.parametrize("task, split", sorted(OFFICIAL))
def test_features_are_the_files_values(root, task, split):
    ds = build_dataset(DataConfig(root=str(root), tasks=(task,)), get_task(task), split, ol.FEAT_DIM)
    for i in range(len(ds)):
        ex, feats, target, weight = ds[i]
        np.testing.assert_array_equal(feats, _expected_features(ex))
        if not ex.labelled or not any(ex.targets.values()):  # unlabelled / unanswerable: "" with weight 0
            assert (target, weight) == ("", 0.0)
        else:
            assert target in ex.targets and weight > 0


def _spec(root: Path, tokenizer_dir: Path, tasks: tuple[str, ...]) -> RunSpec:
    return RunSpec.from_dict({
        "backbone": {"arch": "tiny-bart", "tokenizer": str(tokenizer_dir), "feat_dim": ol.FEAT_DIM, "n_boxes": 4},
        "method": {"method": "vlpet", "granularity": "large", "rank": 8, "decoder_rank": 4},
        "data": {"root": str(root), "tasks": list(tasks), "batch_size": 4},
        "train": {"epochs": 1, "lr": 1e-3, "log_every": 1000},
        "decode": {"num_beams": 2, "caption_max_length": 8, "answer_max_new_tokens": 3},
    })


def _train(spec: RunSpec, directory: Path) -> dict:
    reports = []
    run_training(spec, lambda metrics, ckpt: (reports.append(dict(metrics)), copy_checkpoint(ckpt, directory)))
    return reports[-1]


@pytest.fixture(scope="module")
def vqa_run(root, tokenizer_dir, tmp_path_factory):
    checkpoint = tmp_path_factory.mktemp("vqa_ckpt")
    return _train(_spec(root, tokenizer_dir, ("vqa",)), checkpoint), checkpoint


def test_a_vqa_run_trains_on_and_scores_unanswerable_questions(root, tokenizer_dir, vqa_run):
    """Training batches carry the unanswerable question (target "", weight 0); the validation score is the
    official VQA accuracy of the predictions against the merged human answers, unanswerable ones included."""
    metrics, checkpoint = vqa_run
    spec = _spec(root, tokenizer_dir, ("vqa",))
    assert np.isfinite(metrics["loss"]) and metrics["steps"] == 1
    train = build_loader(spec.data, build_dataset(spec.data, get_task("vqa"), "train", ol.FEAT_DIM),
                         load_pet_model(checkpoint).tokenizer, "train")
    (batch,) = list(train)
    weights = dict(zip(batch.uids, batch.weights.tolist()))
    assert weights["25000"] == 0.0 and weights["9000"] > 0
    assert (batch.labels[batch.uids.index("25000")] != -100).sum() <= 2  # "" is only the special tokens
    model = load_pet_model(checkpoint)
    val = build_loader(spec.data, build_dataset(spec.data, get_task("vqa"), "val", ol.FEAT_DIM), model.tokenizer, "val")
    preds, _ = predict_loader(model, "vqa", val, model.tokenizer, decode=spec.decode)
    official = {"73000": answers("val2014", 73000), "73001": answers("train2014", 73001)}
    assert metrics["score_vqa"] == pytest.approx(vqa_accuracy(preds, official))
    assert vqa_accuracy({"73001": "happy"}, {"73001": official["73001"]}) == pytest.approx(100.0)  # 3 humans say it
    assert vqa_accuracy({"73001": ""}, {"73001": official["73001"]}) == 0.0


def test_an_unlabelled_split_is_refused_by_training_and_scoring(root, vqa_run, tmp_path):
    _, checkpoint = vqa_run
    cfg = DataConfig(root=str(root), tasks=("vqa",))
    model = load_pet_model(checkpoint)
    submit = build_loader(cfg, build_dataset(cfg, get_task("vqa"), "submit", ol.FEAT_DIM), model.tokenizer, "val")
    with pytest.raises(ConfigError, match="vqa: example 1000 has no label, so it cannot be scored; .*vlpet-predict"):
        evaluate(model, {"vqa": submit}, model.tokenizer)
    bad = ol.write_official_layout(tmp_path)
    (bad / "vqa" / "karpathy_val.json").write_text(json.dumps([{"img_id": ol.VAL73, "question_id": 73000, "sent": "x"}]))
    with pytest.raises(ConfigError, match=r"vqa val split: 1 of 1 examples of karpathy_val have no label \(first: 73000\)"):
        load_examples(get_task("vqa"), bad, "val")
    (bad / "vqa" / "karpathy_val.json").write_text(json.dumps([{"img_id": ol.VAL73, "question_id": 73000, "label": {}}]))
    with pytest.raises(ConfigError, match=r"karpathy_val.json: entry 0 has neither 'sent' nor 'question'"):
        load_examples(get_task("vqa"), bad, "val")
    (bad / "vqa" / "v2_mscoco_train2014_annotations.json").unlink()
    with pytest.raises(ConfigError, match=r"v2_mscoco_train2014_annotations.json: annotation file not found"):
        load_examples(get_task("vqa"), bad, "test")


def test_image_test_server_files(root, vqa_run, tmp_path):
    """VQA and GQA submit, NLVR2 and COCO test predicted by the VQA run's (shared) modules, in each server's form."""
    _, checkpoint = vqa_run
    model = load_pet_model(checkpoint)
    decode = _spec(root, Path(model.backbone_config.tokenizer), ("vqa",)).decode
    written = write_predictions(model, DataConfig(root=str(root), tasks=("vqa", "gqa")), "submit", tmp_path, decode)
    assert [p.name for p in written] == ["vqa_submit_predictions.json", "gqa_submit_predictions.json"]
    vqa = json.loads(written[0].read_text())
    assert [v["question_id"] for v in vqa] == [1000, 1001] and all(set(v) == {"question_id", "answer"} for v in vqa)
    gqa = json.loads(written[1].read_text())
    assert [set(g) for g in gqa] == [{"questionId", "prediction"}] and gqa[0]["questionId"] == "201640614"
    nlvr, caption = write_predictions(model, DataConfig(root=str(root), tasks=("nlvr", "caption")), "test", tmp_path,
                                      decode)
    rows = [line.split(",") for line in nlvr.read_text().splitlines()]
    assert [r[0] for r in rows] == ["test-10171-0-0", "test-10171-1-0"] and {r[1] for r in rows} <= {"True", "False"}
    assert [(c["image_id"], type(c["caption"])) for c in json.loads(caption.read_text())] == [(74, str)]


def test_predict_writes_the_video_test_server_files_from_a_saved_checkpoint(root, tokenizer_dir, tmp_path, capsys):
    """TVQA's test_public + test_release and TVC's test_release carry no answers; vlpet-predict over the run's
    adapter checkpoint writes {qid: answer index} and one JSON line per clip, as the paper's code does."""
    spec = _spec(root, tokenizer_dir, ("tvqa", "tvc"))
    _train(spec, tmp_path / "ckpt")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(spec.to_dict()))
    assert predict_main([str(tmp_path / "ckpt"), "--config", str(config), "--split", "test",
                         "--output", str(tmp_path / "out"), "--device", "cpu"]) == 0
    assert "wrote " in capsys.readouterr().out
    tvqa = json.loads((tmp_path / "out" / "tvqa_test_predictions.json").read_text())
    assert list(tvqa) == ["3", "4"] and all(v in range(5) for v in tvqa.values())
    lines = [json.loads(line) for line in (tmp_path / "out" / "tvc_test_predictions.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in line.items() if k != "descs"} for line in lines] == [
        {"vid_name": ol.HOUSE, "clip_id": 1003, "ts": [2.5, 9.0]}, {"vid_name": ol.FRIENDS, "clip_id": 1004, "ts": [30.0, 33.0]}]
    model = load_pet_model(tmp_path / "ckpt")
    test = build_loader(spec.data, build_dataset(spec.data, get_task("tvc"), "test", ol.FEAT_DIM), model.tokenizer, "val")
    preds, _ = predict_loader(model, "tvc", test, model.tokenizer, decode=spec.decode)
    assert [line["descs"] for line in lines] == [[{"desc": preds["1003"]}], [{"desc": preds["1004"]}]]
