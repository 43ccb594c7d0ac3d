"""Validation: the JSON Schema first, rewritten as plain located messages, then the semantic checks
(names, ops, shapes through the whole model) by building the model, then the run's settings against the
built model (specgrad/spec/checks.py). Every problem in one pass; `train` runs exactly this before it
reads any data."""

from __future__ import annotations

import math
import re
from collections.abc import Set as AbstractSet
from functools import lru_cache

from specgrad.base.components import normalize
from specgrad.base.diagnostics import (
    Diagnostic,
    Location,
    SpecError,
    closest,
    did_you_mean,
    excerpt,
)
from specgrad.data.prepare import field_path, shape_mismatch
from specgrad.data.registry import DataError, declared_fields, settings_with_defaults
from specgrad.data.sources import SOURCES, check_reshape
from specgrad.model.build import build_model
from specgrad.model.losses import DEFAULT_TARGET, LOSSES, make_loss
from specgrad.spec.checks import train_diagnostics
from specgrad.spec.compose import check_version
from specgrad.spec.load import Document
from specgrad.spec.paths import data_file_diagnostics
from specgrad.spec.schema import build_schema

JSON_TYPES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@lru_cache(maxsize=1)
def validator():
    """The spec schema's validator (``strict_validator``)."""
    return strict_validator(build_schema())


def strict_validator(schema: dict):
    """A draft 2020-12 validator of ``schema`` with two changes. An integer is an int: JSON Schema calls 2.0
    an integer (JSON has one kind of number), but every integer setting (a seed, a size, a count of steps) is
    used as a Python int, where 2.0 fails far from the spec; YAML tells 2 from 2.0, so the spec must say 2.
    And a pattern's ``$`` matches only at the end, as in the ECMA-262 regular expressions JSON Schema names
    (Python's also matches before a final newline: "poly\n" would pass a name pattern, and name a folder)."""
    from jsonschema import Draft202012Validator, ValidationError, validators

    def is_int(checker, value):
        return isinstance(value, int) and not isinstance(value, bool)

    def pattern(validator, value, instance, schema):
        if validator.is_type(instance, "string") and not _ecma(value).search(instance):
            yield ValidationError(f"{instance!r} does not match {value!r}")

    checker = Draft202012Validator.TYPE_CHECKER.redefine("integer", is_int)
    return validators.extend(Draft202012Validator, {"pattern": pattern}, type_checker=checker)(schema)


