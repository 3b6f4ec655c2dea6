"""YAML as the configs mean it: the YAML 1.2 core types and no duplicate keys.

PyYAML reads YAML 1.1, where `yes`, `no`, `on` and `off` are booleans and `1e-3` (no dot) is a string,
and where a second `run:` silently replaces the first. Here only true/false are booleans (`no` stays the
string it looks like, so a bool field rejects it by name), `1e-3` is a number, and a repeated key is
an error naming its line.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

BOOL = "tag:yaml.org,2002:bool"
FLOAT = "tag:yaml.org,2002:float"


class DuplicateKeyError(yaml.constructor.ConstructorError):
    """A mapping repeats a key."""


class ConfigLoader(yaml.SafeLoader):
    """yaml.SafeLoader with the YAML 1.2 core schema's booleans and exponent floats, refusing duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise DuplicateKeyError(None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


ConfigLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
ConfigLoader.add_implicit_resolver(BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
ConfigLoader.add_implicit_resolver(FLOAT, re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
                                   list("-+0123456789."))


def load(text: str) -> Any:
    """Parse YAML text with `ConfigLoader`."""
    return yaml.load(text, Loader=ConfigLoader)  # a SafeLoader: no arbitrary objects
