"""The search space of a study variant: its method's declared space (vlpet/methods/space.py) with the study
YAML's overrides, fit to the backbone, and define-by-run sampling (Optuna) that keeps every draw valid.

Nothing here knows a method by name: a method's `search_space` gives the defaults, its `draw_rules` the
conditional fields (VL-PET draws `n_heads` from the values that divide the drawn rank), its `rank_fields`
the sizes bounded by d_model (values above it are dropped).

The `designs` space (study variant `designs`, YAML `search: {designs: {...}}`) searches module x
gate x lightweight design in one study (paper Table 9 as a categorical dimension): it draws
`method` first (a bottleneck module with VL-PET's design fields: adapter or compacter), then `gate`
and `lightweight`, then only the fields the drawn module's config has, each as the module's
`draw_rules` say (a small gate fixes lightweight to true; `gate_rank` only with the large gate).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from vlpet.errors import ConfigError, closest
from vlpet.methods import METHODS
from vlpet.methods.base import DESIGN_FIELDS, MethodConfig, field_names, methods_with
from vlpet.methods.layers import GRANULARITIES
from vlpet.methods.space import DEFAULT_LR, LR, Choice, Dist, FloatRange, IntRange, parse_dist

METHOD = "method"
DESIGNS = "designs"  # the study variant and space that search module x gate x lightweight
DESIGN_MODULES = tuple(methods_with(*DESIGN_FIELDS))  # the bottleneck modules with VL-PET's designs
# reduction factors and n that fit both modules (compacter's n divides d / reduction_factor)
DESIGNS_SPACE: dict[str, Dist] = {
    METHOD: Choice(DESIGN_MODULES), "gate": Choice((None, *GRANULARITIES)), "lightweight": Choice((False, True)),
    "reduction_factor": Choice((4, 8, 16)), "hypercomplex_division": Choice((2, 4)), LR: DEFAULT_LR}
# A space draws these first, in this order, because what follows depends on them.
DESIGN_ORDER = (METHOD, "gate", "lightweight")


def default_space(name: str) -> dict[str, Dist]:
    """The default space of a method, or of `designs`."""
    return dict(DESIGNS_SPACE if name == DESIGNS else METHODS[name].search_space)


def parameters(name: str) -> set[str]:
    """The keys a space may have: its method's config fields and `lr`; for `designs`, `method` and the
    fields of every design module."""
    modules = DESIGN_MODULES if name == DESIGNS else (name,)
    return {LR, *(f for m in modules for f in field_names(METHODS[m]))} | ({METHOD} if name == DESIGNS else set())


def space_for(method: str, overrides: dict[str, Any] | None, d_model: int) -> dict[str, Dist]:
    """The default space of a method (or of `designs`) with the YAML overrides applied, checked against
    the config fields (integer sizes positive) and pruned of ranks above `d_model`."""
    valid = parameters(method)
    space = default_space(method)
    for key, value in (overrides or {}).items():
        if key not in valid:
            raise ConfigError(f"search.{method}.{key} is not a parameter of {method}{closest(key, valid)}; "
                              f"valid: {', '.join(sorted(valid))}")
        space[key] = parse_dist(value, f"search.{method}.{key}")
    modules = space.get(METHOD)
    bad = [m for m in (modules.values if isinstance(modules, Choice) else (modules,)) if m not in DESIGN_MODULES]
    if modules is not None and bad:
        raise ConfigError(f"search.{method}.{METHOD}: {', '.join(map(str, bad))} has no gate or lightweight design; "
                          f"choose from {', '.join(DESIGN_MODULES)}")
    classes = [METHODS[m] for m in (DESIGN_MODULES if method == DESIGNS else (method,))]
    for key, optional in _int_fields(classes).items():  # sizes: positive integers, every one of them
        dist = space.get(key)
        bad = [v for v in dist.values if not (_positive_int(v) or optional and v is None)] \
            if isinstance(dist, Choice) else []
        if bad:
            raise ConfigError(f"search.{method}.{key}: {', '.join(map(repr, bad))} is not a positive integer")
    for key in {f: None for cls in classes for f in cls.rank_fields}:
        dist = space.get(key)
        if isinstance(dist, Choice):
            kept = tuple(v for v in dist.values if v is None or v <= d_model)
            if not kept:
                raise ConfigError(f"search.{method}.{key}: no value in {list(dist.values)} is in 1..d_model={d_model}")
            space[key] = Choice(kept)
        elif isinstance(dist, (IntRange, FloatRange)) and (dist.low < 1 or dist.high > d_model):
            raise ConfigError(f"search.{method}.{key}: range [{dist.low}, {dist.high}] must lie in 1..d_model={d_model}")
    return space


def _int_fields(classes: list[type[MethodConfig]]) -> dict[str, bool]:
    """The integer fields of these method configs (all of them sizes or counts), each with whether it may be null."""
    return {f.name: "None" in str(f.type) for cls in classes for f in fields(cls) if str(f.type).startswith("int")}


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def sample(space: dict[str, Dist], trial: Any, fixed: dict[str, Any] | None = None) -> dict[str, Any]:
    """Draw one configuration (define-by-run) from a space, for a variant whose config is `fixed` (a method
    config dict; none for `designs`, which draws its method first). The other fields follow their method's
    `draw_rules`, which see the config as drawn so far, so every draw is a valid config."""
    params: dict[str, Any] = {}
    if METHOD in space:
        params[METHOD] = space[METHOD].sample(trial, METHOD)
    cls = METHODS[params.get(METHOD) or (fixed or {})["method"]]
    config = {f.name: f.default for f in fields(cls)} | (fixed or {}) | params  # what the rules see
    names = [name for name in space if name != METHOD]
    for name in sorted(names, key=lambda name: _draw_order(name, cls)):
        rule = cls.draw_rules.get(name)
        if name != LR and name not in field_names(cls) or rule and not rule.when(config):
            continue  # a field of the other design module, or one that the earlier draws leave out
        dist = space[name]
        if rule is None or isinstance(dist, FloatRange):
            params[name] = config[name] = dist.sample(trial, name)
            continue
        values = dist.values if isinstance(dist, Choice) else tuple(range(dist.low, dist.high + 1))
        kept = tuple(v for v in values if rule.keep(v, config))
        if kept:  # one left of several is set without a draw, unless its name says what it depends on
            value = kept[0] if len(kept) == 1 < len(values) and not rule.named else \
                Choice(kept).sample(trial, rule.optuna_name(name, config))
            params[name] = config[name] = value
    return params


def _draw_order(name: str, cls: type[MethodConfig]) -> int:
    """Sort key: `DESIGN_ORDER` first, then the other parameters, each after those its draw rule follows
    (stable sort: in space order otherwise)."""
    if name in DESIGN_ORDER:
        return DESIGN_ORDER.index(name)
    rule = cls.draw_rules.get(name)
    return len(DESIGN_ORDER) + (1 + max(_draw_order(a, cls) for a in rule.after) if rule else 0)
