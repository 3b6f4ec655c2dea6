"""Search spaces per PET method, declared in one place and overridable from a study YAML.

A space maps a method field (or `lr`, the learning rate) to a distribution. Sampling is
define-by-run (Optuna), so conditional parameters stay valid: VL-PET's `n_heads` is drawn only from
the values that divide the sampled rank, and ranks above the backbone's d_model are dropped.

The `designs` space (study variant `designs`, YAML `search: {designs: {...}}`) searches module x
gate x lightweight design in one study (paper Table 9 as a categorical dimension): it draws
`method` first (a bottleneck module: adapter or compacter), then `gate` (null or a granularity),
then `lightweight`, which is fixed to true (and still recorded) when the gate is small, since a
small gate needs the lightweight design; then only the fields the drawn module's config has
(`hypercomplex_division` for compacter only), `gate_rank` only with the large gate and
`decoder_rank` only with the lightweight design. Every draw is a valid config by construction.

YAML forms: `{choice: [8, 16, 32]}`, `{uniform: [0.3, 1.0]}`, `{loguniform: [1e-4, 3e-3]}`,
`{int: [1, 8]}`, `{intlog: [4, 128]}`, or a plain value to fix the parameter.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from vlpet.errors import ConfigError, closest
from vlpet.methods import METHODS
from vlpet.methods.base import DESIGN_FIELDS, field_names, methods_with
from vlpet.methods.layers import GRANULARITIES


@dataclass(frozen=True)
class Choice:
    """One of a list of values (categorical)."""

    values: tuple[Any, ...]

    def sample(self, trial: Any, name: str) -> Any:
        return trial.suggest_categorical(name, list(self.values))


@dataclass(frozen=True)
class FloatRange:
    """A float in [low, high], log-uniform when `log`."""

    low: float
    high: float
    log: bool = False

    def sample(self, trial: Any, name: str) -> float:
        return trial.suggest_float(name, self.low, self.high, log=self.log)


@dataclass(frozen=True)
class IntRange:
    """An int in [low, high], log-scaled when `log`."""

    low: int
    high: int
    log: bool = False

    def sample(self, trial: Any, name: str) -> int:
        return trial.suggest_int(name, self.low, self.high, log=self.log)


Dist = Choice | FloatRange | IntRange
LR = "lr"
METHOD = "method"
SHARED = "shared"  # one set of modules for all tasks (first: the paper's), or one per task
DESIGNS = "designs"  # the study variant and space that search module x gate x lightweight
DESIGN_MODULES = tuple(methods_with(*DESIGN_FIELDS))  # the bottleneck modules with VL-PET's designs

# Ranges around the paper's settings: r = 96 (BART) / 192 (T5), N_h = 4, s = 1 / 0.3,
# lr 1e-3 (BART PET) / 3e-4 (T5) / 1e-4 (full fine-tuning).
DEFAULT_SPACES: dict[str, dict[str, Dist]] = {
    "vlpet": {"rank": Choice((8, 16, 32, 48, 64, 96, 128, 192)), "n_heads": Choice((1, 2, 4, 8)),
              "decoder_rank": Choice((16, 32, 64, 96, 128)), "scale": FloatRange(0.25, 1.0),
              SHARED: Choice((True, False)), LR: FloatRange(1e-4, 3e-3, log=True)},
    "adapter": {"reduction_factor": Choice((2, 4, 8, 16, 32)), SHARED: Choice((True, False)),
                LR: FloatRange(1e-4, 3e-3, log=True)},
    "compacter": {"reduction_factor": Choice((4, 8, 16)), "hypercomplex_division": Choice((2, 4)),
                  SHARED: Choice((True, False)), LR: FloatRange(1e-4, 3e-3, log=True)},
    "lora": {"rank": Choice((4, 8, 16, 32, 64, 128)), LR: FloatRange(1e-4, 3e-3, log=True)},
    "dora": {"rank": Choice((4, 8, 16, 32, 64, 128)), LR: FloatRange(1e-4, 3e-3, log=True)},
    "prompt": {"length": Choice((10, 20, 40, 80)), LR: FloatRange(1e-4, 3e-3, log=True)},
    "hyperformer": {LR: FloatRange(1e-4, 3e-3, log=True)},
    "bitfit": {LR: FloatRange(1e-4, 3e-3, log=True)},
    "full": {LR: FloatRange(1e-5, 1e-3, log=True)},
    # reduction factors and n that fit both modules (compacter's n divides d / reduction_factor)
    DESIGNS: {METHOD: Choice(DESIGN_MODULES), "gate": Choice((None, *GRANULARITIES)),
              "lightweight": Choice((False, True)), "reduction_factor": Choice((4, 8, 16)),
              "hypercomplex_division": Choice((2, 4)), LR: FloatRange(1e-4, 3e-3, log=True)},
}
# A design space draws these first, in this order, because what follows depends on them.
DESIGN_ORDER = (METHOD, "gate", "lightweight")
# Design fields that exist only given earlier draws (AdapterConfig.check's rules).
DESIGN_REQUIRES = {"gate_rank": lambda p: p["gate"] == "large", "decoder_rank": lambda p: p["lightweight"]}

# Fields whose value must not exceed the backbone's hidden size.
RANK_FIELDS = ("rank", "decoder_rank", "gate_rank")


def parse_dist(value: Any, where: str) -> Dist:
    """A distribution from its YAML form, validated (non-empty choices, low < high, log bounds > 0)."""
    if not isinstance(value, dict):
        return Choice((value,))
    if len(value) != 1:
        raise ConfigError(f"{where}: give exactly one of choice, uniform, loguniform, int, intlog; got {sorted(value)}")
    (kind, args), = value.items()
    if kind == "choice":
        if not isinstance(args, list) or not args:
            raise ConfigError(f"{where}.choice must be a non-empty list")
        return Choice(tuple(args))
    if kind not in ("uniform", "loguniform", "int", "intlog"):
        raise ConfigError(f"{where}: unknown distribution {kind!r}{closest(kind, ('choice', 'uniform', 'loguniform', 'int', 'intlog'))}")
    if not (isinstance(args, list) and len(args) == 2
            and all(isinstance(a, int | float) and not isinstance(a, bool) and math.isfinite(a) for a in args)):
        raise ConfigError(f"{where}.{kind} must be [low, high], two finite numbers")
    low, high = args
    if not low < high:
        raise ConfigError(f"{where}.{kind}=[{low}, {high}] is empty or inverted; need low < high")
    log = kind in ("loguniform", "intlog")
    if log and low <= 0:
        raise ConfigError(f"{where}.{kind} needs low > 0 on a log scale, got {low}")
    if kind.startswith("int"):
        if not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(f"{where}.{kind} bounds must be integers")
        return IntRange(int(low), int(high), log)
    return FloatRange(float(low), float(high), log)


def parameters(name: str) -> set[str]:
    """The keys a space may have: its method's config fields and `lr`; for `designs`, `method` and the
    fields of every design module."""
    modules = DESIGN_MODULES if name == DESIGNS else (name,)
    return {LR, *(f for m in modules for f in field_names(METHODS[m]))} | ({METHOD} if name == DESIGNS else set())


def space_for(method: str, overrides: dict[str, Any] | None, d_model: int) -> dict[str, Dist]:
    """The default space of a method (or of `designs`) with the YAML overrides applied, checked against
    the config fields and pruned of ranks above `d_model`."""
    valid = parameters(method)
    space = dict(DEFAULT_SPACES[method])
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
    for key in (*RANK_FIELDS, "n_heads"):  # sizes: positive integers, every one of them
        dist = space.get(key)
        bad = [v for v in dist.values if not _positive_int(v)] if isinstance(dist, Choice) else []
        if bad:
            raise ConfigError(f"search.{method}.{key}: {', '.join(map(repr, bad))} is not a positive integer")
    for key in RANK_FIELDS:
        dist = space.get(key)
        if isinstance(dist, Choice):
            kept = tuple(v for v in dist.values if v <= d_model)
            if not kept:
                raise ConfigError(f"search.{method}.{key}: no value in {list(dist.values)} is in 1..d_model={d_model}")
            space[key] = Choice(kept)
        elif isinstance(dist, (IntRange, FloatRange)) and (dist.low < 1 or dist.high > d_model):
            raise ConfigError(f"search.{method}.{key}: range [{dist.low}, {dist.high}] must lie in 1..d_model={d_model}")
    return space


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def sample(space: dict[str, Dist], trial: Any) -> dict[str, Any]:
    """Draw one configuration (define-by-run). `n_heads` is conditional on `rank`: it is sampled under
    the name `n_heads|rank=R` from the candidates that divide R, so every draw is valid. A design space
    draws module, gate and lightweight first and the rest as `_applies` says (module docstring)."""
    params: dict[str, Any] = {}
    for name in sorted(space, key=_draw_order):
        if name == "n_heads" or not _applies(name, params):
            continue
        # a small gate averages over all tokens, so only the lightweight (encoder-only) design fits it
        small = name == "lightweight" and params.get("gate") == "small"
        params[name] = True if small else space[name].sample(trial, name)
    if "n_heads" in space:
        heads = space["n_heads"]
        rank = params.get("rank", 96)
        candidates = heads.values if isinstance(heads, Choice) else tuple(range(heads.low, heads.high + 1))
        divisors = tuple(h for h in candidates if h > 0 and rank % h == 0) or (1,)
        params["n_heads"] = Choice(divisors).sample(trial, f"n_heads|rank={rank}")
    return params


def _draw_order(name: str) -> int:
    """Sort key: `DESIGN_ORDER` first, every other parameter after them in its space order (stable sort)."""
    return DESIGN_ORDER.index(name) if name in DESIGN_ORDER else len(DESIGN_ORDER)


def _applies(name: str, params: dict[str, Any]) -> bool:
    """Whether a parameter is drawn given the earlier draws: always in a method's space (its other
    fields are fixed by the variant); in a design space only if the drawn module has the field and
    `DESIGN_REQUIRES` allows it."""
    if METHOD not in params:
        return True
    requires = DESIGN_REQUIRES.get(name)
    return name in parameters(params[METHOD]) and (requires is None or requires(params))
