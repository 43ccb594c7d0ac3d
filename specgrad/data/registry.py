"""The registry of data sources and the settings every source accepts.

A source turns its settings into named arrays (fields) with one row per sample: ``x`` and ``y`` by
convention, any names a spec asks for. What happens after loading (reshape, split, standardize, check
against the model) is the same for every source and lives in ``prepare.py``.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from specgrad.base.components import FRACTION, NAME, Registry, normalize

SHAPE = {"type": "array", "items": {"type": "integer", "minimum": 1}}

SOURCES = Registry(
    "data source",
    tag="source",
    common={
        "seed": {"type": "integer", "minimum": 0, "description": "seed of the data (default: the spec's seed)"},
        "split": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"val": FRACTION, "test": FRACTION},
            "description": "fractions of the rows held out for validation and test (seeded)",
        },
        "reshape": {
            "type": "object",
            "propertyNames": NAME,
            "additionalProperties": SHAPE,
            "description": "per-sample shapes for fields, e.g. {x: [1, 8, 8]} for digits as images",
        },
        "standardize": {
            "type": "array",
            "items": NAME,
            "uniqueItems": True,
            "description": "fields scaled to zero mean and unit variance per feature, fitted on the "
            "training split and saved with the run (predict applies the same)",
        },
    },
)


@dataclass(frozen=True)
class Field:
    """What a source says of one field before loading anything, for ``validate`` to check: the kind of its
    values (``"float"``, ``"int"`` for class labels, None when only the file knows), its per-sample shape
    (None when only the file knows) and, for labels, how many classes. A source declares them with
    ``fields=``, a mapping or a function of its settings (given with the source's defaults filled in:
    ``settings_with_defaults``)."""

    kind: str | None
    shape: tuple[int, ...] | None = ()
    classes: int | None = None  # labels: 0 .. classes - 1, each present


def points(x: tuple[int, ...] = (), classes: int | None = None) -> dict[str, Field]:
    """``x`` and ``y`` as most sources make them: ``x`` of per-sample shape ``x``; ``y`` one class label of
    ``classes``, or one real value when ``classes`` is None."""
    return {"x": Field("float", x), "y": Field("float") if classes is None else Field("int", (), classes)}


def declared_fields(settings: dict) -> dict[str, Field] | None:
    """The fields a ``data`` section's source declares it makes; None when it declares nothing."""
    source = SOURCES[settings["source"]]
    fields = source.meta.get("fields")
    return fields(settings_with_defaults(settings)) if callable(fields) else fields


def settings_with_defaults(settings: dict) -> dict:
    """A source's settings with the defaults of its function's arguments filled in (they live only there)."""
    source = SOURCES[settings["source"]]
    defaults = {
        name: p.default
        for name, p in inspect.signature(source.factory).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    return {**defaults, **normalize(settings, "source")}


class DataError(ValueError):
    """Data that cannot be loaded; ``key`` is the path under ``data`` to blame (e.g. ("path",))."""

    def __init__(self, message: str, key: tuple = ()):
        super().__init__(message)
        self.key = tuple(key)
