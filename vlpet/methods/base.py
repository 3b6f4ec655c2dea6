"""The PET method contract: a typed, self-validating config per method, a registry by name, and
`apply_method`, which injects a method into a VL model and freezes what the method freezes.

Trainability is by name: after injection, a parameter trains when its name contains `pet_` (every
module a method adds is attached under a `pet_*` attribute), belongs to the visual embedding (trained
by every method of the paper), or is one of the backbone parameters the method unfreezes
(`extra_trainable`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from torch import nn

from vlpet.config_base import Config
from vlpet.errors import ConfigError, build_dataclass, unknown
from vlpet.methods.space import DEFAULT_LR, LR, Dist, DrawRule
from vlpet.models.vl_model import VLModel

PET_PREFIX = "pet_"
ALWAYS_TRAINABLE = ("visual_embedding.",)

METHODS: dict[str, type[MethodConfig]] = {}

# VL-PET's designs applied to other methods (Table 9) are fields of those methods' configs; on a method
# without the field, the error says what the field is for instead of "not a valid key".
DESIGN_FIELDS = {"gate": "adds VL-PET's granularity-controlled gate to a bottleneck module's output",
                 "lightweight": "applies VL-PET's lightweight designs to a bottleneck module"}


def register_method(cls: type[MethodConfig]) -> type[MethodConfig]:
    """Class decorator: make a MethodConfig subclass available under its `method` name."""
    METHODS[cls.method] = cls
    return cls


@dataclass(frozen=True)
class MethodConfig(Config):
    """Base class of every PET method config. Subclasses are frozen dataclasses whose fields are checked
    against their types on construction, then by `check`, and against a model by `check_model`.

    Beside its fields a method declares its search (vlpet/methods/space.py): `search_space`, the default
    distributions of its fields and `lr`; `draw_rules`, the fields drawn only given others; `size_fields`,
    the sizes that grow with d_model (the paper's settings are scaled by d_model / 768), of which
    `rank_fields` must also stay within 1..d_model."""

    method: ClassVar[str] = ""
    search_space: ClassVar[dict[str, Dist]] = {LR: DEFAULT_LR}
    draw_rules: ClassVar[dict[str, DrawRule]] = {}
    size_fields: ClassVar[tuple[str, ...]] = ()
    rank_fields: ClassVar[tuple[str, ...]] = ()

    def check_model(self, model: VLModel) -> None:
        """Validate the config against a concrete model (e.g. rank <= d_model)."""

    def inject(self, model: VLModel) -> None:
        """Add this method's modules (under `pet_*` names) to `model`."""

    def extra_trainable(self, model: VLModel) -> Iterator[str]:
        """Names of backbone parameters this method unfreezes besides its own modules."""
        return iter(())

    def error(self, field: str, fix: str) -> ConfigError:
        """A ConfigError naming `<method>.<field>` and how to fix it."""
        return ConfigError(f"{self.method}.{field}={getattr(self, field, None)!r}: {fix}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict with the method name, for YAML/JSON and checkpoints."""
        return {"method": self.method, **super().to_dict()}


def check_rank(cfg: MethodConfig, field: str, d_model: int) -> None:
    """A bottleneck or low rank must be in 1..d_model."""
    rank = getattr(cfg, field)
    if not 0 < rank <= d_model:
        raise cfg.error(field, f"must be in 1..d_model={d_model}")


def check_positive(cfg: MethodConfig, *names: str) -> None:
    """Each named field must be a finite number > 0."""
    for name in names:
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            raise cfg.error(name, "must be a finite number > 0")


IMAGE_TASKS = ("vqa", "gqa", "nlvr", "caption")  # the default `tasks` of task-conditioned methods


def check_tasks(cfg: MethodConfig) -> None:
    """`cfg.tasks` must be a non-empty list of distinct task names."""
    tasks = cfg.tasks
    if not (tasks and all(isinstance(t, str) and t for t in tasks) and len(set(tasks)) == len(tasks)):
        raise cfg.error("tasks", "must be a non-empty list of distinct task names, e.g. [vqa, gqa, nlvr, caption]")


def own_task_modules(cfg: MethodConfig) -> tuple[str, ...] | None:
    """The tasks that get modules of their own (`shared: false`), or None: one set shared by every task."""
    return None if cfg.shared else cfg.tasks


def field_names(cls: type[MethodConfig]) -> set[str]:
    """The config fields of a method class."""
    return {f.name for f in fields(cls)}


def methods_with(*names: str) -> list[str]:
    """The registered methods whose config has every field in `names` (e.g. 'gate': adapter, compacter)."""
    return sorted(method for method, cls in METHODS.items() if set(names) <= field_names(cls))


def method_from_dict(data: dict[str, Any]) -> MethodConfig:
    """Build a method config from `{"method": name, **fields}`; unknown names/keys give a clear error."""
    data = dict(data)
    name = data.pop("method", None)
    if name is None:
        raise ConfigError(f"method config needs a 'method' key; valid: {', '.join(sorted(METHODS))}")
    if name not in METHODS:
        raise unknown("method", name, METHODS)
    for key, purpose in DESIGN_FIELDS.items():
        if key in data and key not in field_names(METHODS[name]):
            raise ConfigError(f"{name}.{key}: {key} {purpose}, a field of {', '.join(methods_with(key))} only, "
                              f"not of method={name}; set method to one of them or drop {key}")
    return build_dataclass(METHODS[name], data, name)


def layer_norm_names(model: VLModel, stack: str | None = None) -> Iterator[str]:
    """Parameter names of the backbone's layer norms (one stack's, or all when stack is None)."""
    prefix = "backbone." + (model.layout.stack_root(stack) + "." if stack else "")
    for mod_name, module in model.named_modules():
        if isinstance(module, model.layout.layer_norm_types) and mod_name.startswith(prefix):
            for p_name, _ in module.named_parameters(recurse=False):
                yield f"{mod_name}.{p_name}"


def bias_names(model: VLModel) -> Iterator[str]:
    """Every backbone bias vector (attention, FFN and layer norms)."""
    return (n for n, _ in model.named_parameters() if n.startswith("backbone.") and n.endswith(".bias"))


def apply_method(model: VLModel, cfg: MethodConfig) -> VLModel:
    """Inject `cfg` into `model` in place, freeze all but what the method trains, and return the model."""
    if model.method is not None:
        raise ConfigError(f"model already has method {model.method.method!r}; build a fresh model to apply {cfg.method!r}")
    cfg.check_model(model)
    cfg.inject(model)
    extra = set(cfg.extra_trainable(model))
    for name, param in model.named_parameters():
        param.requires_grad_(PET_PREFIX in name or name.startswith(ALWAYS_TRAINABLE) or name in extra)
    model.method = cfg
    return model


def replace_module(root: nn.Module, path: str, new: nn.Module) -> None:
    """Swap the submodule at dotted `path` for `new`."""
    parent, _, child = path.rpartition(".")
    setattr(root.get_submodule(parent) if parent else root, child, new)
