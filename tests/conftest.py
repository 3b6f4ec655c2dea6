"""Shared fixtures: tiny VL models and batches, offline HF, deterministic seeds."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The tests' local Ray clusters listen on loopback only (studies.driver.ray_cluster); set before ray is imported.
# Multi-node test clusters (tests/ray_nodes.py) and drivers joining them drop it: Ray needs the machine's address.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from vlpet.data import TASKS
from vlpet.data.synthetic import SyntheticConfig, benchmark_texts, generate
from vlpet.data.synthetic_video import SyntheticVideoConfig, generate_video
from vlpet.data.tokenizer import train_tokenizer
from vlpet.models import BackboneConfig, VLInputs, build_vl_model

# A small embedded benchmark with 16-d features: every task and split, generated in about a second.
SMALL = SyntheticConfig(feat_dim=16, coco_train=12, coco_eval=4, vg_images=8, gqa_testdev=4, nlvr_images=10,
                        nlvr_pairs=(16, 6, 6), questions_per_image=2)

# A small embedded video benchmark with 16-d frames: every video task and split, in well under a second.
SMALL_VIDEO = SyntheticVideoConfig(feat_dim=16, videos=(6, 3, 3), questions_per_video=2)

FEAT_DIM = 24


def tiny_backbone(family: str = "bart", **kw) -> BackboneConfig:
    """A tiny preset with small visual features (7x7 grid pooled to 2x2 keeps tests fast)."""
    return BackboneConfig(arch=f"tiny-{family}", feat_dim=FEAT_DIM, n_boxes=4, **kw)


def tiny_model(family: str = "bart", **kw):
    torch.manual_seed(0)
    return build_vl_model(tiny_backbone(family, **kw))


def tiny_batch(n_img: int = 2, seed: int = 0) -> tuple[VLInputs, torch.Tensor]:
    """A batch of 3 with padding in the text, two images per example, and labels."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 900, (3, 6), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 4:] = 0
    ids[1, 4:] = 1
    feats = torch.randn(3, n_img, 49, FEAT_DIM, generator=g)
    labels = torch.randint(3, 900, (3, 4), generator=g)
    labels[2, 3:] = -100
    return VLInputs(ids, mask, feats), labels


@pytest.fixture(params=["bart", "t5"])
def family(request) -> str:
    return request.param


@pytest.fixture(scope="session")
def bench(tmp_path_factory) -> Path:
    """The SMALL benchmark, generated once per test session."""
    return generate(tmp_path_factory.mktemp("bench"), SMALL)


@pytest.fixture(scope="session")
def tokenizer_dir(bench) -> Path:
    """A BART-style tokenizer trained on the SMALL benchmark's text."""
    train_tokenizer(benchmark_texts(bench) + [t.prompt for t in TASKS.values()], "bart", bench / "tok", vocab_size=300)
    return bench / "tok"


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def video_bench(tmp_path_factory) -> Path:
    """The SMALL_VIDEO benchmark, generated once per test session."""
    return generate_video(tmp_path_factory.mktemp("video_bench"), SMALL_VIDEO)


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray on loopback with 4 logical CPUs for one test module (2 Train workers + Tune). Its temp dir
    is short: Ray's socket paths under it must stay within 107 bytes, which pytest's (and more so an xdist
    worker's) tmp_path can exceed."""
    import ray

    from studies.driver.ray_cluster import connect

    with tempfile.TemporaryDirectory(prefix="vlpet-ray-", ignore_cleanup_errors=True) as temp_dir:
        connect(num_cpus=4, _temp_dir=temp_dir, log_to_driver=False)
        yield ray
        ray.shutdown()


@pytest.fixture
def two_nodes():
    """A real two-node Ray cluster on 127.0.0.1, stopped by killing exactly its own processes."""
    from tests.ray_nodes import LocalRayCluster

    cluster = LocalRayCluster(worker_nodes=1).start()
    yield cluster
    cluster.stop()
    assert not cluster.processes()
