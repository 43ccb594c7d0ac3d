"""Registries of named components a spec can choose by ``type``: losses, optimizers, schedules,
initializers, data sources. Each entry declares, beside its implementation, the JSON Schema of its
settings; the spec schema is generated from these entries, so the schema and the code cannot drift.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Component:
    name: str
    factory: Callable
    properties: dict  # setting -> JSON Schema
    required: tuple
    doc: str
    meta: dict = field(default_factory=dict)  # static facts checks can use: a loss's target dtype, a source's fields


@dataclass
class Registry:
    kind: str  # "optimizer", "loss", ...: used in messages ("unknown optimizer 'sdg'")
    tag: str = "type"  # the key that names the entry
    common: dict = field(default_factory=dict)  # settings every entry accepts, handled by the caller
    entries: dict = field(default_factory=dict)

    def register(self, name: str, properties: dict | None = None, required=(), **meta) -> Callable:
        def deco(factory):
            self.entries[name] = Component(
                name, factory, properties or {}, tuple(required), (factory.__doc__ or "").strip().split("\n")[0], meta
            )
            return factory

        return deco

    def __getitem__(self, name) -> Component:
        return self.entries[name]

    def __contains__(self, name) -> bool:
        return name in self.entries

    def names(self) -> list[str]:
        return sorted(self.entries)

    def create(self, settings: dict, **context):
        """Instantiate from a validated ``{type: name, ...settings}`` mapping."""
        settings = {k: v for k, v in normalize(settings, self.tag).items() if k not in self.common}
        return self.entries[settings.pop(self.tag)].factory(**settings, **context)

    def schema(self, shorthand: bool = True) -> dict:
        """``{type: <name>, ...}`` with each type's own closed set of settings; with ``shorthand``, a bare
        name stands for ``{type: <name>}`` (accepted only for types whose settings are all optional)."""
        tagged = {
            "type": "object",
            "required": [self.tag],
            "properties": {self.tag: {"title": self.kind, "enum": self.names()}},
            "allOf": [
                {
                    "if": {"properties": {self.tag: {"const": c.name}}},
                    "then": {
                        "properties": {self.tag: {"const": c.name}, **self.common, **c.properties},
                        "required": list(c.required),
                        "additionalProperties": False,
                        **({"description": c.doc} if c.doc else {}),
                    },
                }
                for c in self.entries.values()
            ],
        }
        if not shorthand:
            return tagged
        return {
            "if": {"type": "string"},
            "then": {"title": self.kind, "enum": [c.name for c in self.entries.values() if not c.required]},
            "else": tagged,
        }


def normalize(value, tag: str = "type") -> dict:
    """A bare name is shorthand for ``{type: name}``."""
    return {tag: value} if isinstance(value, str) else dict(value)


POSITIVE = {"type": "number", "exclusiveMinimum": 0}
NON_NEGATIVE = {"type": "number", "minimum": 0}
FRACTION = {"type": "number", "minimum": 0, "exclusiveMaximum": 1}
NAME = {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}
