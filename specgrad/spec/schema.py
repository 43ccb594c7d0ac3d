"""The JSON Schema (draft 2020-12) of spec format v1, generated from the registries so that exactly the
registered ops, losses, optimizers, schedules, initializers and data sources are accepted.

Two forms of one schema: :func:`build_schema` is the resolved spec's (what `validate` checks after
composition), :func:`editor_schema` the same rules for files as written -- with ``extends``, ``include``,
``${...}`` references and ``null`` removals -- so an editor's YAML language server or any JSON Schema
validator checks and completes them. ``schemas/specgrad.schema.json`` is the editor form, kept in the
repository and checked by a test."""

from __future__ import annotations

from specgrad.base.components import NAME
from specgrad.data.sources import SOURCES
from specgrad.engine.ops.registry import REGISTRY
from specgrad.model.formula import public_ops
from specgrad.model.init import INITIALIZERS
from specgrad.model.layers import LAYERS
from specgrad.model.losses import LOSSES
from specgrad.model.metrics import METRICS
from specgrad.optim.optimizers import OPTIMIZERS
from specgrad.optim.schedules import SCHEDULES
from specgrad.spec.settings import DEFAULT_DTYPE, DEFAULT_SEED, Train, schema_of

FORMAT_VERSION = 1
SCHEMA_ID = "https://specgrad.dev/schemas/specgrad.schema.json"


def build_schema() -> dict:

    shape = {
        "type": "array",
        "items": {"type": "integer", "minimum": 1},
        "description": "per-sample shape; the batch dimension is implied",
    }
    ops = public_ops()
    op_call = {
        "type": "object",
        "required": ["op"],
        "properties": {"op": {"title": "op", "enum": ops}},
        "allOf": [
            {
                "if": {"properties": {"op": {"const": name}}},
                "then": {
                    "properties": {
                        "op": {"const": name},
                        "args": {
                            "type": "array",
                            "items": {"anyOf": [{"type": "string"}, {"type": "number"}]},
                            "description": "input node names or numbers",
                        },
                        **{a: {} for a in REGISTRY[name].attrs},
                    },
                    "additionalProperties": False,
                    "description": REGISTRY[name].doc,
                },
            }
            for name in ops
        ],
    }
    node = {
        "type": "object",
        "minProperties": 1,
        "maxProperties": 1,
        "propertyNames": NAME,
        "additionalProperties": {
            "if": {"type": "string"},
            "then": {"description": "a formula, e.g. powers(x, 5) @ k"},
            "else": {
                "if": {"type": "object", "properties": {"layer": True}, "required": ["layer"]},
                "then": LAYERS.schema(shorthand=False),
                "else": op_call,
            },
        },
    }
    typed_input = {
        "if": {"type": "array"},
        "then": shape,  # {shape, dtype}: integer ids for embedding layers
        "else": {
            "type": "object",
            "additionalProperties": False,
            "required": ["shape"],
            "properties": {
                "shape": shape,
                "dtype": {
                    "enum": ["int64", "int32"],
                    "description": "integer data (token ids); default: the spec's float dtype",
                },
            },
        },
    }
    param = {
        "type": "object",
        "additionalProperties": False,
        "required": ["shape"],
        "properties": {"shape": shape, "init": INITIALIZERS.schema()},
    }
    model = {
        "type": "object",
        "additionalProperties": False,
        "required": ["inputs", "nodes", "output"],
        "properties": {
            "inputs": {
                "type": "object",
                "propertyNames": NAME,
                "additionalProperties": typed_input,
                "description": "data fields fed to the model, with their per-sample shapes",
            },
            "params": {
                "type": "object",
                "propertyNames": NAME,
                "additionalProperties": param,
                "description": "trained parameters: NAME: {shape: SHAPE, init: INIT} (init default zeros)",
            },
            "nodes": {"type": "array", "items": {"$ref": "#/$defs/node"}, "description": "named nodes, in order"},
            "output": {**NAME, "description": "the node holding the prediction"},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "specgrad spec",
        "$defs": {"node": node},  # referred to by layers that hold nested nodes (residual)
        "type": "object",
        "additionalProperties": False,
        "required": ["specgrad", "name", "data", "model", "loss", "optimizer", "train"],
        "properties": {
            "specgrad": {"const": FORMAT_VERSION, "description": "spec format version"},
            "name": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                "maxLength": 200,  # a folder name: file systems take 255 bytes
                "description": "the run's name: ASCII letters, digits, _ . -, starting with a letter or digit; "
                "runs go to runs/NAME/TIMESTAMP",
            },
            "seed": {
                "type": "integer",
                "minimum": 0,
                "default": DEFAULT_SEED,
                "description": "seeds initialization, shuffling, dropout and, unless data.seed is given, the data",
            },
            "dtype": {
                "enum": ["float64", "float32"],
                "default": DEFAULT_DTYPE,
                "description": "dtype of inputs, parameters and computation",
            },
            "data": {**SOURCES.schema(shorthand=False), "description": "where the samples come from"},
            "model": {**model, "description": "inputs, parameters and the computation"},
            "loss": {**LOSSES.schema(), "description": "what is minimized; a bare name is short for {type: NAME}"},
            "optimizer": {**OPTIMIZERS.schema(shorthand=False), "description": "how parameters move"},
            "schedule": {
                **SCHEDULES.schema(),
                "description": "how the learning rate changes over the run (default constant)",
            },
            "train": {**schema_of(Train), "description": "steps, batches, clipping, checkpoints, validation"},
            "metrics": {
                "type": "array",
                "items": METRICS.schema(),
                "description": "computed on each split at the end of the run (summary.json)",
            },
            "vars": {"type": "object", "description": "free values for ${vars.NAME} references; not read otherwise"},
        },
    }


