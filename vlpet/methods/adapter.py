"""VL-Adapter baseline: Houlsby bottleneck adapters (d -> d/reduction -> d, GELU, own skip) after
encoder self-attention and FFN and decoder self-attention, cross-attention and FFN, shared by all
tasks, plus every layer norm (spec 3)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

from vlpet.methods.base import MethodConfig, layer_norm_names, register_method
from vlpet.methods.inject import Factory, new_module, wrap_sublayers
from vlpet.methods.layers import Bottleneck
from vlpet.models.vl_model import VLModel

# Every sub-layer of both stacks: 6*2 + 6*3 = 30 adapters on BART-base.
ALL_SITES = (("encoder", ("self_attn", "ffn")), ("decoder", ("self_attn", "cross_attn", "ffn")))


@register_method
@dataclass(frozen=True)
class AdapterConfig(MethodConfig):
    """Attributes:
        reduction_factor: bottleneck size is d_model / reduction_factor (paper: 8).
    """

    method = "adapter"
    reduction_factor: int = 8

    def check(self) -> None:
        if self.reduction_factor <= 0:
            raise self.error("reduction_factor", "must be a positive integer (paper: 8)")

    def check_model(self, model: VLModel) -> None:
        if model.d_model % self.reduction_factor or model.d_model < self.reduction_factor:
            raise self.error("reduction_factor", f"must divide d_model={model.d_model} (paper: 8, giving 96 for d=768)")

    def bottleneck(self, model: VLModel) -> Factory:
        """Factory of one adapter's ΔH."""
        return partial(Bottleneck, model.d_model, model.d_model // self.reduction_factor)

    def inject(self, model: VLModel) -> None:
        delta = self.bottleneck(model)
        for stack, sites in ALL_SITES:
            wrap_sublayers(model, stack, sites, delta=lambda: new_module(model, delta, False))

    def extra_trainable(self, model: VLModel) -> Iterator[str]:
        return layer_norm_names(model)
