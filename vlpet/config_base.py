"""The base of every config dataclass (run sections, PET methods, study settings): each field is checked
against its type hint, and against the range its field metadata gives (`bounded`; `metadata={"problem": ...}` words a field's own message), when the config is
built; a subclass's `check` adds what types and ranges cannot say. A bad value raises a ConfigError
that names `<section>.<field>`, the value, and what it must be.

    @dataclass(frozen=True)
    class TrainConfig(Config):
        section: ClassVar[str] = "train"
        epochs: int = bounded(20, ge=1)     # train.epochs=0 must be an integer >= 1
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, fields
from typing import Any, ClassVar, get_type_hints

from vlpet.errors import ConfigError, shown

_NAMES = {int: "an integer", float: "a finite number", bool: "a bool (true or false)", str: "a string"}


# the seeds every library here takes: numpy's legacy np.random.seed refuses anything outside [0, 2**32)
MAX_SEED = 2**32 - 1


def bounded(default: Any, *, ge: float | None = None, gt: float | None = None, le: float | None = None,
            lt: float | None = None) -> Any:
    """A numeric field with a default and a range: ge/gt (>=, >) from below, le/lt (<=, <) from above."""
    return dataclasses.field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt})


@dataclass(frozen=True)
class Config:
    """Typed, self-validating, frozen config. Subclasses set `section` (the prefix of their messages) and
    may override `check` (and `error`, for another message format)."""

    section: ClassVar[str] = ""

    def __post_init__(self) -> None:
        hints = get_type_hints(type(self))
        for f in fields(self):
            object.__setattr__(self, f.name, self._checked(f, hints[f.name], getattr(self, f.name)))
        self.check()

    def check(self) -> None:
        """Validate what the types and ranges do not; raise `self.error(field, problem)`."""

    def error(self, field: str, problem: str) -> ConfigError:
        """The ConfigError `<section>.<field>=<value> <problem>`."""
        return ConfigError(f"{self.section}.{field}={shown(getattr(self, field, None))} {problem}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/YAML-safe dicts (tuples as lists); building the class from them gives an equal config."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def _checked(self, f: dataclasses.Field, hint: Any, value: Any) -> Any:
        optional, hint = _unwrap_optional(hint)
        if value is None:
            if optional:
                return None
            raise self._bad(f, hint, optional)
        origin = typing.get_origin(hint)
        if origin is tuple:  # tuple[str, ...]: a YAML list of names
            item = typing.get_args(hint)[0]
            if not isinstance(value, list | tuple) or not all(_is(v, item) for v in value):
                raise self._bad(f, hint, optional)
            return tuple(value)
        if origin is dict:
            if not isinstance(value, dict):
                raise self._bad(f, hint, optional)
            return value
        if hint in _NAMES:
            if not _is(value, hint):
                raise self._bad(f, hint, optional)
            value = float(value) if hint is float else value
            if not _in_range(value, f.metadata):
                raise self._bad(f, hint, optional)
        return value

    def _bad(self, f: dataclasses.Field, hint: Any, optional: bool) -> ConfigError:
        """The error for a raw `value` (the field still holds it while it is checked)."""
        if "problem" in f.metadata:
            return self.error(f.name, f.metadata["problem"])
        what = _NAMES.get(hint, "a list of names" if typing.get_origin(hint) is tuple else "a mapping")
        return self.error(f.name, f"must be {what}{_range_text(f.metadata)}{' or null' if optional else ''}")


def _unwrap_optional(hint: Any) -> tuple[bool, Any]:
    """(whether None is allowed, the hint without None) for `X | None`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return len(args) < len(typing.get_args(hint)), args[0] if len(args) == 1 else Any
    return False, hint


def _is(value: Any, hint: Any) -> bool:
    """isinstance for config scalars: a bool is not a number, an int is a float, floats are finite."""
    if hint is bool:
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if hint is float:
        return isinstance(value, int | float) and math.isfinite(value)
    return isinstance(value, hint)


def _in_range(value: float, bounds: typing.Mapping[str, Any]) -> bool:
    checks = {"ge": lambda b: value >= b, "gt": lambda b: value > b, "le": lambda b: value <= b,
              "lt": lambda b: value < b}
    return all(bounds.get(k) is None or check(bounds[k]) for k, check in checks.items())


def _range_text(bounds: typing.Mapping[str, Any]) -> str:
    low = next(((op, bounds[k]) for k, op in (("ge", ">="), ("gt", ">")) if bounds.get(k) is not None), None)
    high = next(((op, bounds[k]) for k, op in (("le", "<="), ("lt", "<")) if bounds.get(k) is not None), None)
    if low and high:
        return f" in {'[' if low[0] == '>=' else '('}{low[1]}, {high[1]}{']' if high[0] == '<=' else ')'}"
    return "".join(f" {op} {b}" for op, b in filter(None, (low, high)))


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
