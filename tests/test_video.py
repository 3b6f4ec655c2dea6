"""Video-text tasks: the real loaders on generated data in the paper's video layout, frame padding and
pooling, bad input, a tiny multi-task video run that beats chance, and the video study configs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from studies.plan.study_config import load_study, study_from_dict
from tests.conftest import SMALL_VIDEO
from vlpet.data import DataConfig, build_dataset, build_loader, get_task, load_examples
from vlpet.data.features import NpzFrameStore, fit_frames
from vlpet.data.synthetic_video import SyntheticVideoConfig, ensure_video_benchmark, generate_video
from vlpet.data.tasks import VIDEO_ANN, VIDEO_SOURCES
from vlpet.errors import ConfigError
from vlpet.train.config import load_yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "studies" / "configs"
N_VIDEOS = dict(zip(("train", "val", "test"), SMALL_VIDEO.videos))
Q = SMALL_VIDEO.questions_per_video
# examples per split implied by SMALL_VIDEO: questions per video (QA), two descs (TVC), one desc (YC2C)
PER_VIDEO = {"tvqa": Q, "how2qa": Q, "tvc": 2, "yc2c": 1}
TV_FEATS = VIDEO_SOURCES["tv"][1]


def _dataset(root: Path, task: str, split: str = "train", feat_dim: int = 16):
    return build_dataset(DataConfig(root=str(root), tasks=(task,)), get_task(task), split, feat_dim)


@pytest.mark.parametrize("task", sorted(PER_VIDEO))
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_loaders_read_generated_video_data(video_bench, task, split):
    ds = _dataset(video_bench, task, split)
    assert len(ds) == N_VIDEOS[split] * PER_VIDEO[task]
    ex, feats, target, weight = ds[0]
    assert feats.shape == (1, 64, 16) and feats.dtype == np.float32 and weight == 1.0
    assert target in ex.targets and ex.text.startswith("[Subs] ")
    if task in ("tvqa", "how2qa"):
        n = 5 if task == "tvqa" else 4
        assert target == ex.reference and target in {f"a{k}" for k in range(n)}
        assert "[Q] " in ex.text and "[TS] (" in ex.text and f" a{n - 1}: " in ex.text and f" a{n}: " not in ex.text
    else:
        assert ex.reference == [target]  # one reference per desc
        assert ("[TS] ([" in ex.text) == (task == "tvc")  # TVC's ts is a [start, end] list, YC2C has none
    ds.check_features()


def test_frames_are_zero_padded_or_max_pooled_to_64():
    rng = np.random.default_rng(0)
    for length in (1, 40, 64, 65, 96, 200):
        frames = rng.random((length, 8)).astype(np.float32)
        out = fit_frames(frames)
        assert out.shape == (64, 8)
        if length <= 64:
            assert np.array_equal(out[:length], frames) and not out[length:].any()
        else:
            pooled = torch.nn.functional.adaptive_max_pool1d(torch.from_numpy(frames).T[None], 64)[0].T
            np.testing.assert_array_equal(out, pooled.numpy())


def test_generated_videos_exercise_padding_and_pooling(video_bench):
    lengths = [np.load(p)["features"].shape for p in (video_bench / TV_FEATS).glob("*.npz")]
    assert all(d == 16 for _, d in lengths)
    assert min(t for t, _ in lengths) < 64 < max(t for t, _ in lengths)


def test_video_prompt_is_appended_and_image_prompt_prepended(video_bench, bench, tokenizer):
    cfg = DataConfig(root=str(video_bench), tasks=("how2qa",), batch_size=4)
    batch = next(iter(build_loader(cfg, _dataset(video_bench, "how2qa"), tokenizer, "train")))
    assert batch.inputs.vis_feats.shape == (4, 1, 64, 16)
    for text, ex in zip(tokenizer.batch_decode(batch.inputs.input_ids, skip_special_tokens=True), batch.examples):
        assert text.startswith("[subs]") and text.rstrip().endswith("how2qa:")
        assert tokenizer.decode(tokenizer(f"{ex.text} how2qa: ").input_ids, skip_special_tokens=True) == text
    image = DataConfig(root=str(bench), tasks=("vqa",), batch_size=4)
    batch = next(iter(build_loader(image, build_dataset(image, get_task("vqa"), "train", 16), tokenizer, "train")))
    assert all(t.startswith("vqa:") for t in tokenizer.batch_decode(batch.inputs.input_ids, skip_special_tokens=True))


def test_generation_is_deterministic_and_answers_are_balanced(video_bench, tmp_path):
    again = generate_video(tmp_path, SMALL_VIDEO)
    for path in (video_bench / VIDEO_ANN).rglob("*.jsonl"):
        assert (again / path.relative_to(video_bench)).read_text() == path.read_text()
    big = generate_video(tmp_path / "big", SyntheticVideoConfig(feat_dim=4, videos=(200, 0, 0)))
    for task, n in (("tvqa", 5), ("how2qa", 4)):
        counts = np.bincount([int(ex.reference[1]) for ex in load_examples(get_task(task), big, "train")], minlength=n)
        assert counts.min() > 0.7 * counts.mean()  # every position about equally often: chance is 1/n


def test_ensure_video_benchmark_generates_once_and_regenerates_on_change(tmp_path):
    cfg = SyntheticVideoConfig(feat_dim=4, videos=(2, 1, 1))
    root = ensure_video_benchmark(tmp_path / "v", cfg)
    stamp = (root / "embedded_benchmark.json").stat().st_mtime_ns
    assert ensure_video_benchmark(root, cfg) == root and (root / "embedded_benchmark.json").stat().st_mtime_ns == stamp
    ensure_video_benchmark(root, SyntheticVideoConfig(feat_dim=8, videos=(2, 1, 1)))
    assert np.load(next((root / TV_FEATS).glob("*.npz")))["features"].shape[1] == 8
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary directory left


def _corrupt_copy(video_bench: Path, tmp_path: Path) -> Path:
    root = tmp_path / "bad"
    shutil.copytree(video_bench, root)
    return root


def test_missing_frame_file_names_file_and_shape(video_bench, tmp_path):
    root = _corrupt_copy(video_bench, tmp_path)
    vid = load_examples(get_task("tvqa"), root, "train")[0].images[0]
    (root / TV_FEATS / f"{vid}.npz").unlink()
    with pytest.raises(ConfigError, match=rf"{vid}\.npz: missing frame feature file .*\[T, 16\]"):
        _dataset(root, "tvqa").check_features()


def test_wrong_frame_feature_dimension_names_key_and_expected_shape(video_bench, tmp_path):
    root = _corrupt_copy(video_bench, tmp_path)
    np.savez(root / TV_FEATS / "tv_train_00000.npz", features=np.zeros((50, 8), np.float16))
    with pytest.raises(ConfigError, match=r"tv_train_00000\.npz: features has shape \[50, 8\], expected \[T, 16\]"):
        NpzFrameStore(root / TV_FEATS, 16)("tv_train_00000")
    with pytest.raises(ConfigError, match=r"tv_train_00001\.npz: features has shape \[\d+, 16\], expected \[T, 512\]"):
        NpzFrameStore(root / TV_FEATS, 512)("tv_train_00001")
    np.savez(root / TV_FEATS / "tv_train_00002.npz", frames=np.zeros((50, 16), np.float16))
    with pytest.raises(ConfigError, match=r"tv_train_00002\.npz: no array 'features'; found keys \['frames'\]"):
        NpzFrameStore(root / TV_FEATS, 16)("tv_train_00002")


def test_video_without_subtitles_names_the_subtitle_file_and_video(video_bench, tmp_path):
    root = _corrupt_copy(video_bench, tmp_path)
    subs = root / VIDEO_SOURCES["how2"][0]
    lines = subs.read_text().splitlines()
    vid = json.loads(lines[0])["vid_name"]
    subs.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(ConfigError, match=rf"how2_subtitles\.jsonl: no subtitles for video '{vid}' "
                                          r"\(used by how2qa_train_release\.jsonl entry 0\)"):
        load_examples(get_task("how2qa"), root, "train")


def _train_file_without(root: Path, task: str, field: str) -> Path:
    """`task`'s train file in `root` with `field` removed from its entry 1; returns the file."""
    path = root / VIDEO_ANN / task / f"{get_task(task).splits['train'][0]}.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    del rows[1][field]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("task, field", [("tvqa", "qid"), ("how2qa", "a3"), ("tvc", "ts"), ("yc2c", "clip_id")])
