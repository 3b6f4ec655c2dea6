"""Injection helpers shared by the methods: wrap sub-layers, value projections and attention
projections of the unmodified HF backbone, initialising new modules as the paper's code did."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from torch import nn

from vlpet.methods.base import replace_module
from vlpet.methods.layers import AdaptedSublayer, ParallelAdapter, PerTask
from vlpet.models.layout import Stack
from vlpet.models.vl_model import VLModel, init_new_linear

Factory = Callable[[], nn.Module]


def new_module(model: VLModel, factory: Factory, zero_init: bool, tasks: tuple[str, ...] | None = None) -> nn.Module:
    """Build a PET module with the backbone family's init, zeroing its output side if asked; with `tasks`, one
    such module per task (`PerTask`)."""
    if tasks:
        return PerTask({task: new_module(model, factory, zero_init) for task in tasks})
    module = factory()
    init_new_linear(module, model.family)
    if zero_init:
        module.zero_init()
    return module


def wrap_sublayers(model: VLModel, stack: Stack, sites: Iterable[str], delta: Factory | None,
                   gate: Factory | None = None, scale: float = 1.0) -> None:
    """Wrap the `sites` (self_attn / cross_attn / ffn) of every layer of `stack` with an AdaptedSublayer."""
    layout = model.layout
    for layer in layout.layers(model.backbone, stack):
        for name in sites:
            site = layout.sites(stack)[name]
            wrapper = AdaptedSublayer(layer.get_submodule(site.out), delta() if delta else None,
                                      gate() if gate else None, scale)
            replace_module(layer, site.out, wrapper)
            if wrapper.needs_input:
                layer.get_submodule(site.tap).register_forward_pre_hook(wrapper.capture_input, with_kwargs=True)


def wrap_cross_attention_values(model: VLModel, delta: Factory) -> None:
    """Add a parallel bottleneck to the value projection of every decoder cross-attention."""
    for attn in model.layout.cross_attentions(model.backbone):
        replace_module(attn, model.layout.value_proj, ParallelAdapter(getattr(attn, model.layout.value_proj), delta()))


def wrap_attention_projections(model: VLModel, names: Iterable[str], wrap: Callable[[nn.Linear], nn.Module]) -> None:
    """Replace the named projections (e.g. q and v) of every attention module with `wrap(projection)`."""
    for attn in model.layout.attentions(model.backbone):
        for name in names:
            replace_module(attn, name, wrap(getattr(attn, name)))
