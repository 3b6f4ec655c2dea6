"""PET methods on tiny VL-BART and VL-T5: forward/backward, what trains, init, validation."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import tiny_batch, tiny_model
from vlpet.errors import ConfigError
from vlpet.methods import METHODS, apply_method, method_from_dict
from vlpet.methods.layers import LargeGate, MiddleXGate, MiddleYGate, SmallGate
from vlpet.paper_variants import variant

ALL_CONFIGS = [
    {"method": "full"}, {"method": "bitfit"}, {"method": "prompt", "length": 5, "mid_dim": 16},
    {"method": "adapter", "reduction_factor": 8}, {"method": "compacter", "reduction_factor": 8},
    {"method": "lora", "rank": 8}, {"method": "dora", "rank": 8}, {"method": "ia3"},
    *({"method": "vlpet", "granularity": g, "rank": 16, "n_heads": 4, "decoder_rank": 8}
      for g in ("small", "middleX", "middleY", "large")),
]
IDS = [c["method"] + "-" + c.get("granularity", "") for c in ALL_CONFIGS]


def _expected_trainable(name: str, method: dict, family: str) -> bool:
    """What each method should train, written independently of the implementation's predicates."""
    if name.startswith("visual_embedding."):
        return True
    kind = method["method"]
    is_norm = "layer_norm" in name or "layernorm" in name
    is_bias = name.endswith(".bias") and name.startswith("backbone.")
    return {
        "full": True,
        "bitfit": is_bias,
        "prompt": name.startswith("pet_prompt."),
        "adapter": "pet_" in name or is_norm,
        "compacter": "pet_" in name or is_norm,
        "lora": "pet_lora" in name or is_bias,
        "dora": "pet_lora" in name or "pet_dora_magnitude" in name or is_bias,
        "vlpet": "pet_" in name or (is_norm and ".encoder." in name),
        "ia3": name.endswith(".pet_ia3"),
    }[kind]