def test_annotation_without_required_field_names_file_entry_and_field(video_bench, tmp_path, task, field):
    root = _corrupt_copy(video_bench, tmp_path)
    path = _train_file_without(root, task, field)
    with pytest.raises(ConfigError, match=rf"{path.name}: entry 1 has no field '{field}'"):
        load_examples(get_task(task), root, "train")


@pytest.mark.parametrize("task, field", [("tvqa", "answer_idx"), ("yc2c", "descs")])
def test_train_entry_without_its_label_names_the_file_and_the_entry(video_bench, tmp_path, task, field):
    """An unlabelled entry is a test-server entry: read for --predict, refused where a run trains or scores."""
    root = _corrupt_copy(video_bench, tmp_path)
    path = _train_file_without(root, task, field)
    with pytest.raises(ConfigError, match=rf"{task} train split: 1 of \d+ examples of {path.stem} have no label"):
        load_examples(get_task(task), root, "train")


def test_malformed_jsonl_line_and_bad_answer_index(video_bench, tmp_path):
    root = _corrupt_copy(video_bench, tmp_path)
    path = root / VIDEO_ANN / "tvqa" / "tvqa_val.jsonl"
    rows = path.read_text().splitlines()
    path.write_text("\n".join([rows[0], "{not json", *rows[2:]]))
    with pytest.raises(ConfigError, match=r"tvqa_val\.jsonl: line 2 is not valid JSON"):
        load_examples(get_task("tvqa"), root, "val")
    bad = json.loads(rows[0]) | {"answer_idx": 5}
    path.write_text(json.dumps(bad) + "\n")
    with pytest.raises(ConfigError, match=r"tvqa_val\.jsonl: entry 0 has answer_idx 5; expected 0\.\.4"):
        load_examples(get_task("tvqa"), root, "val")


