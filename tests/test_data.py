"""The data layer: real loaders on generated data in the paper's formats, batching, bad input."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import SMALL
from vlpet.data import DataConfig, MultitaskLoader, build_dataset, build_loader, get_task, load_examples
from vlpet.data.features import H5FeatureStore
from vlpet.data.synthetic import SyntheticConfig, generate
from vlpet.data.tasks import COCO_FEATS, NLVR_FEATS
from vlpet.errors import ConfigError

EXPECTED_COUNTS = {  # examples per (task, split) implied by SMALL
    ("vqa", "train"): 24, ("vqa", "val"): 8, ("vqa", "test"): 8,
    ("gqa", "train"): 16, ("gqa", "val"): 8,
    ("nlvr", "train"): 16, ("nlvr", "val"): 6, ("nlvr", "test"): 6,
    ("caption", "train"): 60, ("caption", "val"): 4, ("caption", "test"): 4,
}


@pytest.mark.parametrize("task, split", sorted(EXPECTED_COUNTS))
def test_real_loaders_read_generated_data(bench, task, split):
    ds = build_dataset(DataConfig(root=str(bench), tasks=(task,)), get_task(task), split, feat_dim=16)
    assert len(ds) == EXPECTED_COUNTS[(task, split)]
    ex, feats, target, weight = ds[0]
    n_img = 2 if task == "nlvr" else 1
    assert feats.shape == (n_img, 49, 16) and feats.dtype == np.float32
    assert target in ex.targets and 0 < weight <= 1
    ds.check_features()
    if task == "vqa" and split != "train":
        assert len(ex.reference) == 10  # the official 10 human answers
    if task == "caption":
        assert len(ex.reference) == 5


def test_real_feature_shape_and_lazy_reads(tmp_path):
    cfg = SyntheticConfig(feat_dim=2048, coco_train=2, coco_eval=1, vg_images=1, gqa_testdev=1, nlvr_images=2,
                          nlvr_pairs=(1, 1, 1), questions_per_image=1)
    root = generate(tmp_path, cfg)
    img = next((root / COCO_FEATS).glob("*.h5"))
    with h5py.File(img) as f:
        assert f[f"{img.stem}/features"].shape == (49, 2048) and f[f"{img.stem}/features"].dtype == np.float16
    assert H5FeatureStore(root / COCO_FEATS, 2048)(img.stem).shape == (49, 2048)


def test_answers_and_captions_are_functions_of_the_scene(bench):
    """Two questions on the same image with the same text always have the same best answer."""
    seen: dict[tuple[str, str], str] = {}
    for ex in load_examples(get_task("vqa"), bench, "train"):
        best = max(ex.targets, key=ex.targets.get)
        assert seen.setdefault((ex.images[0], ex.text), best) == best
    nlvr = Counter(ex.reference for ex in load_examples(get_task("nlvr"), bench, "train"))
    assert min(nlvr.values()) >= 4  # both labels occur: the generator balances them


def test_generation_is_deterministic(tmp_path, bench):
    again = generate(tmp_path, SMALL)
    for rel in ("vqa/karpathy_train.json", "nlvr/train.json", "COCO/dataset_coco.json", "GQA/testdev.json"):
        assert (again / rel).read_text() == (bench / rel).read_text()
    name = next((bench / NLVR_FEATS).glob("*.h5")).name
    with h5py.File(again / NLVR_FEATS / name) as a, h5py.File(bench / NLVR_FEATS / name) as b:
        key = f"{Path(name).stem}/features"
        assert np.array_equal(a[key][()], b[key][()])


def test_collate_adds_prompt_masks_padding_and_weights(bench, tokenizer):
    cfg = DataConfig(root=str(bench), tasks=("vqa",), batch_size=8)
    loader = build_loader(cfg, build_dataset(cfg, get_task("vqa"), "train", 16), tokenizer, "train")
    batch = next(iter(loader))
    texts = tokenizer.batch_decode(batch.inputs.input_ids, skip_special_tokens=True)
    assert all(t.startswith("vqa:") for t in texts)
    assert batch.inputs.vis_feats.shape == (8, 1, 49, 16)
    for ex, row in zip(batch.examples, batch.labels.tolist()):  # labels: the target, padding as -100
        ids = [i for i in row if i != -100]
        assert row[len(ids):] == [-100] * (len(row) - len(ids))
        assert tokenizer.decode(ids, skip_special_tokens=True) in ex.targets
    for ex, w in zip(batch.examples, batch.weights.tolist()):
        assert w in [pytest.approx(v) for v in ex.targets.values()]
    no_prompt = DataConfig(root=str(bench), tasks=("vqa",), batch_size=8, task_prompts=False)
    batch = next(iter(build_loader(no_prompt, build_dataset(no_prompt, get_task("vqa"), "train", 16), tokenizer, "train")))
    assert not any(t.startswith("vqa:") for t in tokenizer.batch_decode(batch.inputs.input_ids, skip_special_tokens=True))


def test_multitask_loader_uses_every_batch_once_per_epoch(bench, tokenizer):
    cfg = DataConfig(root=str(bench), batch_size=6)
    loaders = {t: build_loader(cfg, build_dataset(cfg, get_task(t), "train", 16), tokenizer, "train", seed=1)
               for t in cfg.tasks}
    mt = MultitaskLoader(loaders, seed=1)
    orders = []
    for epoch in (1, 2):
        mt.set_epoch(epoch)
        batches = list(mt)
        assert Counter(b.task for b in batches) == {t: len(loader) for t, loader in loaders.items()}
        for task in cfg.tasks:  # every example of the task seen exactly once
            uids = [u for b in batches if b.task == task for u in b.uids]
            assert sorted(uids) == sorted(ex.uid for ex in loaders[task].dataset.examples)
        orders.append([b.task for b in batches])
    assert orders[0] != orders[1]
    mt.set_epoch(1)
    assert [b.task for b in mt] == orders[0]  # reproducible from the seed
    assert cfg.task_batch_size(get_task("gqa"), "train") == 10  # 6 * 100/60


def test_distributed_shards_are_disjoint_and_in_step(bench, tokenizer):
    cfg = DataConfig(root=str(bench), batch_size=4)
    shards = []
    for rank in (0, 1):
        loaders = {t: build_loader(cfg, build_dataset(cfg, get_task(t), "train", 16), tokenizer, "train", rank, 2, seed=3)
                   for t in cfg.tasks}
        mt = MultitaskLoader(loaders, seed=3)
        mt.set_epoch(1)
        shards.append(list(mt))
    assert [b.task for b in shards[0]] == [b.task for b in shards[1]]  # DDP ranks step the same task together
    assert not {u for b in shards[0] for u in b.uids} & {u for b in shards[1] for u in b.uids} - {""}


def test_tokenizer_is_local_and_follows_bart_conventions(tokenizer):
    assert (tokenizer.bos_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id) == (0, 1, 2)
    assert "<vis_extra_id_99>" in tokenizer.get_vocab() and "<extra_id_0>" in tokenizer.get_vocab()
    ids = tokenizer("vqa: what color is the zebra?").input_ids
    assert ids[0] == 0 and ids[-1] == 2 and tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids, skip_special_tokens=True) == "vqa: what color is the zebra?"


def _corrupt_copy(bench: Path, tmp_path: Path) -> Path:
    import shutil

    root = tmp_path / "bad"
    shutil.copytree(bench, root)
    return root


def test_missing_feature_file_names_file_and_shape(bench, tmp_path):
    root = _corrupt_copy(bench, tmp_path)
    ex = load_examples(get_task("vqa"), root, "train")[0]
    (root / COCO_FEATS / f"{ex.images[0]}.h5").unlink()
    ds = build_dataset(DataConfig(root=str(root), tasks=("vqa",)), get_task("vqa"), "train", 16)
    with pytest.raises(ConfigError, match=rf"{ex.images[0]}\.h5: missing feature file .*\[49, 16\]"):
        ds.check_features()


def test_wrong_feature_shape_names_key_and_expected_shape(bench, tmp_path):
    root = _corrupt_copy(bench, tmp_path)
    ex = load_examples(get_task("vqa"), root, "train")[0]
    with h5py.File(root / COCO_FEATS / f"{ex.images[0]}.h5", "w") as f:
        f.create_group(ex.images[0]).create_dataset("features", data=np.zeros((36, 16), np.float16))
    store = H5FeatureStore(root / COCO_FEATS, 16)
    with pytest.raises(ConfigError, match=rf"{ex.images[0]}/features has shape \[36, 16\], expected \[49, 16\]"):
        store(ex.images[0])
    with pytest.raises(ConfigError, match=r"expected \[49, 2048\]"):
        H5FeatureStore(root / COCO_FEATS, 2048)(load_examples(get_task("vqa"), root, "train")[3].images[0])


def test_image_missing_from_hdf5_file_names_the_key(bench, tmp_path):
    root = _corrupt_copy(bench, tmp_path)
    ex = load_examples(get_task("vqa"), root, "train")[0]
    with h5py.File(root / COCO_FEATS / f"{ex.images[0]}.h5", "w") as f:
        f.create_group("someone_else").create_dataset("features", data=np.zeros((49, 16), np.float16))
    with pytest.raises(ConfigError, match=rf"no dataset '{ex.images[0]}/features'"):
        H5FeatureStore(root / COCO_FEATS, 16)(ex.images[0])


@pytest.mark.parametrize("rel, field", [("vqa/karpathy_train.json", "img_id"), ("nlvr/valid.json", "img1"),
                                        ("GQA/train.json", "sent")])
def test_annotation_without_required_field(bench, tmp_path, rel, field):
    root = _corrupt_copy(bench, tmp_path)
    entries = json.loads((root / rel).read_text())
    del entries[2][field]
    (root / rel).write_text(json.dumps(entries))
    task = {"vqa": "vqa", "nlvr": "nlvr", "GQA": "gqa"}[rel.split("/")[0]]
    split = "val" if "valid" in rel else "train"
    with pytest.raises(ConfigError, match=rf"{rel.split('/')[-1]}: entry 2 has no field '{field}'"):
        load_examples(get_task(task), root, split)


def test_missing_root_and_unknown_task(tmp_path):
    with pytest.raises(ConfigError, match="data.root"):
        load_examples(get_task("vqa"), tmp_path / "nope", "train")
    with pytest.raises(ConfigError, match="did you mean 'nlvr'"):
        DataConfig(tasks=("nlrv",))
    with pytest.raises(ConfigError, match="data.batch_size"):
        DataConfig(batch_size=0)


@pytest.mark.parametrize("scale, message", [
    ({"captoin": 0.1}, r"unknown data.score_scale task 'captoin' \(did you mean 'caption'\?\)"),
    ({"caption": 0}, r"data.score_scale.caption=0 must be a finite number > 0"),
    ({"caption": "0.1"}, r"data.score_scale.caption='0.1' must be a finite number > 0"),
    ([0.1], r"data.score_scale=\[0.1\] must map task names to factors"),
])
def test_bad_score_scale(scale, message):
    with pytest.raises(ConfigError, match=message):
        DataConfig(score_scale=scale)


def test_score_scale_weights_the_average_only():
    scores = {"vqa": 60.0, "gqa": 40.0, "nlvr": 50.0, "caption": 700.0}
    assert DataConfig().average(scores) == pytest.approx(212.5)
    assert DataConfig(score_scale={"caption": 0.1}).average(scores) == pytest.approx(55.0)


def test_synthetic_data_never_replaces_a_directory_it_did_not_write(tmp_path):
    """data.synthetic with a data.root holding a user's files: refused before any generation, files kept;
    an empty directory or an older benchmark (its stamp) is (re)generated."""
    from vlpet.data.dataset import DataConfig
    from vlpet.data.synthetic import STAMP, ensure_generated

    real = tmp_path / "real"
    (real / "notes").mkdir(parents=True)
    (real / "notes" / "a.txt").write_text("keep")
    with pytest.raises(ConfigError, match=r"data.root=.*real.* holds files the synthetic benchmark generator did not"):
        DataConfig(root=str(real), synthetic=True)
    with pytest.raises(ConfigError, match="set synthetic: false"):
        ensure_generated(real, SyntheticConfig(), lambda d, c: d, 1)
    assert (real / "notes" / "a.txt").read_text() == "keep"
    assert DataConfig(root=str(real), synthetic=False).root == str(real)  # read as real data: allowed
    empty = tmp_path / "empty"
    empty.mkdir()
    DataConfig(root=str(empty), synthetic=True)
    old = tmp_path / "old"
    old.mkdir()
    (old / STAMP).write_text('{"version": 0}')
    DataConfig(root=str(old), synthetic=True)


def _rewrite(root: Path, rel: str, change) -> None:
    """Apply `change(entries)` to the annotation list in root/rel."""
    entries = json.loads((root / rel).read_text())
    change(entries)
    (root / rel).write_text(json.dumps(entries))


@pytest.mark.parametrize("rel, task, change, message", [
    ("vqa/karpathy_train.json", "vqa", lambda e: e[1].update(label=["a"]), r"entry 1 has label \['a'\]; expected an object"),
    ("vqa/karpathy_train.json", "vqa", lambda e: e[1].update(label={"a": 2}), r"expected an object answer -> score in"),
    ("vqa/karpathy_train.json", "vqa", lambda e: e[1].update(question_id="q7"), r"question_id='q7'; expected an integer"),
    ("vqa/karpathy_train.json", "vqa", lambda e: e[1].update(sent=None), r"entry 1 has sent=None; expected a non-empty"),
    ("nlvr/train.json", "nlvr", lambda e: e[0].update(sent="  "), r"entry 0 has sent='  '; expected a non-empty string"),
])
def test_annotation_values_of_the_wrong_form_name_file_entry_and_form(bench, tmp_path, rel, task, change, message):
    root = _corrupt_copy(bench, tmp_path)
    _rewrite(root, rel, change)
    with pytest.raises(ConfigError, match=message):
        load_examples(get_task(task), root, "train")


def test_empty_captions_utf16_files_and_nan_features_are_refused(bench, tmp_path):
    root = _corrupt_copy(bench, tmp_path)
    coco = json.loads((root / "COCO/dataset_coco.json").read_text())
    coco["images"][0]["sentences"] = []
    (root / "COCO/dataset_coco.json").write_text(json.dumps(coco))
    with pytest.raises(ConfigError, match=r"image 0 has sentences=\[\]; expected a non-empty list"):
        load_examples(get_task("caption"), root, "train")
    (root / "GQA/train.json").write_text((root / "GQA/train.json").read_text(), encoding="utf-16")
    with pytest.raises(ConfigError, match=r"GQA/train.json: not UTF-8 text .* save it as UTF-8"):
        load_examples(get_task("gqa"), root, "train")
    ex = load_examples(get_task("vqa"), root, "val")[0]
    with h5py.File(root / COCO_FEATS / f"{ex.images[0]}.h5", "w") as f:
        f.create_group(ex.images[0]).create_dataset("features", data=np.full((49, 16), np.nan, np.float16))
    with pytest.raises(ConfigError, match=rf"{ex.images[0]}\.h5: 784 of 784 feature values are NaN or infinite"):
        H5FeatureStore(root / COCO_FEATS, 16)(ex.images[0])


def test_unanswerable_vqa_questions_train_on_the_empty_answer_with_weight_0(bench, tmp_path):
    """As the official loader: a question with no scored answer (label {} or all scores 0) is kept, its
    target is the empty string and its loss weight 0, instead of a crash while sampling a target."""
    root = _corrupt_copy(bench, tmp_path)
    _rewrite(root, "vqa/karpathy_train.json", lambda e: (e[0].update(label={}), e[1].update(label={"cat": 0})))
    ds = build_dataset(DataConfig(root=str(root), tasks=("vqa",)), get_task("vqa"), "train", 16)
    assert [ds[i][2:] for i in (0, 1)] == [("", 0.0), ("", 0.0)]
    assert ds[2][3] > 0


def test_a_run_checks_its_data_on_the_driver_before_any_worker(bench, tmp_path):
    from vlpet.data.dataset import check_data

    cfg = DataConfig(root=str(bench), tasks=("vqa", "nlvr"))
    assert check_data(cfg, 16).startswith("data checked: 54 examples and ")  # vqa 24 + 8, nlvr 16 + 6
    root = _corrupt_copy(bench, tmp_path)
    ex = load_examples(get_task("nlvr"), root, "val")[0]
    (root / NLVR_FEATS / f"{ex.images[1]}.h5").write_bytes(b"\x89HDF\r\n\x1a\n truncated")
    with pytest.raises(ConfigError, match=rf"{ex.images[1]}\.h5: not a readable HDF5 file"):
        check_data(DataConfig(root=str(root), tasks=("nlvr",)), 16)
    missing = DataConfig(root=str(tmp_path / "elsewhere"), tasks=("nlvr",))
    assert "is not on this machine: the workers read it" in check_data(missing, 16, address="auto")
    with pytest.raises(ConfigError, match="no such directory"):
        check_data(missing, 16)
