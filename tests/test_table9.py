"""Table 9 (VL-PET's gates and lightweight designs on Compacter and VL-Adapter) and the Hyperformer
baseline: forward/backward on tiny models, what trains, closed-form parameter counts on BART-base,
validation, task conditioning and adapter-only checkpoints."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import tiny_batch, tiny_model
from vlpet import params
from vlpet.checkpoint import load_adapter, save_adapter
from vlpet.errors import ConfigError
from vlpet.methods import apply_method, method_from_dict
from vlpet.models import BackboneConfig
from vlpet.paper_results import TABLE9
from vlpet.paper_variants import PAPER_PARAMS_PERCENT, VARIANTS, design_name, variant

GATES = ("small", "middleX", "middleY", "large")
# Tiny models have d_model 64: reduction factor 8 gives bottleneck, gate and value-adapter ranks of 8.
TABLE9_CONFIGS = [{"method": base, "reduction_factor": 8, "gate": g, "lightweight": True}
                  for base in ("compacter", "adapter") for g in GATES]
OTHER_CONFIGS = [
    {"method": "adapter", "reduction_factor": 8, "gate": "large", "gate_rank": 4, "scale": 0.5},  # gate without LW
    {"method": "compacter", "reduction_factor": 8, "gate": "middleX"},
    {"method": "compacter", "reduction_factor": 8, "lightweight": True, "decoder_rank": 4},  # LW without a gate
]
HYPERFORMER = {"method": "hyperformer", "task_embedding_dim": 16, "hidden_dim": 8}
CONFIGS = TABLE9_CONFIGS + OTHER_CONFIGS + [HYPERFORMER]
IDS = ["-".join(str(v) for k, v in c.items() if k != "reduction_factor") for c in CONFIGS]


def _expected_trainable(name: str, method: dict) -> bool:
    """What each configuration should train, written independently of the implementation."""
    is_norm = "layer_norm" in name or "layernorm" in name
    if name.startswith("visual_embedding."):
        return True
    if method["method"] == "hyperformer":
        return name.startswith("pet_hyperformer.") or is_norm
    return "pet_" in name or (is_norm and (".encoder." in name or not method.get("lightweight")))


def _build(family: str, method: dict):
    model = apply_method(tiny_model(family), method_from_dict(method))
    model.set_task("vqa")
    return model


@pytest.mark.parametrize("method", CONFIGS, ids=IDS)
def test_forward_backward_trains_only_intended_parameters(family, method):
    model = _build(family, method)
    batch, labels = tiny_batch()
    out = model(batch, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.requires_grad == _expected_trainable(name, method), name
        if p.requires_grad:  # (zero boxes give the visual box projection a zero gradient, as in the paper)
            assert p.grad is not None, f"{name} trains but got no gradient"
            assert "pet_" not in name or p.grad.abs().sum() > 0, f"{name} got an all-zero gradient"
        else:
            assert p.grad is None, f"{name} is frozen but got a gradient"


@pytest.mark.parametrize("method", TABLE9_CONFIGS + OTHER_CONFIGS, ids=IDS[:-1])
def test_lightweight_design_places_modules_as_vlpet(method):
    """LW: encoder adapters (+ gates), a value adapter of the method's own kind in every decoder
    cross-attention and nothing else in the decoder; without LW every sub-layer of both stacks
    has an adapter (+ gate)."""
    model = _build("bart", method)
    enc, dec = model.backbone.model.encoder.layers[1], model.backbone.model.decoder.layers[1]
    gated, lightweight = method.get("gate") is not None, method.get("lightweight", False)
    wrapped = (enc.self_attn, enc.fc2) + (() if lightweight else (dec.self_attn, dec.encoder_attn, dec.fc2))
    for wrapper in wrapped:
        assert wrapper.pet_delta is not None and (wrapper.pet_gate is not None) == gated
    if lightweight:
        assert not any(hasattr(sub, "pet_delta") for sub in (dec.self_attn, dec.encoder_attn, dec.fc2))
        is_phm = hasattr(dec.encoder_attn.v_proj.pet_delta.down, "rule")
        assert is_phm == (method["method"] == "compacter")


@pytest.mark.parametrize("gate", GATES)
def test_adapter_with_gate_and_lw_is_vlpet(gate):
    """VL-PET = (multi-head) adapter + G + LW: same parameters, same init, same logits."""
    batch, labels = tiny_batch()
    ours = _build("bart", {"method": "adapter", "reduction_factor": 8, "gate": gate, "lightweight": True}).eval()
    vlpet = _build("bart", {"method": "vlpet", "granularity": gate, "rank": 8, "n_heads": 1, "decoder_rank": 8}).eval()
    assert ours.state_dict().keys() == vlpet.state_dict().keys()
    with torch.no_grad():
        torch.testing.assert_close(ours(batch, labels=labels).logits, vlpet(batch, labels=labels).logits,
                                   rtol=0, atol=0)


# Closed-form counts on BART-base, independent of the implementation.
D, R = 768, 96
FROZEN = 139_420_416 + 153_600  # backbone + added vocabulary rows
VISUAL, ENC_LN, ALL_LN = 1_582_848, 19_968, 49_152
PLAIN = 2 * D * R + R + D  # d -> r -> d bottleneck
PHM = (8 + D * R // 2 + R) + (8 + R * D // 2 + D)  # n = 2: rule n^3 + weights a·b/n + bias, per layer
GATE = {"small": 2 * D + 1, "middleX": D + 1, "middleY": D, "large": PLAIN}
# task embeddings; per stack: layer ids, TaskHyperNet, LN(8); per sub-layer kind: W_down, W_up, b_down, b_up generators
HYPER = 4 * 512 + 2 * (6 * 512 + 1024 * 128 + 128 + 128 * 8 + 8 + 16) + 5 * (2 * 9 * D * R + 9 * R + 9 * D)


def _closed_form(name: str) -> tuple[int, int]:
    """(trainable, total) of a Table 9 variant or Hyperformer on BART-base."""
    if name == "hyperformer":
        return HYPER + ALL_LN + VISUAL, FROZEN + VISUAL + HYPER
    base, gate, _ = name.split("+")
    adapter = PHM if base == "compacter" else PLAIN
    granularity = next(g for g in GATES if g.lower() == gate.removeprefix("g-"))
    pet = 12 * (adapter + GATE[granularity]) + 6 * adapter  # encoder adapters + gates, decoder value adapters
    return pet + ENC_LN + VISUAL, FROZEN + VISUAL + pet


NEW_ROWS = [row[0] for row in TABLE9["bart-base"] if "+" in row[0]] + ["hyperformer"]


@pytest.mark.parametrize("name", NEW_ROWS)
def test_bart_base_counts_equal_closed_form_and_round_to_the_paper(name):
    rep = params.variant_report("bart-base", name)
    assert (rep.trainable, rep.total) == _closed_form(name)
    assert round(rep.percent, 2) == PAPER_PARAMS_PERCENT[("bart-base", name)]


def test_table9_variants_exist_in_both_families_and_known_counts():
    assert set(NEW_ROWS) <= set(VARIANTS["bart"]) and set(NEW_ROWS) <= set(VARIANTS["t5"])
    assert _closed_form("compacter+g-small+lw") == (2_964_204, 142_518_252)
    assert _closed_form("hyperformer") == (8_579_088, 148_103_952)  # the paper's count
    # gate without LW: 30 adapters + 30 large gates + all layer norms
    gated = method_from_dict({"method": "adapter", "gate": "large"})
    rep = params.config_report(BackboneConfig(arch="bart-base"), gated)
    assert rep.trainable == 30 * 2 * PLAIN + ALL_LN + VISUAL


@pytest.mark.parametrize("name", ["adapter", "compacter", *(row[0] for row in TABLE9["bart-base"])])
def test_design_name_is_the_paper_variant_name(name):
    assert design_name(variant(name)) == name


@pytest.mark.parametrize("data, name", [
    ({"method": "adapter", "lightweight": True}, "adapter+lw"),
    ({"method": "compacter", "gate": "large"}, "compacter+g-large"),
    ({"method": "compacter", "gate": "middleY", "lightweight": True, "decoder_rank": 4}, "compacter+g-middley+lw"),
    ({"method": "lora"}, "lora"),
])
def test_design_name_of_combinations_outside_table9(data, name):
    assert design_name(method_from_dict(data)) == name


@pytest.mark.parametrize("data, fields", [
    ({"method": "adapter", "gate_rank": 16}, ("adapter.gate_rank=16", "adapter.gate='large'")),
    ({"method": "compacter", "gate": "middleX", "gate_rank": 16}, ("compacter.gate_rank=16", "compacter.gate='large'")),
    ({"method": "adapter", "decoder_rank": 32}, ("adapter.decoder_rank=32", "adapter.lightweight")),
    ({"method": "adapter", "gate": "small"}, ("adapter.gate='small'", "adapter.lightweight")),
    ({"method": "adapter", "gate": "medium"}, ("adapter.gate='medium'", "middleX")),
    ({"method": "adapter", "gate": "large", "gate_rank": 0}, ("adapter.gate_rank=0", "positive")),
    ({"method": "adapter", "lightweight": "yes"}, ("adapter.lightweight='yes'", "bool")),
    # VL-PET's designs on a method without them: both fields and the methods that have them
    ({"method": "lora", "gate": "large"},
     ("method=lora", "lora.gate", "gate to a bottleneck module", "adapter, compacter only")),
    ({"method": "prompt", "lightweight": True},
     ("method=prompt", "prompt.lightweight", "lightweight designs", "adapter, compacter only")),
    ({"method": "vlpet", "gate": "large"}, ("method=vlpet", "vlpet.gate", "adapter, compacter only")),
    ({"method": "hyperformer", "tasks": []}, ("hyperformer.tasks=()", "non-empty")),
    ({"method": "hyperformer", "tasks": ["vqa", "vqa"]}, ("hyperformer.tasks=", "distinct")),
])
def test_invalid_combinations_name_both_fields(data, fields):
    with pytest.raises(ConfigError) as err:
        method_from_dict(data)
    for field in fields:
        assert field in str(err.value)
    assert "\n" not in str(err.value)


def test_compacter_value_adapter_rank_must_split_into_phm_terms():
    cfg = method_from_dict({"method": "compacter", "reduction_factor": 8, "lightweight": True, "decoder_rank": 7})
    with pytest.raises(ConfigError, match=r"compacter\.hypercomplex_division=2: must divide compacter\.decoder_rank=7"):
        apply_method(tiny_model("bart"), cfg)
    with pytest.raises(ConfigError, match=r"adapter\.gate_rank=128: must be in 1\.\.d_model=64"):
        apply_method(tiny_model("bart"), method_from_dict({"method": "adapter", "gate": "large", "gate_rank": 128}))


def test_hyperformer_is_task_conditioned():
    batch, labels = tiny_batch()
    model = apply_method(tiny_model("bart"), method_from_dict(HYPERFORMER)).eval()
    with pytest.raises(RuntimeError, match=r"model\.set_task"):
        model(batch, labels=labels)
    model.set_task("tvqa")
    with pytest.raises(ConfigError, match="add it to hyperformer.tasks"):
        model(batch, labels=labels)
    logits = {}
    for task in ("vqa", "gqa"):
        model.set_task(task)
        with torch.no_grad():
            logits[task] = model(batch, labels=labels).logits
    assert not torch.allclose(logits["vqa"], logits["gqa"])
    assert model.generate(batch, max_new_tokens=3, num_beams=2).shape[0] == 3
    # the hyper-network is registered once, on the model, not under every adapter position
    assert all(k.startswith("pet_hyperformer.") for k in model.state_dict() if "hyper" in k)


def test_hyperformer_adapter_uses_the_generated_weights():
    model = _build("bart", HYPERFORMER)
    wrapper = model.backbone.model.decoder.layers[1].encoder_attn
    down_w, down_b, up_w, up_b = model.pet_hyperformer.adapter_weights("decoder", 1, "cross_attn")
    assert down_w.shape == (8, 64) and up_w.shape == (64, 8)
    h = torch.randn(2, 5, 64)
    expected = torch.nn.functional.gelu(h @ down_w.T + down_b, approximate="tanh") @ up_w.T + up_b
    torch.testing.assert_close(wrapper.pet_delta(h), expected)


def _perturb(model):
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)


@pytest.mark.parametrize("method", [
    {"method": "compacter", "reduction_factor": 8, "gate": "large", "lightweight": True},
    {"method": "compacter", "reduction_factor": 8, "gate": "middleY"},
    HYPERFORMER,
], ids=["compacter-large-lw", "compacter-middleY", "hyperformer"])
def test_adapter_only_checkpoint_restores_identical_logits(tmp_path, method):
    model = _build("bart", method)
    _perturb(model)
    save_adapter(model, tmp_path)
    fresh = _build("bart", method)
    load_adapter(fresh, tmp_path)  # the config round-trips through JSON (tasks: list -> tuple)
    batch, labels = tiny_batch()
    model.eval(), fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(batch, labels=labels).logits, model(batch, labels=labels).logits,
                                   rtol=0, atol=0)