def test_synthetic_data_cannot_mix_image_and_video_tasks():
    with pytest.raises(ConfigError, match="mixes image and video tasks"):
        DataConfig(tasks=("vqa", "tvqa"), synthetic=True)
    DataConfig(tasks=("vqa", "tvqa"))  # real data: one root holds both layouts


def test_embedded_video_study_config_loads():
    study = load_study(CONFIGS / "embedded_video.yaml")
    assert study.template.data.tasks == ("tvqa", "how2qa", "tvc", "yc2c") and study.template.data.synthetic
    assert (study.template.backbone.feat_dim, study.template.backbone.n_boxes) == (128, 64)


def test_paper_video_study_config_validates_with_a_bart_base_stand_in():
    """The paper config names facebook/bart-base (hub, offline here): validate everything else with the
    bart-base preset, which has the same architecture."""
    data = load_yaml(CONFIGS / "paper_video.yaml")
    assert data["run"]["backbone"]["pretrained"] == "facebook/bart-base"
    data["run"]["backbone"] = {**data["run"]["backbone"], "pretrained": None, "arch": "bart-base"}
    study = study_from_dict(data)
    assert len(study.settings.variants) == 10 and study.template.train.lr == 7e-4 and study.template.data.batch_size == 50
    assert (study.template.backbone.feat_dim, study.template.backbone.n_boxes, study.template.train.epochs) == (512, 64, 20)
    start = study.trial_spec("vlpet-large", {"rank": 96, "n_heads": 4, "decoder_rank": 96, "lr": 7e-4})
    assert (start.method.rank, start.method.n_heads, start.method.decoder_rank, start.train.lr) == (96, 4, 96, 7e-4)


@pytest.mark.slow
def test_embedded_video_study_runs_through_frontier_and_reports_video_tasks(tmp_path):
    """`studies/frontier.py --config` with the embedded video study (one short trial), its data a small
    copy of the embedded benchmark read from disk as real data: the results table has every video task's
    score and the report covers them."""
    root = generate_video(tmp_path / "video-data", SyntheticVideoConfig(videos=(12, 4, 4), questions_per_video=1))
    data = load_yaml(CONFIGS / "embedded_video.yaml")
    data["study"].update(variants=["vlpet-large"], trials_per_variant=1, early_stopping="none",
                         paper_reference=False)
    data["run"]["train"]["epochs"] = 1
    data["run"]["data"].update(root=str(root), synthetic=False)
    config = tmp_path / "video.yaml"
    config.write_text(yaml.safe_dump(data))
    study_dir = tmp_path / "study"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "studies" / "frontier.py"), "--config", str(config),
                           "--study-dir", str(study_dir), "--num-cpus", "2"],
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = pd.read_parquet(study_dir / "results.parquet").iloc[-1]
    assert row["status"] == "completed" and row["variant"] == "vlpet-large"
    scores = [row[f"score_{task}"] for task in ("tvqa", "how2qa", "tvc", "yc2c")]
    # the config's average counts CIDEr (tvc, yc2c) at 0.1
    assert all(np.isfinite(scores)) and row["score"] == pytest.approx(np.mean(np.multiply(scores, [1, 1, 0.1, 0.1])))
    report = (study_dir / "report" / "report.md").read_text()
    assert "tvqa" in report and "video-text results table is not available" in report
    assert all((study_dir / "report" / f"frontier_{task}.html").is_file() for task in ("tvqa", "yc2c"))
