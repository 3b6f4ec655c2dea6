"""(IA)^3 baseline (Liu et al., NeurIPS 2022): learned vectors that rescale the keys and values of every
attention (encoder self, decoder self, decoder cross) and the FFN's intermediate activations, the input of
its output projection. The vectors start at ones, so the model starts as the backbone. Numerically PEFT's
`IA3Config` on these targets: y = (W x + b) ⊙ l for a key or value projection, y = W (x ⊙ l) + b for the
FFN's output projection (PEFT's `feedforward_modules`). Only the vectors (and the visual embedding) train.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from vlpet.methods.base import MethodConfig, register_method, replace_module
from vlpet.methods.space import LR, Dist, FloatRange
from vlpet.models.vl_model import VLModel

# the Linear layers rescaled, by their name in HF's BART and T5: key, value, the FFN's output projection
TARGETS = {"bart": ("k_proj", "v_proj", "fc2"), "t5": ("k", "v", "wo")}
FEEDFORWARD = {"bart": "fc2", "t5": "wo"}  # rescaled on its input (the intermediate activations)


class IA3Linear(nn.Module):
    """A frozen Linear whose output (or, on a feed-forward output projection, input) is scaled per feature."""

    def __init__(self, base: nn.Linear, feedforward: bool):
        super().__init__()
        self.base, self.feedforward = base, feedforward
        self.pet_ia3 = nn.Parameter(torch.ones(base.in_features if feedforward else base.out_features))

    @property
    def weight(self) -> torch.Tensor:
        """The base weight: HF's T5 FFN reads `wo.weight.dtype` to cast its input."""
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x * self.pet_ia3) if self.feedforward else self.base(x) * self.pet_ia3


@register_method
@dataclass(frozen=True)
class IA3Config(MethodConfig):
    """No fields: where the vectors go is (IA)^3's design; the learning rate is searched."""

    method = "ia3"
    search_space: ClassVar[dict[str, Dist]] = {LR: FloatRange(1e-4, 1e-2, log=True)}  # the paper trains at 3e-3

    def inject(self, model: VLModel) -> None:
        targets, feedforward = TARGETS[model.family], FEEDFORWARD[model.family]
        for name, module in list(model.backbone.named_modules()):
            leaf = name.rpartition(".")[2]
            if leaf in targets and isinstance(module, nn.Linear):
                replace_module(model.backbone, name, IA3Linear(module, feedforward=leaf == feedforward))
