"""What a method declares about its own search: the distributions of its default search space and the rules
that keep every draw a valid config. The study's searcher (`studies/plan/search_space.py`) reads them from the
method class and knows no method by name.

A space maps a config field, or `lr` (the learning rate), to a distribution. A `DrawRule` makes a field
conditional on fields drawn before it: whether it is drawn at all (`when`), and which of its values fit
(`keep`). Sampling calls Optuna's `suggest_*` on whatever trial it is given (define-by-run).

YAML forms (`parse_dist`): `{choice: [8, 16, 32]}`, `{uniform: [0.3, 1.0]}`, `{loguniform: [1e-4, 3e-3]}`,
`{int: [1, 8]}`, `{intlog: [4, 128]}`, or a plain value to fix the parameter.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vlpet.errors import ConfigError, closest

LR = "lr"  # the learning rate's key in a space: a training setting, searched beside the method's fields


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
DEFAULT_LR = FloatRange(1e-4, 3e-3, log=True)  # around the paper's PET rates (1e-3 BART, 3e-4 T5)


@dataclass(frozen=True)
class DrawRule:
    """How one field is drawn given the fields in `after`, which are drawn (or fixed) before it.

    `when(fields)`: whether the field is drawn at all; otherwise it keeps the config's value. `keep(value,
    fields)`: which of its values fit (an int range is enumerated for it; a float range is drawn whole); none
    left: not drawn; one left of several: set without a draw, unless `named`. `named`: the choices change with
    `after`, so the draw's Optuna name carries their values (`n_heads|rank=96`), since a parameter's Optuna
    distribution must not change between trials.
    """

    after: tuple[str, ...]
    when: Callable[[dict[str, Any]], bool] = lambda fields: True
    keep: Callable[[Any, dict[str, Any]], bool] = lambda value, fields: True
    named: bool = False

    def optuna_name(self, name: str, fields: dict[str, Any]) -> str:
        return f"{name}|" + ",".join(f"{key}={fields[key]}" for key in self.after) if self.named else name


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