@lru_cache(maxsize=256)
def _ecma(pattern: str) -> re.Pattern:
    """``pattern`` with a final ``$`` (not an escaped one) made Python's end of string."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


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
    return excerpt(value)


def _leaf_errors(error):
    """The errors worth showing: for if/then or anyOf, those inside the branch that was meant."""
    if error.context and error.validator in ("anyOf", "oneOf"):
        from jsonschema.exceptions import best_match

        yield from _leaf_errors(best_match(error.context))
    else:
        yield error


def _translate(e, doc: Document) -> list[Diagnostic]:
    path = tuple(e.absolute_path)
    name = dotted(path)
    kind, value, inst = e.validator, e.validator_value, e.instance
    if kind == "additionalProperties" and isinstance(inst, dict):
        known = list(e.schema.get("properties", {}))
        return [
            Diagnostic(f"unknown key {excerpt(k)} in {name}{did_you_mean(k, known)}", doc.key_loc(path + (k,)))
            for k in inst
            if k not in known
        ]
    if kind == "required" and isinstance(inst, dict):
        # a misspelt key ("lr_rate") is reported as unknown with a suggestion; do not also call 'lr' missing
        unknown = [k for k in inst if k not in e.schema.get("properties", {})]
        meant = {closest(k, value) for k in unknown}
        return [
            Diagnostic(f"missing key '{k}' in {name}", doc.key_loc(path))
            for k in value
            if k not in inst and k not in meant
        ]
    if kind == "type":
        types = [value] if isinstance(value, str) else value
        want = " or ".join(JSON_TYPES.get(t, t) for t in types)
        hint = ""
        if isinstance(inst, str) and {"number", "integer"} & set(types) and _number_text(inst):
            hint = " (YAML reads a number without a dot before the exponent as text: write 1.0e-3, not 1e-3)"
        return [Diagnostic(f"{name} must be {want}, got {describe(inst)}{hint}", doc.loc(path))]
    if kind == "enum":
        title = e.schema.get("title")
        if title and isinstance(inst, str):
            return [Diagnostic(f"unknown {title} {excerpt(inst)}{did_you_mean(inst, value)}", doc.loc(path))]
        return [Diagnostic(f"{name} must be one of {', '.join(map(str, value))}; got {describe(inst)}", doc.loc(path))]
    if kind == "const":
        other = _else_branch(e)  # {if: string, then: {const: full}, else: integer}: name both
        accepted = f"{accepted_by(other)} or {describe(value)}" if other and accepted_by(other) else describe(value)
        return [Diagnostic(f"{name} must be {accepted}, got {describe(inst)}", doc.loc(path))]
    bounds = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    if kind in bounds:
        return [Diagnostic(f"{name} must be {bounds[kind]} {value}, got {describe(inst)}", doc.loc(path))]
    if kind == "pattern":
        where = doc.key_loc(path) if e.schema_path and "propertyNames" in e.schema_path else doc.loc(path)
        rule = pattern_rule(value)
        if rule is None:
            return [Diagnostic(f"{describe(inst)} does not match the pattern {value}", where)]
        return [Diagnostic(f"{describe(inst)} is not a valid name here ({rule})", where)]
    if kind in ("minLength", "maxLength") and isinstance(inst, str):
        most = "at least" if kind == "minLength" else "at most"
        return [Diagnostic(f"{name} must be {most} {value} characters, got {len(inst)}", doc.loc(path))]
    if kind in ("minProperties", "maxProperties") and path[:2] == ("model", "nodes"):
        return [Diagnostic("each entry of model.nodes must be one 'name: definition' pair", doc.loc(path))]
    return [Diagnostic(f"{name}: {e.message}", doc.loc(path))]


def _else_branch(e) -> dict | None:
    """The ``else`` of the if/then whose ``then`` failed with ``e``, if any: the alternative the value could
    also have taken."""
    where = list(e.absolute_schema_path)
    if len(where) < 2 or where[-2] != "then":
        return None
    node = validator().schema
    for key in where[:-2]:
        try:
            node = node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node.get("else") if isinstance(node, dict) else None


def accepted_by(schema: dict) -> str | None:
    """A simple schema in words ("a positive integer", "a number >= 0"), or None."""
    kind = schema.get("type")
    if (
        not isinstance(kind, str)
        or kind not in JSON_TYPES
        or set(schema) - {"type", "minimum", "exclusiveMinimum", "description"}
    ):
        return None
    if kind in ("integer", "number") and (
        schema.get("minimum") == 1 and kind == "integer" or schema.get("exclusiveMinimum") == 0
    ):
        return f"a positive {kind}"
    bounds = [f">= {schema['minimum']}"] * ("minimum" in schema) + [f"> {schema['exclusiveMinimum']}"] * (
        "exclusiveMinimum" in schema
    )
    return " ".join([JSON_TYPES[kind], *bounds])


_CLASS_PARTS = re.compile(r"A-Z|a-z|0-9|\\?.")
_PART_WORDS = {"letters": ("ASCII letters", "an ASCII letter"), "0-9": ("digits", "a digit")}


def pattern_rule(pattern: str) -> str | None:
    """The rule of a name pattern ``^[FIRST][REST]*$`` in words, read off the pattern the schema applies
    (so the message cannot drift from the rule): ``^[A-Za-z_][A-Za-z0-9_]*$`` is "ASCII letters, digits and _;
    not starting with a digit". None for a pattern of another form."""
    m = re.fullmatch(r"\^\[([^\]]+)\]\[([^\]]+)\]\*\$", pattern)
    if not m:
        return None

    def parts(chars: str) -> list[str]:
        found = [p.lstrip("\\") for p in _CLASS_PARTS.findall(chars)]
        if "A-Z" in found and "a-z" in found:
            found = ["letters", *(p for p in found if p not in ("A-Z", "a-z"))]
        return found

    def words(items: list[str], last: str, form: int) -> str:
        names = [_PART_WORDS.get(p, (p, p))[form] for p in items]
        return ", ".join(names[:-1]) + f" {last} " + names[-1] if len(names) > 1 else names[0]

    first, rest = parts(m.group(1)), parts(m.group(2))
    if not set(first) <= set(rest) or any(p in ("A-Z", "a-z") for p in first + rest):
        return None
    rule = words(rest, "and", 0)
    barred = [p for p in rest if p not in first]
    return f"{rule}; not starting with {words(barred, 'or', 1)}" if barred else rule


def _number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return "e" in text.lower()