FILES = {
    "anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
    "description": "a YAML file, or a list of them, relative to this file",
}
REFERENCE = {
    "type": "string",
    "pattern": "\\$\\{[^{}]*\\}",
    "description": "${path.to.value}: another value of the spec",
}


def editor_schema() -> dict:
    """:func:`build_schema` for files as written. A file with ``extends`` states only what differs from its
    bases; one without must have every top-level section. Inside sections no key is required, since a
    section's keys may come from a base or an ``include`` (``specgrad validate`` checks the composed spec
    for them). Wherever a value goes, a ``${...}`` reference or a ``null`` (which removes a key a base set)
    is accepted."""
    strict = build_schema()
    schema = _as_written(strict)
    del schema["properties"]["include"]
    schema["properties"] = {
        "extends": {"$ref": "#/$defs/files", "description": "base spec(s) this one changes; merged in order"},
        **schema["properties"],
    }
    # (strict JSON Schema tools want each required key declared beside "required")
    schema["if"] = {"properties": {"extends": True}, "required": ["extends"]}
    schema["else"] = {"properties": dict.fromkeys(strict["required"], True), "required": strict["required"]}
    schema["$defs"] = {
        **{k: _as_written(v) for k, v in strict["$defs"].items()},
        "reference": REFERENCE,
        "files": FILES,
    }
    return schema


def _as_written(schema: dict) -> dict:
    """Every value position of ``schema`` also accepting a reference or null, every closed mapping an
    ``include``, no key required. Conditions (``if``, ``propertyNames``) test values rather than being
    values and are left alone, except that a condition on a tag (``type: sgd``) holds only where the tag
    is written, which a partial mapping need not do."""
    out = {k: v for k, v in schema.items() if k != "required"}
    if "properties" in out or "additionalProperties" in out:
        out["properties"] = {
            "include": {"$ref": "#/$defs/files"},
            **{k: _written_value(v) for k, v in out.get("properties", {}).items()},
        }
    for key in ("additionalProperties", "items"):
        if isinstance(out.get(key), dict):
            out[key] = _written_value(out[key])
    for key in ("then", "else"):
        if isinstance(out.get(key), dict):
            out[key] = _as_written(out[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in out:
            out[key] = [_as_written(s) for s in out[key]]
    tag = out.get("if", {}).get("properties")
    if tag and all(isinstance(v, dict) and "const" in v for v in tag.values()):
        out["if"] = {**out["if"], "required": sorted(tag)}
    return out


# A reference or a null is accepted wherever a value goes. It is the condition of an if/then/else, not one
# branch of an anyOf: a validator then reports only what is wrong with the value itself ("steps: 0 must be
# >= 1"), never that the value is not a reference ("0 is not of type 'string'").
REFERENCE_OR_NULL = {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/reference"}]}


def _written_value(schema: dict) -> dict:
    annotations = {k: schema[k] for k in ("description",) if k in schema}
    return {"if": REFERENCE_OR_NULL, "then": True, "else": _as_written(schema), **annotations}
