"""BitFit baseline: train every bias vector of the backbone (attention, FFN, layer norms)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from vlpet.methods.base import MethodConfig, bias_names, register_method
from vlpet.models.vl_model import VLModel


@register_method
@dataclass(frozen=True)
class BitFitConfig(MethodConfig):
    """No hyper-parameters: the trainable set is fixed (T5 has no biases, so only the visual embedding trains)."""

    method = "bitfit"

    def extra_trainable(self, model: VLModel) -> Iterator[str]:
        return bias_names(model)
