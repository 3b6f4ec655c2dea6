"""Hyperformer baseline (Karimi Mahabadi et al., 2021) as the paper runs it (`--use_hyperformer
--unique_hyper_net --projected_task_embedding_dim 8`, reduction factor 8, all layer norms trained).

Adapters sit where VL-Adapter's do (after encoder self-attention and FFN, decoder self-attention,
cross-attention and FFN; H' = H + ΔH(H)), but their weights are not parameters: a hyper-network
generates them from the current task. One controller per stack:

    e = [task embedding (512, random, trainable) ; layer-id embedding (512)]
    z = LayerNorm(Linear(128 -> 8)(ReLU(Linear(1024 -> 128)(e))))       TaskHyperNet, LN(8)
    W_down, b_down, W_up, b_up = Linear(8 -> r·d)(z), Linear(8 -> r)(z), Linear(8 -> d·r)(z), Linear(8 -> d)(z)
    ΔH = GELU(H W_down^T + b_down) W_up^T + b_up

with one set of the four generators per sub-layer kind of the stack (encoder: self-attention, FFN;
decoder: self-attention, cross-attention, FFN) and the task embeddings shared by both stacks.

That structure is the one the paper's counts pin down (BART-base, d = 768, r = 96, 4 tasks):

    task embeddings                 4 x 512                                        2,048
    per stack: layer-id embedding   6 x 512 = 3,072; TaskHyperNet 1024·128 + 128 + 128·8 + 8
               = 132,232; LN(8) 16                                        2 x 135,320 = 270,640
    per sub-layer kind: generators  8·73,728 + 73,728 = 663,552 (W_down, W_up each), 8·96 + 96
               = 864 (b_down), 8·768 + 768 = 6,912 (b_up): 1,334,880      5 x 1,334,880 = 6,674,400
    hyper-network                                                                  6,947,088
    trainable = 6,947,088 + all LNs 49,152 + visual projector 1,582,848 =          8,579,088
    total     = backbone 139,420,416 + vocab rows 153,600 + 1,582,848 + 6,947,088 = 148,103,952

i.e. 5.793 % -> 5.79 ✔. Hyperformer++'s single generator set with an extra sub-layer-type embedding
(TaskHyperNet 1536 -> 128 -> 8) would give 4,708,592 trainable, 3.26 %, so it is not what ran.

The task comes from `VLModel.set_task(name)`, called before each single-task batch. Deviation: the
task embeddings are one [tasks, 512] tensor rather than one parameter per task, so that every
parameter receives a gradient each step (DDP without `find_unused_parameters` needs it); AdamW's
moments therefore keep moving the other tasks' rows a little after they were last used.
Initialisation follows each family's code: hyperformer's N(0, 0.01) linears and N(0, 1) embeddings,
which HF BART's `_init_weights` then re-draws as N(0, 0.02); task embeddings N(0, 1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial

import torch
from torch import nn

from vlpet.errors import ConfigError
from vlpet.methods.adapter import ALL_SITES, check_reduction_factor
from vlpet.methods.base import IMAGE_TASKS, MethodConfig, check_tasks, layer_norm_names, register_method
from vlpet.methods.inject import new_module, wrap_sublayers
from vlpet.methods.layers import GELU
from vlpet.models.vl_model import VLModel

AdapterWeights = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class AdapterGenerator(nn.Module):
    """Linear maps from the projected embedding z to one adapter's W_down [r, d], b_down, W_up [d, r], b_up."""

    def __init__(self, projected_dim: int, d_model: int, rank: int):
        super().__init__()
        self.d_model, self.rank = d_model, rank
        self.down_weight = nn.Linear(projected_dim, rank * d_model)
        self.down_bias = nn.Linear(projected_dim, rank)
        self.up_weight = nn.Linear(projected_dim, d_model * rank)
        self.up_bias = nn.Linear(projected_dim, d_model)

    def forward(self, z: torch.Tensor) -> AdapterWeights:
        return (self.down_weight(z).view(self.rank, self.d_model), self.down_bias(z),
                self.up_weight(z).view(self.d_model, self.rank), self.up_bias(z))


class HyperNetController(nn.Module):
    """Generates the adapters of one stack from (task embedding, layer id, sub-layer kind)."""

    def __init__(self, n_layers: int, sites: tuple[str, ...], d_model: int, rank: int, task_dim: int,
                 hidden_dim: int, projected_dim: int):
        super().__init__()
        self.layer_embedding = nn.Embedding(n_layers, task_dim)
        self.task_hypernet = nn.Sequential(nn.Linear(2 * task_dim, hidden_dim), nn.ReLU(),
                                           nn.Linear(hidden_dim, projected_dim))
        self.norm = nn.LayerNorm(projected_dim, eps=1e-6)
        self.generators = nn.ModuleDict({site: AdapterGenerator(projected_dim, d_model, rank) for site in sites})

    def forward(self, task_embedding: torch.Tensor, layer_id: int, site: str) -> AdapterWeights:
        e = torch.cat([task_embedding, self.layer_embedding.weight[layer_id]])
        return self.generators[site](self.norm(self.task_hypernet(e)))


