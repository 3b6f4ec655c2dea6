"""Building blocks that PET methods inject: bottlenecks, granularity gates and the wrappers that put
them around frozen HF modules. Every trainable tensor sits under a `pet_*` attribute."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

# The paper's code uses HF's `gelu_new` (tanh approximation) in adapters and gates.
GELU = nn.GELU(approximate="tanh")


def _zero(module: nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.zero_()


class PHMLinear(nn.Module):
    """Parameterised hypercomplex multiplication layer (Compacter): W = sum_i A_i (x) B_i.

    A (the per-layer "rule", n x n x n) and B (n x in/n x out/n) are not shared or factorised, as in
    the paper's Compacter baseline (`--shared_phm_rule False --factorized_phm False`). Init as
    Compacter: A ~ N(0, 0.01), B Glorot-uniform, bias 0.
    """

    def __init__(self, in_features: int, out_features: int, n: int):
        super().__init__()
        self.n = n
        self.rule = nn.Parameter(torch.empty(n, n, n))
        self.weight = nn.Parameter(torch.empty(n, in_features // n, out_features // n))
        self.bias = nn.Parameter(torch.zeros(out_features))
        nn.init.normal_(self.rule, std=0.01)
        for i in range(n):
            nn.init.xavier_uniform_(self.weight.data[i])

    def full_weight(self) -> torch.Tensor:
        """The [in, out] matrix sum_i kron(A_i, B_i)."""
        return torch.stack([torch.kron(self.rule[i], self.weight[i]) for i in range(self.n)]).sum(0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.full_weight().to(x.dtype) + self.bias.to(x.dtype)


class Bottleneck(nn.Module):
    """down -> GELU -> up, the modular modification ΔH of adapters and VL-PET.

    VL-PET's multi-head down-projection (N_h heads of d -> r/N_h, concatenated before the element-wise
    GELU) is exactly one d -> r projection whose rows are the heads, with the same parameter count and
    initial distribution, so `n_heads` only needs to divide r and is kept for fidelity.
    """

    def __init__(self, d_model: int, rank: int, *, phm_n: int = 0):
        super().__init__()
        make = (lambda i, o: PHMLinear(i, o, phm_n)) if phm_n else nn.Linear
        self.down = make(d_model, rank)
        self.up = make(rank, d_model)

    def zero_init(self) -> None:
        """Zero the up-projection so ΔH = 0 at step 0."""
        _zero(self.up)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.up(GELU(self.down(h)))


class LargeGate(nn.Module):
    """G_large = σ(GELU(X A + a) C + c): one value per token and channel, from X only."""

    needs_input = True

    def __init__(self, d_model: int, rank: int):
        super().__init__()
        self.down = nn.Linear(d_model, rank)
        self.up = nn.Linear(rank, d_model)

    def zero_init(self) -> None:
        """Zero the up-projection so G = 0.5 at step 0."""
        _zero(self.up)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.up(GELU(self.down(x))))


class MiddleXGate(nn.Module):
    """G_middleX = σ((X + H') w + b): one scalar per token, shared over channels."""

    needs_input = True

    def __init__(self, d_model: int):
        super().__init__()
        self.proj = nn.Linear(d_model, 1)

    def zero_init(self) -> None:
        """Zero the projection so g = 0.5 at step 0."""
        _zero(self.proj)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(x + h))


class MiddleYGate(nn.Module):
    """G_middleY = 1 + z: one free value per channel, shared over tokens and examples.

    The paper's code has no sigmoid here; `sigmoid=True` gives Fig. 3's 1 + σ(z).
    """

    needs_input = False

    def __init__(self, d_model: int, sigmoid: bool = False):
        super().__init__()
        self.z = nn.Parameter(torch.empty(d_model).normal_(std=0.02))  # set explicitly in the paper's code
        self.sigmoid = sigmoid

    def zero_init(self) -> None:
        """z = 0, so G = 1 (no sigmoid) at step 0."""
        _zero(self)

    def forward(self, x: torch.Tensor | None, h: torch.Tensor) -> torch.Tensor:
        return 1 + (torch.sigmoid(self.z) if self.sigmoid else self.z)


class SmallGate(nn.Module):
    """G_small = mean over all tokens of σ([X ; H'] w + b): one scalar per example (no padding mask, as the code)."""

    needs_input = True

    def __init__(self, d_model: int):
        super().__init__()
        self.proj = nn.Linear(2 * d_model, 1)

    def zero_init(self) -> None:
        """Zero the projection so g = 0.5 at step 0."""
        _zero(self.proj)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.proj(torch.cat([x, h], dim=-1))).mean(dim=1, keepdim=True)


GRANULARITIES = ("small", "middleX", "middleY", "large")


