"""Compacter baseline: the VL-Adapter positions with PHM bottlenecks (W = sum_i A_i (x) B_i, n
terms), per-layer rules, not factorised, plus every layer norm (spec 3)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from vlpet.methods.adapter import AdapterConfig
from vlpet.methods.base import register_method
from vlpet.methods.inject import Factory
from vlpet.methods.layers import Bottleneck
from vlpet.models.vl_model import VLModel


@register_method
@dataclass(frozen=True)
class CompacterConfig(AdapterConfig):
    """Attributes:
        reduction_factor: bottleneck size d_model / reduction_factor (paper: 8).
        hypercomplex_division: n, the number of Kronecker terms (paper: 2); divides d and the bottleneck.
    """

    method = "compacter"
    hypercomplex_division: int = 2

    def check(self) -> None:
        super().check()
        if self.hypercomplex_division < 1:
            raise self.error("hypercomplex_division", "must be a positive integer (paper: 2)")

    def check_model(self, model: VLModel) -> None:
        super().check_model(model)
        rank = model.d_model // self.reduction_factor
        if rank % self.hypercomplex_division or model.d_model % self.hypercomplex_division:
            raise self.error("hypercomplex_division", f"must divide d_model={model.d_model} and the bottleneck {rank}")

    def bottleneck(self, model: VLModel) -> Factory:
        return partial(Bottleneck, model.d_model, model.d_model // self.reduction_factor, phm_n=self.hypercomplex_division)