@pytest.mark.parametrize("method", ALL_CONFIGS, ids=IDS)
def test_forward_backward_trains_only_intended_parameters(family, method):
    model = apply_method(tiny_model(family), method_from_dict(method))
    batch, labels = tiny_batch()
    out = model(batch, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.requires_grad == _expected_trainable(name, method, family), name
        if p.requires_grad:
            assert p.grad is not None, f"{name} trains but got no gradient"
        else:
            assert p.grad is None, f"{name} is frozen but got a gradient"
    # the method's own modules really learn something
    pet_grads = [p.grad.abs().sum() for n, p in model.named_parameters() if "pet_" in n]
    if method["method"] not in ("full", "bitfit"):
        assert pet_grads and sum(pet_grads) > 0


def _logits(model, batch, labels):
    model.eval()
    with torch.no_grad():
        return model(batch, labels=labels).logits


@pytest.mark.parametrize("method", [
    {"method": "lora", "rank": 8},
    {"method": "dora", "rank": 8},
    {"method": "bitfit"},
    {"method": "full"},
    {"method": "vlpet", "granularity": "middleY", "rank": 16, "decoder_rank": 8, "zero_init": True, "scale": 1.0},
])
def test_zero_initialised_methods_leave_outputs_unchanged(family, method):
    batch, labels = tiny_batch()
    before = _logits(tiny_model(family), batch, labels)
    after = _logits(apply_method(tiny_model(family), method_from_dict(method)), batch, labels)
    torch.testing.assert_close(after, before, rtol=0, atol=1e-6)


@pytest.mark.parametrize("granularity", ["small", "middleX", "large"])
def test_sigmoid_gates_start_at_one_half_and_change_outputs(granularity):
    """The paper's code starts σ gates at 0.5 (zero-init T5), halving the sub-layer output: not a no-op."""
    batch, labels = tiny_batch()
    cfg = method_from_dict({"method": "vlpet", "granularity": granularity, "rank": 16, "decoder_rank": 8,
                            "zero_init": True})
    model = apply_method(tiny_model("t5"), cfg)
    gate = model.backbone.encoder.block[0].layer[0].SelfAttention.pet_gate
    x = torch.randn(2, 5, 64)
    torch.testing.assert_close(gate(x, x), torch.full_like(gate(x, x), 0.5))
    assert not torch.allclose(_logits(model, batch, labels), _logits(tiny_model("t5"), batch, labels))


def test_gate_shapes_follow_their_granularity():
    x, h = torch.randn(3, 7, 16), torch.randn(3, 7, 16)
    assert LargeGate(16, 4)(x, h).shape == (3, 7, 16)
    assert MiddleXGate(16)(x, h).shape == (3, 7, 1)
    assert MiddleYGate(16)(x, h).shape == (16,)
    assert SmallGate(16)(x, h).shape == (3, 1, 1)
    small = SmallGate(16)
    expected = torch.sigmoid(small.proj(torch.cat([x, h], -1))).mean(1, keepdim=True)
    torch.testing.assert_close(small(x, h), expected)


def test_gate_multiplies_adapted_output_with_scale():
    """Y = s · G ⊙ (H + ΔH), checked on one wrapped BART encoder self-attention."""
    cfg = method_from_dict({"method": "vlpet", "granularity": "middleX", "rank": 16, "decoder_rank": 8, "scale": 0.3})
    model = apply_method(tiny_model("bart"), cfg).eval()
    wrapper = model.backbone.model.encoder.layers[0].self_attn
    x = torch.randn(2, 5, 64)
    y = wrapper(x)[0]
    h = wrapper.base(x)[0]
    h2 = h + wrapper.pet_delta(h)
    torch.testing.assert_close(y, 0.3 * torch.sigmoid(wrapper.pet_gate.proj(x + h2)) * h2)


def test_decoder_value_adapter_is_parallel_to_the_value_projection():
    cfg = method_from_dict({"method": "vlpet", "granularity": "small", "rank": 16, "decoder_rank": 8})
    model = apply_method(tiny_model("bart"), cfg)
    v = model.backbone.model.decoder.layers[1].encoder_attn.v_proj
    e = torch.randn(2, 9, 64)
    torch.testing.assert_close(v(e), v.base(e) + v.pet_delta.up(torch.nn.functional.gelu(v.pet_delta.down(e), approximate="tanh")))
    assert not hasattr(model.backbone.model.decoder.layers[1].self_attn, "pet_delta")


def test_lora_matches_peft():
    """Our LoRA equals PEFT's LoraLayer on the same weights."""
    import peft  # pinned in the test extra: a missing peft fails here rather than skipping the reference

    from vlpet.methods.layers import LoRALinear

    base = torch.nn.Linear(16, 12)
    ours = LoRALinear(base, rank=4, alpha=8.0, dropout=0.0)
    torch.nn.init.normal_(ours.pet_lora_B.weight)
    model = torch.nn.Sequential()
    model.add_module("proj", torch.nn.Linear(16, 12))
    model.proj.load_state_dict(base.state_dict())
    wrapped = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["proj"], lora_dropout=0.0))
    layer = wrapped.base_model.model.proj
    layer.lora_A["default"].weight.data.copy_(ours.pet_lora_A.weight)
    layer.lora_B["default"].weight.data.copy_(ours.pet_lora_B.weight)
    x = torch.randn(5, 16)
    torch.testing.assert_close(ours(x), layer(x))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_dora_equals_peft_use_dora_on_a_tiny_vl_bart(train):
    """Our DoRA and PEFT's LoraConfig(use_dora=True) on the same q/v projections of a tiny VL-BART, with the
    same (non-trivial) weights: the same logits and the same gradients, in eval mode and in train mode with
    dropout (one seed for both: the two draw their dropout masks in the same order)."""
    import copy

    import peft  # pinned in the test extra: a missing peft fails here rather than skipping the reference

    from vlpet.methods.layers import DoRALinear

    ours = apply_method(tiny_model("bart"), method_from_dict({"method": "dora", "rank": 4, "alpha": 8.0, "dropout": 0.1}))
    theirs = copy.deepcopy(tiny_model("bart"))
    peft.inject_adapter_in_model(peft.LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, use_dora=True,
                                                 target_modules=["q_proj", "v_proj"]), theirs.backbone)
    wrapped = {n: m for n, m in ours.named_modules() if isinstance(m, DoRALinear)}
    assert len(wrapped) == 2 * 3 * 2  # q and v of the encoder's self, the decoder's self and cross attention
    g = torch.Generator().manual_seed(1)
    for name, mine in wrapped.items():
        layer = theirs.get_submodule(name)
        with torch.no_grad():  # B != 0 and m != ||W||: the update and the magnitude both matter
            mine.pet_lora_B.weight.copy_(0.3 * torch.randn(mine.pet_lora_B.weight.shape, generator=g))
            mine.pet_dora_magnitude.mul_(1 + 0.2 * torch.randn(mine.pet_dora_magnitude.shape, generator=g))
            layer.lora_A["default"].weight.copy_(mine.pet_lora_A.weight)
            layer.lora_B["default"].weight.copy_(mine.pet_lora_B.weight)
            layer.lora_magnitude_vector["default"].weight.copy_(mine.pet_dora_magnitude)
    batch, labels = tiny_batch()
    outputs = []
    for model in (ours, theirs):
        model.train(train)
        torch.manual_seed(7)
        out = model(batch, labels=labels)
        out.loss.backward()
        outputs.append(out.logits)
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-5, atol=1e-5)
    for name, mine in wrapped.items():
        layer = theirs.get_submodule(name)
        torch.testing.assert_close(mine.pet_dora_magnitude.grad, layer.lora_magnitude_vector["default"].weight.grad,
                                   rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(mine.pet_lora_A.weight.grad, layer.lora_A["default"].weight.grad,
                                   rtol=1e-4, atol=1e-6)


def test_multihead_rank_is_one_projection_and_counts_match():
    """N_h only needs to divide r: the module has d·r + r down-projection parameters whatever N_h is."""
    counts = []
    for heads in (1, 2, 4):
        cfg = method_from_dict({"method": "vlpet", "granularity": "middleY", "rank": 16, "n_heads": heads, "decoder_rank": 8})
        model = apply_method(tiny_model("bart"), cfg)
        counts.append(sum(p.numel() for n, p in model.named_parameters() if "pet_" in n))
    assert len(set(counts)) == 1


@pytest.mark.parametrize("data, field", [
    ({"method": "vlpet", "rank": 0}, "vlpet.rank"),
    ({"method": "vlpet", "rank": 96, "n_heads": 5}, "vlpet.n_heads"),
    ({"method": "vlpet", "scale": float("inf")}, "vlpet.scale"),
    ({"method": "vlpet", "scale": 0}, "vlpet.scale"),
    ({"method": "vlpet", "granularity": "medium"}, "vlpet.granularity"),
    ({"method": "vlpet", "rank": "96"}, "vlpet.rank"),
    ({"method": "vlpet", "rnak": 96}, "did you mean 'rank'"),
    ({"method": "lora", "rank": -1}, "lora.rank"),
    ({"method": "lora", "dropout": 1.5}, "lora.dropout"),
    ({"method": "adapter", "reduction_factor": 0}, "adapter.reduction_factor"),
    ({"method": "prompt", "length": 0}, "prompt.length"),
    ({"method": "vl-pet"}, "did you mean 'vlpet'"),
    ({"rank": 4}, "needs a 'method' key"),
])
def test_invalid_configs_name_the_field(data, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.").replace("(", r"\(")) as err:
        method_from_dict(data)
    assert "\n" not in str(err.value)


def test_rank_larger_than_d_model_is_rejected_against_the_model():
    with pytest.raises(ConfigError, match=r"vlpet\.rank=128: must be in 1\.\.d_model=64"):
        apply_method(tiny_model("bart"), method_from_dict({"method": "vlpet", "rank": 128, "n_heads": 4}))
    with pytest.raises(ConfigError, match=r"compacter\.hypercomplex_division"):
        apply_method(tiny_model("bart"), method_from_dict({"method": "compacter", "reduction_factor": 8,
                                                            "hypercomplex_division": 3}))


def test_method_applied_twice_is_rejected():
    model = apply_method(tiny_model("bart"), method_from_dict({"method": "bitfit"}))
    with pytest.raises(ConfigError, match="already has method"):
        apply_method(model, method_from_dict({"method": "lora"}))


def test_registry_and_variants_round_trip():
    assert set(METHODS) >= {"full", "bitfit", "adapter", "lora", "compacter", "prompt", "vlpet"}
    cfg = variant("vlpet-large", "t5")
    assert (cfg.rank, cfg.scale, cfg.granularity) == (192, 0.3, "large")
    assert method_from_dict(cfg.to_dict()) == cfg
    assert math.isclose(method_from_dict({"method": "vlpet", "scale": 1}).scale, 1.0)
    with pytest.raises(ConfigError, match="did you mean 'vlpet-large'"):
        variant("vlpet-larg")


@pytest.mark.parametrize("method", [{"method": "vlpet", "granularity": "large", "rank": 16, "decoder_rank": 8},
                                    {"method": "adapter", "reduction_factor": 8, "gate": "large", "lightweight": True},
                                    {"method": "compacter", "reduction_factor": 8}], ids=["vlpet", "adapter+g", "compacter"])
def test_per_task_modules_answer_for_the_task_of_the_batch(method):
    """shared: false gives every task its own modules: a task's batch trains its modules only, and the model
    refuses a forward pass that names no task."""
    from vlpet.methods.layers import PerTask

    model = apply_method(tiny_model("bart"), method_from_dict({**method, "shared": False, "tasks": ["vqa", "gqa"]}))
    assert any(isinstance(m, PerTask) for m in model.modules())
    batch, labels = tiny_batch()
    model.set_task("gqa")
    model(batch, labels=labels).loss.backward()
    for name, p in model.named_parameters():
        if ".pet_by_task.gqa." in name:
            assert p.grad is not None, name
        elif ".pet_by_task.vqa." in name:
            assert p.grad is None, name  # the other task's modules took no part
    model.set_task(None)
    with pytest.raises(RuntimeError, match=r"per-task modules \(shared: false\) for vqa, gqa: call model.set_task"):
        model(batch, labels=labels)


def test_a_run_whose_tasks_lack_per_task_modules_is_refused():
    from vlpet.train.config import RunSpec

    with pytest.raises(ConfigError, match=r"vlpet.tasks=\['vqa'\] has no modules for data.tasks \['gqa'\]; set "
                                          r"vlpet.tasks to \['vqa', 'gqa'\]"):
        RunSpec.from_dict({"method": {"method": "vlpet", "shared": False, "tasks": ["vqa"]},
                           "data": {"tasks": ["vqa", "gqa"]}})
