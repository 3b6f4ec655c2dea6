"""Prompt tuning baseline: P trainable encoder prompts, reparameterised by an MLP
(Embedding(P, d) -> Linear(d, mid) -> tanh -> Linear(mid, d)), prepended to the text token
embeddings. They are text positions: BART adds its positions and `layernorm_embedding` to them,
T5's relative bias covers them. Only the prompts and the visual embedding train."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from vlpet.methods.base import MethodConfig, register_method
from vlpet.methods.space import DEFAULT_LR, LR, Choice, Dist
from vlpet.models.vl_model import VLModel, init_new_linear


class PromptEncoder(nn.Module):
    """Produces the [B, P, d] prompt embeddings."""

    def __init__(self, length: int, d_model: int, mid_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(length, d_model)
        self.mlp = nn.Sequential(nn.Linear(d_model, mid_dim), nn.Tanh(), nn.Linear(mid_dim, d_model))

    def forward(self, batch_size: int) -> torch.Tensor:
        return self.mlp(self.embedding.weight).unsqueeze(0).expand(batch_size, -1, -1)


@register_method
@dataclass(frozen=True)
class PromptConfig(MethodConfig):
    """Attributes:
        length: number of prompt vectors P (paper: 40).
        mid_dim: hidden size of the reparameterisation MLP (paper: 800).
    """

    method = "prompt"
    length: int = 40
    mid_dim: int = 800

    search_space: ClassVar[dict[str, Dist]] = {"length": Choice((10, 20, 40, 80)), LR: DEFAULT_LR}
    size_fields = ("mid_dim",)

    def check(self) -> None:
        if self.length <= 0:
            raise self.error("length", "must be a positive integer (paper: 40)")
        if self.mid_dim <= 0:
            raise self.error("mid_dim", "must be a positive integer (paper: 800)")

    def inject(self, model: VLModel) -> None:
        model.pet_prompt = PromptEncoder(self.length, model.d_model, self.mid_dim)
        init_new_linear(model.pet_prompt, model.family)