def make_gate(granularity: str, d_model: int, rank: int, middle_y_sigmoid: bool = False) -> nn.Module:
    """The granularity-controlled gate G of one sub-layer, shared by VL-PET and the gated
    adapter/Compacter of Table 9. `rank` is r_g, used by the large gate only; `middle_y_sigmoid`
    selects Fig. 3's 1 + σ(z) for middleY. Gates are plain linear layers whatever the adapter is."""
    if granularity == "large":
        return LargeGate(d_model, rank)
    if granularity == "middleX":
        return MiddleXGate(d_model)
    if granularity == "middleY":
        return MiddleYGate(d_model, sigmoid=middle_y_sigmoid)
    if granularity == "small":
        return SmallGate(d_model)
    raise ValueError(f"unknown gate granularity {granularity!r}; valid: {', '.join(GRANULARITIES)}")


class AdaptedSublayer(nn.Module):
    """Wraps a frozen sub-layer whose output is H: returns s · G(X, H') ⊙ H' with H' = H + ΔH(H).

    ΔH (`pet_delta`) and G (`pet_gate`) are optional. X, the residual stream entering the sub-layer,
    is captured by `capture_input`, registered as a forward pre-hook on the sub-layer's tap module.
    Tuple outputs (attention modules) are modified in their first element.
    """

    def __init__(self, base: nn.Module, delta: nn.Module | None, gate: nn.Module | None, scale: float = 1.0):
        super().__init__()
        self.base = base
        self.pet_delta = delta
        self.pet_gate = gate
        self.scale = scale
        self._x: torch.Tensor | None = None

    @property
    def needs_input(self) -> bool:
        """Whether the gate reads X (so a pre-hook must capture it)."""
        return bool(getattr(self.pet_gate, "needs_input", False))

    def capture_input(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """Forward pre-hook on the tap module: remember X for the gate."""
        self._x = args[0] if args else kwargs["hidden_states"]

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        out = self.base(*args, **kwargs)
        h = out[0] if isinstance(out, tuple) else out
        if self.pet_delta is not None:
            h = h + self.pet_delta(h)
        if self.pet_gate is not None:
            x, self._x = self._x, None
            h = self.pet_gate(x, h) * h
        if self.scale != 1.0:
            h = h * self.scale
        return (h, *out[1:]) if isinstance(out, tuple) else h


class PerTask(nn.Module):
    """One module per task (`pet_by_task`), the one of the batch's task answering: VL-Adapter's per-task form
    of the modules that the paper's scripts share across tasks (`--use_single_adapter`). `VLModel.set_task`
    names the task (it sets every `active_task`)."""

    def __init__(self, modules: dict[str, nn.Module]):
        super().__init__()
        self.pet_by_task = nn.ModuleDict(modules)
        self.active_task: str | None = None

    @property
    def needs_input(self) -> bool:
        """Whether the modules read X (gates: see AdaptedSublayer)."""
        return any(getattr(m, "needs_input", False) for m in self.pet_by_task.values())

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self.active_task not in self.pet_by_task:
            raise RuntimeError(f"per-task modules (shared: false) for {', '.join(self.pet_by_task)}: call "
                               f"model.set_task(<one of them>) before the forward pass (the task is {self.active_task!r})")
        return self.pet_by_task[self.active_task](*args, **kwargs)


class ParallelAdapter(nn.Module):
    """base(E) + ΔH(E): a bottleneck in parallel with a frozen projection (VL-PET's decoder value adapter)."""

    def __init__(self, base: nn.Module, delta: nn.Module):
        super().__init__()
        self.base = base
        self.pet_delta = delta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.pet_delta(x)


class LoRALinear(nn.Module):
    """base(x) + B A dropout(x) · alpha / r, numerically PEFT's LoRA (A Kaiming-uniform a=√5, B = 0)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__()
        self.base = base
        self.pet_lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.pet_lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.pet_lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.pet_lora_B.weight)
        self.dropout = nn.Dropout(dropout)
        self.scaling = alpha / rank

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.base(x) + self.pet_lora_B(self.pet_lora_A(self.dropout(x))) * self.scaling


class DoRALinear(LoRALinear):
    """DoRA (Liu et al., ICML 2024): the LoRA-updated weight split into a trained magnitude per output row and
    its direction, m · (W + s B A) / ||W + s B A||, numerically PEFT's `use_dora=True` LoRA. The norm is
    treated as a constant (no gradient, DoRA section 4.3). With dropout active the frozen path keeps the
    undropped input, as PEFT computes it: base(x) + (m / ||.|| - 1) W dropout(x) + m / ||.|| · s B A dropout(x)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float):
        super().__init__(base, rank, alpha, dropout)
        # m starts at the row norms of W + s B A = W (B = 0): the layer starts as the base layer
        self.pet_dora_magnitude = nn.Parameter(self._weight_norm().clone())

    def _weight_norm(self) -> torch.Tensor:
        update = self.pet_lora_B.weight @ self.pet_lora_A.weight
        return torch.linalg.norm(self.base.weight + self.scaling * update, dim=1).detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.pet_dora_magnitude / self._weight_norm()
        result = self.base(x)
        dropped = self.dropout(x)
        if not self.training or self.dropout.p == 0:  # dropout is the identity: reuse the base output
            frozen = result - self.base.bias if self.base.bias is not None else result
        else:
            frozen = F.linear(dropped, self.base.weight)
        return result + (scale - 1) * frozen + scale * self.pet_lora_B(self.pet_lora_A(dropped)) * self.scaling
