"""Full fine-tuning baseline: every parameter trains (tied embeddings count once)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from vlpet.methods.base import MethodConfig, register_method
from vlpet.methods.space import LR, Dist, FloatRange
from vlpet.models.vl_model import VLModel


@register_method
@dataclass(frozen=True)
class FullFinetuneConfig(MethodConfig):
    """No hyper-parameters: nothing is frozen."""

    method = "full"
    search_space: ClassVar[dict[str, Dist]] = {LR: FloatRange(1e-5, 1e-3, log=True)}  # around the paper's 1e-4

    def extra_trainable(self, model: VLModel) -> Iterator[str]:
        return (name for name, _ in model.named_parameters())