class Hyperformer(nn.Module):
    """The task embeddings and one controller per stack, registered once on the model (`pet_hyperformer`).

    `active_task` is set by `VLModel.set_task`; the adapters ask `adapter_weights` for theirs.
    """

    def __init__(self, tasks: tuple[str, ...], stacks: dict[str, tuple[int, tuple[str, ...]]], d_model: int,
                 rank: int, task_dim: int, hidden_dim: int, projected_dim: int):
        super().__init__()
        self.tasks = tasks
        self.active_task: str | None = None
        self.task_embedding = nn.Parameter(torch.randn(len(tasks), task_dim))
        self.controllers = nn.ModuleDict({
            stack: HyperNetController(n_layers, sites, d_model, rank, task_dim, hidden_dim, projected_dim)
            for stack, (n_layers, sites) in stacks.items()})
        for module in self.modules():  # hyperformer's `linear_layer` init
            if isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, std=0.01)
                nn.init.zeros_(module.bias)

    def adapter_weights(self, stack: str, layer_id: int, site: str) -> AdapterWeights:
        """The generated weights of one adapter for the active task."""
        if self.active_task is None:
            raise RuntimeError("hyperformer generates adapter weights per task: call model.set_task(name) before "
                               "the forward / generate of each batch")
        if self.active_task not in self.tasks:
            raise ConfigError(f"hyperformer.tasks={list(self.tasks)} has no embedding for task {self.active_task!r}; "
                              "add it to hyperformer.tasks")
        task = self.task_embedding[self.tasks.index(self.active_task)]
        return self.controllers[stack](task, layer_id, site)


class HyperAdapter(nn.Module):
    """ΔH(H) = GELU(H W_down^T + b_down) W_up^T + b_up at one adapter position, weights from the hyper-network."""

    def __init__(self, hyper: Hyperformer, stack: str, layer_id: int, site: str):
        super().__init__()
        # a plain reference, not a submodule: the hyper-network's parameters are registered once, on the model
        self.__dict__["hyper"] = hyper
        self.position = (stack, layer_id, site)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        down_w, down_b, up_w, up_b = self.hyper.adapter_weights(*self.position)
        return nn.functional.linear(GELU(nn.functional.linear(h, down_w, down_b)), up_w, up_b)


@register_method
@dataclass(frozen=True)
class HyperformerConfig(MethodConfig):
    """Attributes:
        reduction_factor: generated adapters' bottleneck is d_model / reduction_factor (paper: 8).
        tasks: the tasks that get an embedding; `VLModel.set_task` must name one of them.
        task_embedding_dim: size of the task and layer-id embeddings (paper: 512).
        hidden_dim: TaskHyperNet's hidden size (paper: 128).
        projected_dim: size of the projected embedding z fed to the generators (paper: 8).
    """

    method = "hyperformer"
    reduction_factor: int = 8
    tasks: tuple[str, ...] = IMAGE_TASKS
    task_embedding_dim: int = 512
    hidden_dim: int = 128
    projected_dim: int = 8

    def check(self) -> None:
        for name in ("reduction_factor", "task_embedding_dim", "hidden_dim", "projected_dim"):
            if getattr(self, name) <= 0:
                raise self.error(name, "must be a positive integer")
        check_tasks(self)

    def check_model(self, model: VLModel) -> None:
        check_reduction_factor(self, model)

    def inject(self, model: VLModel) -> None:
        stacks = {stack: (len(model.layout.layers(model.backbone, stack)), sites) for stack, sites in ALL_SITES}
        rank = model.d_model // self.reduction_factor
        hyper = new_module(model, partial(Hyperformer, self.tasks, stacks, model.d_model, rank, self.task_embedding_dim,
                                          self.hidden_dim, self.projected_dim), False)
        model.pet_hyperformer = hyper
        for stack, (n_layers, sites) in stacks.items():
            # wrap_sublayers visits the layers in order and, in each, the sites in the given order
            adapters = iter([HyperAdapter(hyper, stack, i, site) for i in range(n_layers) for site in sites])
            wrap_sublayers(model, stack, sites, delta=adapters.__next__)

    def extra_trainable(self, model: VLModel) -> Iterator[str]:
        return layer_norm_names(model)
