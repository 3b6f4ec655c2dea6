"""LoRA baseline: low-rank updates on the query and value projections of every attention (encoder
self, decoder self, decoder cross), plus every bias, as the paper's `single_lora` runs.
Numerically PEFT's LoRA: y = W x + b + B A dropout(x) · alpha / r, A Kaiming-uniform, B = 0.

DoRA (Liu et al., ICML 2024) is LoRA on the same projections with a trained magnitude vector per
projection (one value per output row): numerically PEFT's `LoraConfig(use_dora=True)`."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from vlpet.methods.base import MethodConfig, bias_names, check_positive, check_rank, register_method
from vlpet.methods.inject import wrap_attention_projections
from vlpet.methods.layers import DoRALinear, LoRALinear
from vlpet.methods.space import DEFAULT_LR, LR, Choice, Dist
from vlpet.models.vl_model import VLModel


@register_method
@dataclass(frozen=True)
class LoRAConfig(MethodConfig):
    """Attributes:
        rank: r (paper: 128).
        alpha: scaling numerator, the update is scaled by alpha / r (paper: 32).
        dropout: dropout on the LoRA input (paper: 0.1).
        train_biases: also train every backbone bias, as the paper's LoRA runs do.
    """

    method = "lora"
    rank: int = 128
    alpha: float = 32.0
    dropout: float = 0.1
    train_biases: bool = True

    search_space: ClassVar[dict[str, Dist]] = {"rank": Choice((4, 8, 16, 32, 64, 128)), LR: DEFAULT_LR}  # DoRA's too
    size_fields = rank_fields = ("rank",)

    def check(self) -> None:
        if self.rank <= 0:
            raise self.error("rank", "must be a positive integer (paper: 128)")
        check_positive(self, "alpha")
        if not 0.0 <= self.dropout < 1.0:
            raise self.error("dropout", "must be in [0, 1)")

    def check_model(self, model: VLModel) -> None:
        check_rank(self, "rank", model.d_model)

    layer: ClassVar[type[LoRALinear]] = LoRALinear  # the wrapper of each target projection

    def inject(self, model: VLModel) -> None:
        names = (model.layout.query_proj, model.layout.value_proj)
        wrap_attention_projections(model, names, lambda base: self.layer(base, self.rank, self.alpha, self.dropout))

    def extra_trainable(self, model: VLModel) -> Iterator[str]:
        return bias_names(model) if self.train_biases else iter(())


@register_method
@dataclass(frozen=True)
class DoRAConfig(LoRAConfig):
    """DoRA: LoRA's fields and targets; its magnitude vectors (d_model values per wrapped projection) train
    and count among the trainable parameters. DoRA's VL-BART runs (NVlabs/DoRA) use LoRA's setting."""

    method = "dora"
    layer = DoRALinear
