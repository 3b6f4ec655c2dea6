"""(IA)^3 against PEFT 0.21.2's IA3 on tiny VL-BART and VL-T5, and its place in the variants and the search."""

from __future__ import annotations

import copy

import pytest
import torch

from tests.conftest import tiny_batch, tiny_model
from vlpet.methods import apply_method, method_from_dict
from vlpet.paper_variants import VARIANTS

# PEFT's IA3Config for keys, values and the FFN, written out per model type: (target_modules, feedforward_modules)
PEFT_TARGETS = {"bart": (["k_proj", "v_proj", "fc2"], ["fc2"]), "t5": (["k", "v", "wo"], ["wo"])}


def ia3_models(family: str):
    """Ours and PEFT's IA3 on copies of one tiny VL model, with the same non-trivial vectors (1 + 0.5 N(0, 1)) and
    non-zero biases (HF initialises them to zero), since a scaled key or value projection scales its bias too."""
    import peft  # pinned in the test extra: a missing peft fails here rather than skipping the reference

    base, g = tiny_model(family), torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in base.backbone.named_parameters():
            if name.endswith(".bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
    theirs = copy.deepcopy(base)
    ours = apply_method(base, method_from_dict({"method": "ia3"}))
    targets, feedforward = PEFT_TARGETS[family]
    peft.inject_adapter_in_model(peft.IA3Config(target_modules=targets, feedforward_modules=feedforward),
                                 theirs.backbone)
    vectors = {n: p for n, p in ours.named_parameters() if "pet_ia3" in n}
    theirs_vectors = {n: p for n, p in theirs.named_parameters() if "ia3_l" in n}
    assert len(vectors) == len(theirs_vectors) > 0  # the same layers wrapped, as many as PEFT wraps
    for name, mine in vectors.items():
        layer = theirs.get_submodule(name.removesuffix(".pet_ia3"))
        with torch.no_grad():
            mine.copy_(1 + 0.5 * torch.randn(mine.shape, generator=g))
            layer.ia3_l["default"].copy_(mine.view_as(layer.ia3_l["default"]))
    return ours, theirs, vectors


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_ia3_equals_peft_ia3_on_logits_and_gradients(family):
    """The same logits (eval mode) and the same gradients of every vector, on non-trivial vectors."""
    ours, theirs, vectors = ia3_models(family)
    batch, labels = tiny_batch()
    outputs = []
    for model in (ours, theirs):
        model.eval()
        out = model(batch, labels=labels)
        out.loss.backward()
        outputs.append(out.logits)
    assert (outputs[0] - apply_method(tiny_model(family), method_from_dict({"method": "bitfit"}))(
        batch, labels=labels).logits).abs().max() > 1e-2  # the vectors change the function
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    for name, mine in vectors.items():
        layer = theirs.get_submodule(name.removesuffix(".pet_ia3"))
        torch.testing.assert_close(mine.grad, layer.ia3_l["default"].grad.flatten(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_ia3_trains_only_its_vectors_counted_in_closed_form(family):
    """Keys and values of every attention (d each) and the FFN's intermediate activations (d_ff) get a vector;
    besides them only the visual embedding trains."""
    model = apply_method(tiny_model(family), method_from_dict({"method": "ia3"}))
    cfg = model.backbone.config
    n_enc, n_dec = (cfg.encoder_layers, cfg.decoder_layers) if family == "bart" else (cfg.num_layers, cfg.num_decoder_layers)
    d, d_ff = cfg.d_model, (cfg.encoder_ffn_dim if family == "bart" else cfg.d_ff)
    trainable = {n: p.numel() for n, p in model.named_parameters() if p.requires_grad}
    assert sum(v for n, v in trainable.items() if "pet_ia3" in n) == 2 * d * (n_enc + 2 * n_dec) + d_ff * (n_enc + n_dec)
    assert all("pet_ia3" in n or n.startswith("visual_embedding.") for n in trainable)


def test_ia3_is_a_variant_and_starts_as_the_backbone():
    """A registered method without a paper setting is a variant of its own name; its vectors start at ones."""
    assert VARIANTS["bart"]["ia3"] == VARIANTS["t5"]["ia3"] == {"method": "ia3"}
    batch, labels = tiny_batch()
    model = apply_method(tiny_model("bart"), method_from_dict({"method": "ia3"})).eval()
    torch.testing.assert_close(model(batch, labels=labels).logits, tiny_model("bart").eval()(batch, labels=labels).logits)
