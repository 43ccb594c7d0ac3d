"""The JSON Schema (draft 2020-12) of spec format v1, generated from the registries so that exactly the
registered ops, losses, optimizers, schedules, initializers and data sources are accepted.
``schemas/specgrad.schema.json`` is this function's output, kept in the repository for editors and
checked by a test."""
from __future__ import annotations

from specgrad.components import NAME, POSITIVE

FORMAT_VERSION = 1
SCHEMA_ID = "https://specgrad.dev/schemas/specgrad.schema.json"


def build_schema() -> dict:
    from specgrad.data.sources import SOURCES
    from specgrad.graph.formula import public_ops
    from specgrad.init import INITIALIZERS
    from specgrad.losses import LOSSES
    from specgrad.metrics import METRICS
    from specgrad.ops.registry import REGISTRY
    from specgrad.optim.optimizers import OPTIMIZERS
    from specgrad.optim.schedules import SCHEDULES

    shape = {"type": "array", "items": {"type": "integer", "minimum": 1},
             "description": "per-sample shape; the batch dimension is implied"}
    ops = public_ops()
    op_call = {
        "type": "object",
        "required": ["op"],
        "properties": {"op": {"title": "op", "enum": ops}},
        "allOf": [
            {"if": {"properties": {"op": {"const": name}}},
             "then": {"properties": {"op": {"const": name},
                                     "args": {"type": "array", "items": {"type": ["string", "number"]},
                                              "description": "input node names or numbers"},
                                     **{a: {} for a in REGISTRY[name].attrs}},
                      "additionalProperties": False,
                      "description": REGISTRY[name].doc}}
            for name in ops
        ],
    }
    node = {
        "type": "object", "minProperties": 1, "maxProperties": 1,
        "propertyNames": NAME,
        "additionalProperties": {
            "if": {"type": "string"},
            "then": {"description": "a formula, e.g. powers(x, 5) @ k"},
            "else": op_call,
        },
    }
    param = {"type": "object", "additionalProperties": False, "required": ["shape"],
             "properties": {"shape": shape, "init": INITIALIZERS.schema()}}
    model = {
        "type": "object", "additionalProperties": False, "required": ["inputs", "nodes", "output"],
        "properties": {
            "inputs": {"type": "object", "propertyNames": NAME, "additionalProperties": shape,
                       "description": "data fields fed to the model, with their per-sample shapes"},
            "params": {"type": "object", "propertyNames": NAME, "additionalProperties": param},
            "nodes": {"type": "array", "items": node, "description": "named nodes, in order"},
            "output": {**NAME, "description": "the node holding the prediction"},
        },
    }
    train = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "steps": {"type": "integer", "minimum": 1, "description": "optimizer steps (or give epochs)"},
            "epochs": {"type": "integer", "minimum": 1},
            "batch_size": {"if": {"type": "string"}, "then": {"const": "full"},
                           "else": {"type": "integer", "minimum": 1}},
            "shuffle": {"type": "boolean"},
            "clip": {"type": "object", "additionalProperties": False, "required": ["max_norm"],
                     "properties": {"max_norm": POSITIVE}},
            "checkpoint": {"type": "object", "additionalProperties": False,
                           "properties": {"every": {"type": "integer", "minimum": 1}}},
            "log_every": {"type": "integer", "minimum": 1},
            "remat": {"type": "boolean",
                      "description": "gradient checkpointing: recompute activations in the backward pass "
                                     "instead of keeping them (less memory, about one more forward pass)"},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "specgrad spec",
        "type": "object",
        "additionalProperties": False,
        "required": ["specgrad", "name", "data", "model", "loss", "optimizer", "train"],
        "properties": {
            "specgrad": {"const": FORMAT_VERSION, "description": "spec format version"},
            "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
            "seed": {"type": "integer", "minimum": 0},
            "dtype": {"enum": ["float64", "float32"]},
            "data": SOURCES.schema(shorthand=False),
            "model": model,
            "loss": LOSSES.schema(),
            "optimizer": OPTIMIZERS.schema(shorthand=False),
            "schedule": SCHEDULES.schema(),
            "train": train,
            "metrics": {"type": "array", "items": METRICS.schema(),
                        "description": "computed on each split at the end of the run (summary.json)"},
        },
    }
