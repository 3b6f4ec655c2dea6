"""Shared fixtures: tiny VL models and batches, offline HF, deterministic seeds."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest
import torch

from vlpet.models import BackboneConfig, VLInputs, build_vl_model

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