def broken_sections(doc: Document, schema_errors) -> tuple[set[str], set[int]]:
    """Top-level sections with a schema error (or missing), whose semantic checks would only repeat it;
    and the entries of model.nodes whose definition alone is broken, which the model can be built without."""
    sections, nodes = set(), set()
    for e in schema_errors:
        path = tuple(e.absolute_path)
        if path[:2] == ("model", "nodes") and len(path) >= 4 and _named_entry(doc.data["model"]["nodes"][path[2]]):
            nodes.add(path[2])
        elif path:
            sections.add(path[0])
        elif e.validator == "required":
            sections.update(k for k in e.validator_value if k not in doc.data)
    return sections, nodes


def _named_entry(entry) -> bool:
    return isinstance(entry, dict) and len(entry) == 1 and isinstance(next(iter(entry)), str)


def semantic_checks(
    doc: Document, broken: AbstractSet[str] = frozenset(), broken_nodes: AbstractSet[int] = frozenset()
):
    """Rules the schema cannot express, on every section the schema passed; returns (diagnostics, model).

    Nodes whose definition failed the schema are built as a formula that cannot parse: the build then
    skips every node using them, as it does for any broken node, and its message about them (at the
    node's own place) is dropped, since the schema's messages already say what is wrong."""
    data = doc.data
    diags = []
    train = data.get("train")
    if isinstance(train, dict) and ("steps" in train) == ("epochs" in train):
        diags.append(Diagnostic("train needs exactly one of 'steps' and 'epochs'", doc.key_loc(("train",))))
    if not broken & {"data", "loss", "model"}:
        diags += data_field_checks(doc)
    if broken & {"model", "dtype"}:
        return diags, None
    if "train" in broken:
        data = {**data, "train": {}}  # the model reads only train.remat, whose default serves to check it
    silenced = set()
    stand_in = bool(broken_nodes) or "loss" in broken
    if stand_in:
        # A stand-in loss lets the model's own errors show; what the build says about the stand-in (at the
        # loss's place, or warnings about parameters not reaching it) would not be true.
        nodes = [
            dict.fromkeys(entry, "") if i in broken_nodes else entry for i, entry in enumerate(data["model"]["nodes"])
        ]
        data = {**data, "model": {**data["model"], "nodes": nodes}}
        silenced = {doc.loc(("model", "nodes", i, *entry)) for i, entry in enumerate(nodes) if i in broken_nodes}
        if "loss" in broken:
            data["loss"] = "sse"
            silenced.add(doc.loc(("loss",)))
    try:
        model = build_model(data, doc.loc, lambda path, col: _column(doc, path, col))
    except SpecError as err:
        return diags + [
            d for d in err.diagnostics if d.location not in silenced and (d.severity == "error" or not stand_in)
        ], None
    if stand_in:
        return diags, None
    if "data" not in broken:
        diags += data_model_checks(doc, model)
    diags += train_diagnostics(data, model, doc.loc, broken)
    return diags + model.warnings, model


def data_field_checks(doc: Document) -> list[Diagnostic]:
    """The fields the model, the loss and standardization read exist in the data, with the kind the loss needs.

    Data sources may declare the fields they make (``fields=points((2,))``, or a function of their settings;
    data/registry.py, ``Field``) and losses the dtype of their target (``target={"dtype": "int"}`` for class
    labels); a check runs only where both sides declared it.
    """

    data = doc.data
    source = SOURCES[data["data"]["source"]]
    # a source's own static checks (a synthetic source's formula), located at the setting they blame
    out = [
        Diagnostic(f"data: {message}", doc.loc(("data", *key)))
        for key, message in source.meta.get("check", lambda settings: [])(settings_with_defaults(data["data"]))
    ]
    fields = declared_fields(data["data"])
    if fields is None:
        return out
    have = ", ".join(sorted(fields))
    for name in data["model"]["inputs"]:
        if name not in fields:
            out.append(
                Diagnostic(
                    f"data source '{source.name}' has no field '{name}' (it has {have}){did_you_mean(name, fields)}",
                    doc.key_loc(("model", "inputs", name)),
                )
            )
    for key in ("standardize", "reshape"):
        for i, name in enumerate(data["data"].get(key, ())):
            if name not in fields:
                out.append(
                    Diagnostic(
                        f"data source '{source.name}' has no field '{name}' to {key} (it has {have})"
                        f"{did_you_mean(name, fields)}",
                        doc.loc(("data", key, i)) if key == "standardize" else doc.key_loc(("data", key, name)),
                    )
                )
    loss = normalize(data["loss"])
    target = loss.get("target", DEFAULT_TARGET)
    if target not in fields:
        out.append(
            Diagnostic(
                f"the loss target '{target}' is not a field of data source '{source.name}' "
                f"(it has {have}){did_you_mean(target, fields)}",
                doc.loc(("loss",)),
            )
        )
        return out
    wanted = LOSSES[loss["type"]].meta.get("target", {}).get("dtype")
    kind = fields[target].kind
    if wanted is not None and kind is not None and kind != wanted:
        kinds = {"int": "integer class labels", "float": "real values"}
        out.append(
            Diagnostic(
                f"loss '{loss['type']}' needs {kinds.get(wanted, wanted)} as its target, but "
                f"field '{target}' of data source '{source.name}' holds {kinds.get(kind, kind)}",
                doc.loc(("loss",)),
            )
        )
    return out


