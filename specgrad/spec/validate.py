"""Validation: the JSON Schema first, rewritten as plain located messages, then the semantic checks
(names, ops, shapes through the whole model) by building the model. Every problem in one pass."""
from __future__ import annotations

from functools import lru_cache

from specgrad.spec.errors import Diagnostic, SpecError, closest, did_you_mean
from specgrad.spec.load import Document
from specgrad.spec.schema import FORMAT_VERSION, build_schema

JSON_TYPES = {"object": "a mapping", "array": "a list", "string": "a string", "integer": "an integer",
              "number": "a number", "boolean": "true or false", "null": "null"}


@lru_cache(maxsize=1)
def validator():
    from jsonschema import Draft202012Validator
    return Draft202012Validator(build_schema())


def dotted(path) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or "the spec"


def describe(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        return JSON_TYPES["object" if isinstance(value, dict) else "array"]
    return repr(value) if isinstance(value, str) else str(value)


def _leaf_errors(error):
    """The errors worth showing: for if/then or anyOf, those inside the branch that was meant."""
    if error.context and error.validator in ("anyOf", "oneOf"):
        from jsonschema.exceptions import best_match
        yield from _leaf_errors(best_match(error.context))
    else:
        yield error


def schema_diagnostics(doc: Document) -> list[Diagnostic]:
    out = []
    for top in validator().iter_errors(doc.data):
        for e in _leaf_errors(top):
            out.extend(_translate(e, doc))
    return out


def _translate(e, doc: Document) -> list[Diagnostic]:
    path = tuple(e.absolute_path)
    name = dotted(path)
    kind, value, inst = e.validator, e.validator_value, e.instance
    if kind == "additionalProperties" and isinstance(inst, dict):
        known = list(e.schema.get("properties", {}))
        return [Diagnostic(f"unknown key '{k}' in {name}{did_you_mean(k, known)}", doc.key_loc(path + (k,)))
                for k in inst if k not in known]
    if kind == "required" and isinstance(inst, dict):
        # a misspelt key ("lr_rate") is reported as unknown with a suggestion; do not also call 'lr' missing
        unknown = [k for k in inst if k not in e.schema.get("properties", {})]
        meant = {closest(k, value) for k in unknown}
        return [Diagnostic(f"missing key '{k}' in {name}", doc.key_loc(path))
                for k in value if k not in inst and k not in meant]
    if kind == "type":
        types = [value] if isinstance(value, str) else value
        want = " or ".join(JSON_TYPES.get(t, t) for t in types)
        return [Diagnostic(f"{name} must be {want}, got {describe(inst)}", doc.loc(path))]
    if kind == "enum":
        title = e.schema.get("title")
        if title and isinstance(inst, str):
            return [Diagnostic(f"unknown {title} '{inst}'{did_you_mean(inst, value)}", doc.loc(path))]
        return [Diagnostic(f"{name} must be one of {', '.join(map(str, value))}; got {describe(inst)}", doc.loc(path))]
    if kind == "const":
        return [Diagnostic(f"{name} must be {describe(value)}, got {describe(inst)}", doc.loc(path))]
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    if kind in bounds:
        return [Diagnostic(f"{name} must be {bounds[kind]} {value}, got {describe(inst)}", doc.loc(path))]
    if kind == "pattern":
        where = doc.key_loc(path) if e.schema_path and "propertyNames" in e.schema_path else doc.loc(path)
        return [Diagnostic(f"{describe(inst)} is not a valid name here (letters, digits and _; not starting "
                           f"with a digit)", where)]
    if kind in ("minProperties", "maxProperties") and path[:2] == ("model", "nodes"):
        return [Diagnostic(f"each entry of model.nodes must be one 'name: definition' pair", doc.loc(path))]
    return [Diagnostic(f"{name}: {e.message}", doc.loc(path))]


def check_version(doc: Document) -> None:
    data = doc.data
    version = data.get("specgrad") if isinstance(data, dict) else None
    if version is not None and version != FORMAT_VERSION:
        raise SpecError.at(doc.loc(("specgrad",)),
                           f"unsupported spec format version {describe(version)}; this specgrad reads version "
                           f"{FORMAT_VERSION}")


def semantic_checks(doc: Document):
    """Rules the schema cannot express; returns (diagnostics, model or None)."""
    from specgrad.graph.build import build_model
    data = doc.data
    errors = []
    train = data["train"]
    if ("steps" in train) == ("epochs" in train):
        errors.append(Diagnostic("train needs exactly one of 'steps' and 'epochs'", doc.key_loc(("train",))))
    try:
        model = build_model(data, doc.loc, lambda path, col: _column(doc, path, col))
    except SpecError as err:
        return errors + err.diagnostics, None
    return errors + model.warnings, model


def _column(doc: Document, path, col):
    loc = doc.loc(path)
    return type(loc)(loc.file, loc.line, loc.col + col)


def validate(doc: Document):
    """All diagnostics for a loaded spec, and the compiled model when there were no errors."""
    check_version(doc)
    diags = schema_diagnostics(doc)
    if diags:
        return diags, None
    return semantic_checks(doc)
