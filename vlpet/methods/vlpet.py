"""VL-PET (ICCV 2023): granularity-controlled encoder modules plus a lightweight decoder module.

Encoder, every layer, both sub-layers (self-attention and FFN), one module each:

    H' = H + ΔH(H),  ΔH = GELU(H W_down) W_up      (multi-head down-projection, rank r, N_h heads)
    Y  = s · G(X, H') ⊙ H'                          (before the layer's own dropout + residual (+ LN))

with G one of: large σ(GELU(X A) C) [B,N,d], middleX σ((X+H') w) [B,N,1], middleY 1+z [d], small
mean_tokens σ([X;H'] w) [B,1,1]. Decoder: a parallel bottleneck (rank r_dec) on the value projection
of every cross-attention. Trainable: these modules, the encoder layer norms and the visual embedding.
All modules are shared by all tasks, as the paper's `--use_single_adapter` runs.
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
from vlpet.methods.inject import new_module, wrap_cross_attention_values, wrap_sublayers
from vlpet.methods.layers import GRANULARITIES, Bottleneck, make_gate
from vlpet.methods.space import DEFAULT_LR, LR, Choice, Dist, DrawRule, FloatRange
from vlpet.models.vl_model import VLModel


@register_method
@dataclass(frozen=True)
class VLPETConfig(MethodConfig):
    """VL-PET with one of the four granularities.

    Attributes:
        granularity: small | middleX | middleY | large (which granularity-controlled matrix G).
        rank: r, the encoder modules' bottleneck (paper: 96 BART, 192 T5).
        n_heads: N_h heads of the down-projection; must divide r (paper: 4). See `Bottleneck`.
        gate_rank: r_g of the large gate's low-rank MLP; defaults to `rank` (ignored otherwise).
        scale: s, multiplies the gated output (paper: 1.0 BART, 0.3 T5).
        decoder_rank: r_dec of the decoder cross-attention value adapter (paper: 96).
        zero_init: zero the output side of every module (adapter up-projections, gates, z) so ΔH = 0
            and G starts at 0.5 (1 for middleY). None follows the paper's code: yes for T5, no for BART.
        middle_y_sigmoid: use Fig. 3's G = 1 + σ(z) instead of the code's G = 1 + z.
        shared: one set of modules for every task (the paper's `--use_single_adapter`); false: one set per
            task of `tasks`, the batch's task choosing.
        tasks: the tasks that get modules of their own when `shared` is false.
    """

    method = "vlpet"
    granularity: str = "large"
    rank: int = 96
    n_heads: int = 4
    gate_rank: int | None = None
    scale: float = 1.0
    decoder_rank: int = 96
    zero_init: bool | None = None
    middle_y_sigmoid: bool = False
    shared: bool = True
    tasks: tuple[str, ...] = IMAGE_TASKS

    # ranges around the paper's settings: r = 96 (BART) / 192 (T5), N_h = 4, s = 1 / 0.3, lr 1e-3 / 3e-4
    search_space: ClassVar[dict[str, Dist]] = {"rank": Choice((8, 16, 32, 48, 64, 96, 128, 192)), "n_heads": Choice((1, 2, 4, 8)),
                    "decoder_rank": Choice((16, 32, 64, 96, 128)), "scale": FloatRange(0.25, 1.0),
                    "shared": Choice((True, False)), LR: DEFAULT_LR}
    # N_h must divide r: drawn after the rank, from the head counts that divide it
    draw_rules: ClassVar[dict[str, DrawRule]] = {"n_heads": DrawRule(("rank",), keep=lambda heads, fields: fields["rank"] % heads == 0, named=True)}
    size_fields = rank_fields = ("rank", "decoder_rank", "gate_rank")

    def check(self) -> None:
        if self.granularity not in GRANULARITIES:
            raise self.error("granularity", f"must be one of {', '.join(GRANULARITIES)}")
        if self.rank <= 0:
            raise self.error("rank", "must be a positive integer (paper: 96 for BART, 192 for T5)")
        if self.n_heads <= 0 or self.rank % self.n_heads:
            divisors = [k for k in range(1, min(self.rank, 16) + 1) if self.rank % k == 0]
            raise self.error("n_heads", f"must divide rank={self.rank}; e.g. one of {divisors}")
        if self.gate_rank is not None and self.gate_rank <= 0:
            raise self.error("gate_rank", "must be a positive integer or null (= rank)")
        if self.decoder_rank <= 0:
            raise self.error("decoder_rank", "must be a positive integer (paper: 96)")
        check_positive(self, "scale")
        check_tasks(self)

    def check_model(self, model: VLModel) -> None:
        for field in ("rank", "decoder_rank") + (("gate_rank",) if self.gate_rank else ()):
            check_rank(self, field, model.d_model)

    def inject(self, model: VLModel) -> None:
        d = model.d_model
        zero = self.zero_init if self.zero_init is not None else model.family == "t5"
        gate = partial(make_gate, self.granularity, d, self.gate_rank or self.rank, self.middle_y_sigmoid)
        tasks = own_task_modules(self)
        wrap_sublayers(model, "encoder", ("self_attn", "ffn"),
                       delta=lambda: new_module(model, partial(Bottleneck, d, self.rank), zero, tasks),
                       gate=lambda: new_module(model, gate, zero, tasks),
                       scale=self.scale)
        wrap_cross_attention_values(model, lambda: new_module(model, partial(Bottleneck, d, self.decoder_rank), zero,
                                                              tasks))

    def extra_trainable(self, model: VLModel) -> Iterator[str]:
        return layer_norm_names(model, "encoder")
