"""Parameter accounting against the paper, and adapter-only checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from tests.conftest import tiny_batch, tiny_model
from tests.test_methods import ALL_CONFIGS, IDS
from vlpet import params
from vlpet.checkpoint import WEIGHTS, load_adapter, load_pet_model, save_adapter
from vlpet.errors import ConfigError
from vlpet.methods import apply_method, method_from_dict
from vlpet.paper_variants import PAPER_PARAMS_PERCENT, VARIANTS

# Closed-form trainable counts, written from the method specification (../shared/design/vlpet-method.md,
# section 5), independent of the implementation. D = 768 on both backbones.
D = 768


def bottleneck(rank: int) -> int:
    """A d -> r -> d adapter with biases."""
    return 2 * D * rank + rank + D


PHM = (8 + D * 96 // 2 + 96) + (8 + 96 * D // 2 + D)  # Compacter's PHM bottleneck, n = 2, r = 96
VISUAL = {"bart-base": 1_582_848, "t5-base": 1_581_312}  # the visual projection (T5's LayerNorm has no bias)
ENC_LN = {"bart-base": 19_968, "t5-base": 25 * D}  # the encoder's layer norms, trained by VL-PET
ALL_LN = 49_152  # every layer norm of BART-base, trained by the adapter baselines


def vlpet_trainable(arch: str, granularity: str) -> int:
    """VL-PET: a module + gate at each encoder position (BART: 12 at r = 96; T5: 24 at r = 192), a value
    adapter (r_dec = 96) at each decoder position (BART 6, T5 12), the encoder layer norms and the visual
    projection. Gates: small 2d + 1, middleX d + 1, middleY d, large a d -> r -> d bottleneck."""
    positions, rank, decoder = (12, 96, 6) if arch == "bart-base" else (24, 192, 12)
    gate = {"small": 2 * D + 1, "middlex": D + 1, "middley": D, "large": bottleneck(rank)}[granularity]
    return positions * (bottleneck(rank) + gate) + decoder * bottleneck(96) + ENC_LN[arch] + VISUAL[arch]


SPEC_TRAINABLE = {
    **{(arch, f"vlpet-{g}"): vlpet_trainable(arch, g) for arch in ("bart-base", "t5-base")
       for g in ("small", "middlex", "middley", "large")},
    # VL-Adapter and Compacter: a bottleneck after each of BART-base's 30 sub-layers (6 encoder x 2, 6 decoder x 3)
    ("bart-base", "adapter"): 30 * bottleneck(96) + ALL_LN + VISUAL["bart-base"],
    ("bart-base", "compacter"): 30 * PHM + ALL_LN + VISUAL["bart-base"],
    # LoRA, BitFit and prompt tuning: the counts the specification's parameter table gives (section 5)
    ("bart-base", "lora"): 8_786_688, ("bart-base", "bitfit"): 1_708_800, ("bart-base", "prompt"): 2_843_936,
}


def test_the_closed_forms_give_the_specifications_counts():
    """The closed forms against the counts the specification lists, so a wrong formula fails here too."""
    assert [SPEC_TRAINABLE[("bart-base", f"vlpet-{g}")] for g in ("small", "middlex", "middley", "large")] == [
        4_291_020, 4_281_804, 4_281_792, 6_052_416]
    assert [SPEC_TRAINABLE[("t5-base", f"vlpet-{g}")] for g in ("small", "middlex", "middley", "large")] == [
        10_518_168, 10_499_736, 10_499_712, 17_582_208]
    assert SPEC_TRAINABLE[("bart-base", "adapter")] == 6_081_600
    assert SPEC_TRAINABLE[("bart-base", "compacter")] == 3_870_240


# The T5-base baseline rows are the LST paper's numbers, not reproducible by counting.
REPRODUCED = sorted(k for k in PAPER_PARAMS_PERCENT if k[1] in VARIANTS["bart"]
                    and (k[0] == "bart-base" or k[1].startswith("vlpet") or k[1] == "full"))


@pytest.mark.parametrize("arch, name", REPRODUCED)
def test_params_percent_reproduces_the_paper(arch, name):
    rep = params.variant_report(arch, name)
    assert round(rep.percent, 2) == PAPER_PARAMS_PERCENT[(arch, name)]
    if (arch, name) in SPEC_TRAINABLE:
        assert rep.trainable == SPEC_TRAINABLE[(arch, name)]


def test_backbone_totals_and_video_features():
    assert params.variant_report("bart-base", "full").total == 139_420_416 + 153_600 + 1_582_848
    assert params.variant_report("bart-base", "adapter", feat_dim=512).trainable == 4_901_952  # VL-Adapter video 3.39 %


def test_params_cli_prints_every_variant(capsys):
    assert params.main(["--backbone", "bart-base"]) == 0
    out = capsys.readouterr().out
    assert "vlpet-large" in out and "4.16" in out and "lora" in out
    assert params.main(["--backbone", "bart-huge"]) == 2
    assert "--backbone 'bart-huge'" in capsys.readouterr().err


def _perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize("method", ALL_CONFIGS, ids=IDS)
def test_adapter_only_checkpoint_restores_identical_logits(tmp_path, method):
    model = apply_method(tiny_model("bart"), method_from_dict(method))
    _perturb(model)
    save_adapter(model, tmp_path)
    fresh = apply_method(tiny_model("bart"), method_from_dict(method))
    load_adapter(fresh, tmp_path)
    batch, labels = tiny_batch()
    model.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(batch, labels=labels).logits, model(batch, labels=labels).logits, rtol=0, atol=0)
    if method["method"] != "full":  # only the trainable tensors are stored
        size = (tmp_path / WEIGHTS).stat().st_size
        assert size < 0.6 * sum(p.numel() * 4 for p in model.parameters())


def test_load_pet_model_rebuilds_backbone_and_method(tmp_path, family):
    cfg = method_from_dict({"method": "vlpet", "granularity": "large", "rank": 16, "decoder_rank": 8})
    model = apply_method(tiny_model(family), cfg)
    _perturb(model)
    save_adapter(model, tmp_path, metadata={"epoch": 3})
    restored = load_pet_model(tmp_path)
    assert restored.method == cfg and json.loads((tmp_path / "pet_config.json").read_text())["metadata"]["epoch"] == 3
    batch, labels = tiny_batch()
    with torch.no_grad():
        torch.testing.assert_close(restored.eval()(batch, labels=labels).logits, model.eval()(batch, labels=labels).logits)


def test_bad_checkpoints_are_rejected_with_the_file(tmp_path):
    with pytest.raises(ConfigError, match="pet_config.json: missing"):
        load_pet_model(tmp_path)
    model = apply_method(tiny_model("bart"), method_from_dict({"method": "bitfit"}))
    save_adapter(model, tmp_path)
    other = apply_method(tiny_model("bart"), method_from_dict({"method": "lora", "rank": 4}))
    with pytest.raises(ConfigError, match="saved method"):
        load_adapter(other, tmp_path)
    (tmp_path / WEIGHTS).write_bytes(b"not a safetensors file")
    with pytest.raises(ConfigError, match="adapter.safetensors: cannot read"):
        load_adapter(apply_method(tiny_model("bart"), method_from_dict({"method": "bitfit"})), tmp_path)
    with pytest.raises(ConfigError, match="no PET method"):
        save_adapter(tiny_model("bart"), tmp_path / "x")
