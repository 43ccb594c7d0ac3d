"""The registry of data sources and the settings every source accepts.

A source turns its settings into named arrays (fields) with one row per sample: ``x`` and ``y`` by
convention, any names a spec asks for. What happens after loading (reshape, split, standardize, check
against the model) is the same for every source and lives in ``prepare.py``.
"""

from __future__ import annotations

from specgrad.base.components import FRACTION, NAME, Registry

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


class DataError(ValueError):
    """Data that cannot be loaded; ``key`` is the path under ``data`` to blame (e.g. ("path",))."""

    def __init__(self, message: str, key: tuple = ()):
        super().__init__(message)
        self.key = tuple(key)
