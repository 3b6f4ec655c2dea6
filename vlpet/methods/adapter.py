"""VL-Adapter baseline: Houlsby bottleneck adapters (d -> d/reduction -> d, GELU, own skip) after
encoder self-attention and FFN and decoder self-attention, cross-attention and FFN, shared by all
tasks, plus every layer norm.

The same config also applies the VL-PET designs to it (paper Table 9), as fields rather than
classes, so Compacter (a subclass) gets them too:

* `gate`: a granularity-controlled gate G (small / middleX / middleY / large, `vlpet.methods.layers.make_gate`)
  at every adapter position, Y = s · G(X, H') ⊙ H' with H' = H + ΔH(H), as in VL-PET.
* `lightweight` ("LW": lightweight designs and trainable encoder LNs): adapters (and
  gates) on the encoder self-attention and FFN only, a parallel bottleneck of the same kind on the
  value projection of every decoder cross-attention ("VPA") instead of the three decoder
  adapters, and the encoder layer norms instead of all of them.

Adapter + G + LW is therefore VL-PET with one down-projection head, which does not change the
function or the parameter count: 2.98 / 2.98 / 2.98 / 4.16 % on BART-base, as VL-PET.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from vlpet.methods.base import (
    IMAGE_TASKS,
    MethodConfig,
    check_positive,
    check_rank,
    check_tasks,
    layer_norm_names,
    own_task_modules,
    register_method,
)
from vlpet.methods.inject import Factory, new_module, wrap_cross_attention_values, wrap_sublayers
from vlpet.methods.layers import GRANULARITIES, Bottleneck, make_gate
from vlpet.methods.space import DEFAULT_LR, LR, Choice, Dist, DrawRule
from vlpet.models.vl_model import VLModel

# Every sub-layer of both stacks: 6*2 + 6*3 = 30 adapters on BART-base.
ALL_SITES = (("encoder", ("self_attn", "ffn")), ("decoder", ("self_attn", "cross_attn", "ffn")))
# The lightweight design's adapter sites; the decoder gets the cross-attention value adapter instead.
ENCODER_SITES = (("encoder", ("self_attn", "ffn")),)


def check_reduction_factor(cfg: MethodConfig, model: VLModel) -> None:
    """`cfg.reduction_factor` must divide d_model (the bottleneck is d_model / reduction_factor)."""
    if model.d_model % cfg.reduction_factor or model.d_model < cfg.reduction_factor:
        raise cfg.error("reduction_factor", f"must divide d_model={model.d_model} (paper: 8, giving 96 for d=768)")


@register_method
@dataclass(frozen=True)
class AdapterConfig(MethodConfig):
    """Attributes:
        reduction_factor: bottleneck size is d_model / reduction_factor (paper: 8).
        gate: None (plain adapters) or the granularity of a VL-PET gate at every adapter position:
            small | middleX | middleY | large. small averages over all tokens, which in the decoder
            would let a position see later ones, so it needs `lightweight` (encoder only).
        gate_rank: r_g of the large gate; null = the bottleneck size (Table 9: 96).
        scale: s, multiplies every adapter position's (gated) output (paper: 1.0 on BART).
        lightweight: VL-PET's lightweight designs (module docstring): encoder adapters, a decoder
            cross-attention value adapter, trainable encoder layer norms only.
        decoder_rank: bottleneck of that value adapter (needs `lightweight`); null = the bottleneck size.
        shared: one set of modules for every task (the paper's `--use_single_adapter`); false: one set per
            task of `tasks`, the batch's task choosing (VL-Adapter's per-task form).
        tasks: the tasks that get modules of their own when `shared` is false.
    """

    method = "adapter"
    reduction_factor: int = 8
    gate: str | None = None
    gate_rank: int | None = None
    scale: float = 1.0
    lightweight: bool = False
    decoder_rank: int | None = None
    shared: bool = True
    tasks: tuple[str, ...] = IMAGE_TASKS

    search_space: ClassVar[dict[str, Dist]] = {"reduction_factor": Choice((2, 4, 8, 16, 32)), "shared": Choice((True, False)), LR: DEFAULT_LR}
    # `check`'s rules as draws: a small gate needs the lightweight design, gate_rank sizes the large gate
    # only, decoder_rank the lightweight design's value adapter only
    draw_rules: ClassVar[dict[str, DrawRule]] = {"lightweight": DrawRule(("gate",), keep=lambda lw, fields: lw or fields["gate"] != "small"),
                  "gate_rank": DrawRule(("gate",), when=lambda fields: fields["gate"] == "large"),
                  "decoder_rank": DrawRule(("lightweight",), when=lambda fields: fields["lightweight"])}
    size_fields = rank_fields = ("gate_rank", "decoder_rank")

    def check(self) -> None:
        if self.reduction_factor <= 0:
            raise self.error("reduction_factor", "must be a positive integer (paper: 8)")
        if self.gate is not None and self.gate not in GRANULARITIES:
            raise self.error("gate", f"must be null or one of {', '.join(GRANULARITIES)}")
        for name in ("gate_rank", "decoder_rank"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise self.error(name, "must be a positive integer or null (= the bottleneck size)")
        check_positive(self, "scale")
        check_tasks(self)
        if self.gate_rank is not None and self.gate != "large":
            raise self.error("gate_rank", f"only the large gate has a rank; set {self.method}.gate='large' "
                                          "or leave gate_rank null")
        if self.decoder_rank is not None and not self.lightweight:
            raise self.error("decoder_rank", "sizes the lightweight decoder value adapter; "
                                             f"set {self.method}.lightweight=true or leave decoder_rank null")
        if self.gate == "small" and not self.lightweight:
            raise self.error("gate", "averages over all tokens, so in the decoder each position would see later "
                                     f"ones; set {self.method}.lightweight=true (gates on the encoder only) or pick "
                                     "another gate")

    def check_model(self, model: VLModel) -> None:
        check_reduction_factor(self, model)
        for name in ("gate_rank", "decoder_rank"):
            if getattr(self, name) is not None:
                check_rank(self, name, model.d_model)

    def bottleneck_size(self, d_model: int) -> int:
        """The adapters' bottleneck r = d_model / reduction_factor."""
        return d_model // self.reduction_factor

    def bottleneck(self, model: VLModel, rank: int) -> Factory:
        """Factory of one adapter's ΔH with bottleneck `rank` (also the lightweight value adapter)."""
        return partial(Bottleneck, model.d_model, rank)

    def inject(self, model: VLModel) -> None:
        d, rank = model.d_model, self.bottleneck_size(model.d_model)
        delta = self.bottleneck(model, rank)
        gate = partial(make_gate, self.gate, d, self.gate_rank or rank) if self.gate else None
        for stack, sites in ENCODER_SITES if self.lightweight else ALL_SITES:
            wrap_sublayers(model, stack, sites, delta=lambda: new_module(model, delta, False, own_task_modules(self)),
                           gate=(lambda: new_module(model, gate, False, own_task_modules(self))) if gate else None,
                           scale=self.scale)
        if self.lightweight:
            value_delta = self.bottleneck(model, self.decoder_rank or rank)
            wrap_cross_attention_values(model, lambda: new_module(model, value_delta, False, own_task_modules(self)))

    def extra_trainable(self, model: VLModel) -> Iterator[str]:
        return layer_norm_names(model, "encoder" if self.lightweight else None)