def data_model_checks(doc: Document, model) -> list[Diagnostic]:
    """The per-sample shapes a source declares, after ``reshape``, against what the model and the loss read,
    and its classes against the prediction's: what ``train`` would report after loading the data, reported
    by ``validate``."""
    settings = doc.data["data"]
    fields = declared_fields(settings) or {}
    shapes = {name: field.shape for name, field in fields.items()}
    out = []
    for name, to in (settings.get("reshape") or {}).items():
        if shapes.get(name) is None:
            continue  # not made by the source (reported above), or only the file knows its shape
        try:
            check_reshape(name, shapes[name], to, ("reshape", name))
            shapes[name] = tuple(to)
        except DataError as e:
            out.append(Diagnostic(f"data: {e}", doc.loc(("data", *e.key))))
            shapes[name] = None  # reported: not compared with the model too
    for name, node in model.inputs.items():
        have = shapes.get(name)
        mismatch = shape_mismatch(name, have, node) if have is not None else None
        if mismatch:
            out.append(Diagnostic(mismatch, doc.loc(field_path(name, doc.data))))
    for i, name in enumerate(settings.get("standardize", ())):
        node = model.inputs.get(name)
        if node is not None and node.dtype.kind in "iu":
            out.append(
                Diagnostic(
                    f"data field '{name}' is standardized, to real values, but the model reads it as {node.dtype} "
                    f"(ids): leave it out of data.standardize",
                    doc.loc(("data", "standardize", i)),
                )
            )
    labels = fields.get(model.target)
    if labels is not None and labels.classes is not None:
        target = make_loss(doc.data["loss"]).target_of(model.prediction)
        takes = {"labels": target.classes, "probabilities": 2}.get(target.kind)
        if isinstance(takes, int) and labels.classes > takes:  # (a class axis of the batch's size: not known)
            source = settings["source"]
            out.append(
                Diagnostic(
                    f"data source '{source}' makes labels 0 to {labels.classes - 1} in field '{model.target}', "
                    f"outside [0, {takes}) for "
                    + (f"a prediction with {takes} classes" if target.kind == "labels" else "this loss's 0/1 targets"),
                    doc.loc(("loss",)),
                )
            )
    return out


def _column(doc: Document, path, col):
    loc = doc.loc(path)
    return Location(loc.file, loc.line, loc.col + col, loc.history)


def validate(doc: Document, data_files: bool = True):
    """Every diagnostic for a composed spec, in one pass, sorted by location; and the compiled model when
    there was no error. Semantic checks run on each section the schema passed, so one run shows all.
    ``data_files``: whether the data files are checked too (not for what reads no data: predict)."""
    check_version(doc)
    errors = list(validator().iter_errors(doc.data))
    diags = [d for top in errors for e in _leaf_errors(top) for d in _translate(e, doc)]
    diags += non_finite_numbers(doc)
    broken = broken_sections(doc, errors)
    if data_files and "data" not in broken[0]:
        diags += data_file_diagnostics(doc)
    more, model = semantic_checks(doc, *broken)
    # dict.fromkeys: jsonschema reports a mapping's missing keys once per key, each listing them all
    diags = sorted(dict.fromkeys(diags + more), key=_order)
    return diags, (model if not any(d.severity == "error" for d in diags) else None)


def non_finite_numbers(doc: Document) -> list[Diagnostic]:
    """YAML's .nan and .inf are numbers to JSON Schema, and pass any bound; no setting may be one."""
    out = []

    def walk(value, path):
        if isinstance(value, float) and not math.isfinite(value):
            out.append(Diagnostic(f"{dotted(path)} must be a finite number, got {value}", doc.loc(path)))
        elif isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            out.append(
                Diagnostic(
                    f"{dotted(path)} is too large: {excerpt(value)} is outside the 64-bit integers", doc.loc(path)
                )
            )
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, path + (key,))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                walk(item, path + (i,))

    walk(doc.data, ())
    return out


def _order(d: Diagnostic):
    loc = d.location
    return (0, "", 0, 0) if loc is None else (1, loc.file, loc.line, loc.col)
