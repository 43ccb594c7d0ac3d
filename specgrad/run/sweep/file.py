"""Sweep files: which spec to vary, which values, toward which objective. Loaded by the spec loader (every
value located), checked by their own JSON Schema (``schemas/sweep.schema.json``), then -- before any trial
runs -- every point of a grid and every corner of the ranges is composed onto the base spec and checked by
the spec validator, so a value that breaks the model is reported, at its line in the sweep file, now
rather than when its trial starts.

A trial's spec is the base spec, then ``set``, then the trial's parameter values, each set at its spec path
(``optimizer.lr``, ``model.nodes.0.h.units``) exactly like ``--set``, but located in the sweep file."""

from __future__ import annotations

import itertools
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from specgrad.base.diagnostics import Diagnostic, Location, SpecError, excerpt
from specgrad.base.fileio import read_head
from specgrad.model.metrics import metric_name
from specgrad.run.sweep.options import PRUNERS, SAMPLERS, make_sampler
from specgrad.spec.compose import compose, parse_path
from specgrad.spec.load import Document, load_file
from specgrad.spec.paths import default_roots, inside
from specgrad.spec.validate import _leaf_errors, _translate, strict_validator, validate

FORMAT_VERSION = 1
SCHEMA_ID = "https://specgrad.dev/schemas/sweep.schema.json"
SPLITS = ("train", "val", "test")
MAX_POINTS = 256
"""Most combinations of values checked together; beyond it each value is checked alone (plus the all-low
and all-high corners). A grid sampler's points are all checked, up to MAX_GRID."""
MAX_GRID = 4096
MAX_GRID_SIZE = 1_000_000  # points of a grid sampler's grid
MAX_PARAMS = 64  # parameters a sweep varies
MAX_STEPS = 2**53  # values of a stepped float range: beyond, its steps are not even distinct


def sweep_schema() -> dict:
    """The JSON Schema (draft 2020-12) of sweep files, from the sampler and pruner registries."""
    bound = {"type": "array", "minItems": 2, "maxItems": 2}
    param = {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "description": "one of choice, int or float; a range may be on a log scale or stepped",
        "properties": {
            "choice": {"type": "array", "minItems": 1, "description": "the values to try (a grid sampler's grid)"},
            "int": {**bound, "items": {"type": "integer"}, "description": "[low, high], both included"},
            "float": {**bound, "items": {"type": "number"}, "description": "[low, high]"},
            "log": {"type": "boolean", "description": "sample on a log scale (low must be > 0)"},
            "step": {"type": "number", "exclusiveMinimum": 0, "description": "only low, low + step, ... high"},
        },
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "specgrad sweep",
        "type": "object",
        "additionalProperties": False,
        "required": ["sweep", "spec", "params", "objective"],
        "properties": {
            "sweep": {"const": FORMAT_VERSION, "description": "sweep format version"},
            "name": {
                "type": "string",
                "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                "maxLength": 200,  # a folder name: file systems take 255 bytes
                "description": "the study's name (default: the file's name without .yaml)",
            },
            "spec": {"type": "string", "minLength": 1, "description": "the base spec, relative to this file"},
            "seed": {"type": "integer", "minimum": 0, "description": "seeds the sampler (default 0)"},
            "set": {
                "type": "object",
                "description": "spec values every trial shares, by spec path (like --set): {train.epochs: 20}",
            },
            "params": {
                "type": "object",
                "minProperties": 1,
                "additionalProperties": param,
                "description": "the values to vary, by spec path: {optimizer.lr: {float: [1.0e-4, 1.0e-1], log: true}}",
            },
            "objective": {
                "type": "object",
                "additionalProperties": False,
                "required": ["metric", "mode"],
                "properties": {
                    "metric": {
                        "type": "string",
                        "pattern": "^(train|val|test)\\.[A-Za-z0-9_]+$",
                        "description": "SPLIT.METRIC from the run's summary, e.g. val.accuracy",
                    },
                    "mode": {"enum": ["min", "max"]},
                },
            },
            "sampler": SAMPLERS.schema(),
            "pruner": PRUNERS.schema(),
            "trials": {
                "type": "integer",
                "minimum": 1,
                "description": "trials to finish (default: the grid's size for a grid sampler, else 20)",
            },
            "workers": {
                "type": "integer",
                "minimum": 1,
                "description": "worker processes on this machine (default 1; --workers overrides)",
            },
        },
    }


@lru_cache(maxsize=1)
def _validator():
    return strict_validator(sweep_schema())


@dataclass(frozen=True)
class Param:
    """One varied value: a spec path and its choices or range."""

    name: str  # the spec path as written: "optimizer.lr"
    path: tuple
    kind: str  # "choice", "int" or "float"
    loc: Location  # where its definition is written
    choices: tuple = ()
    low: float = 0
    high: float = 0
    log: bool = False
    step: float | None = None

    def corners(self) -> list:
        """The values to check before running: every choice, or both ends of the range (the last value a
        step reaches, not ``high``, when it falls short)."""
        if self.kind == "choice":
            return list(self.choices)
        high = self.high
        if self.step and self.kind == "int":  # exact, however large the integers
            high = self.low + (self.high - self.low) // self.step * self.step
        elif self.step:
            high = self.low + math.floor((self.high - self.low) / self.step + 1e-9) * self.step
        return [self.low] if high == self.low else [self.low, high]

    def suggest(self, trial):
        """This parameter's value for an Optuna trial (a retried trial gets its fixed value back)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), step=self.step, log=self.log)


@dataclass
class Sweep:
    """A loaded, checked sweep file."""

    file: str
    doc: Document
    name: str
    spec: str  # the base spec's path
    params: list[Param]
    metric: str  # "val.accuracy"
    mode: str  # "min" or "max"
    trials: int
    workers: int
    seed: int
    sampler: dict
    pruner: dict
    fixed: list = field(default_factory=list)  # (path, value, Location) from `set`

    @property
    def split(self) -> str:
        return self.metric.partition(".")[0]

    @property
    def metric_name(self) -> str:
        return self.metric.partition(".")[2]

    @property
    def direction(self) -> str:
        return "maximize" if self.mode == "max" else "minimize"

    def values(self, assignment: dict) -> list:
        """The (path, value, Location) triples that make a trial's spec from the base: ``set``, then the
        parameters in ``assignment`` (name -> value), each located at its definition."""
        return [*self.fixed, *((p.path, assignment[p.name], p.loc) for p in self.params if p.name in assignment)]

    def compose(self, assignment: dict) -> Document:
        return compose(self.spec, values=self.values(assignment))

    def grid(self) -> dict:
        """name -> values, for a grid sampler."""
        return {p.name: list(p.choices) for p in self.params}

    def make_sampler(self):
        return make_sampler(self.sampler, self.seed, space=self.grid() if self.sampler["type"] == "grid" else None)

    def make_pruner(self):
        return PRUNERS.create(self.pruner)


def is_sweep_file(path) -> bool:
    """Whether ``path`` holds a sweep (a top-level ``sweep:`` key) rather than a spec."""
    head = read_head(path, 65536)  # a FIFO or a device is no sweep file, and must not block
    return head is not None and re.search(rb"(?m)^sweep\s*:", head) is not None


def load_sweep(path) -> Sweep:
    """Load and check a sweep file on its own (schema, paths, ranges, objective); raises a SpecError with
    every problem. ``check_sweep`` also checks its points against the base spec."""
    doc = load_file(path)
    errors = [d for e in _validator().iter_errors(doc.data) for d in _schema_diagnostics(e, doc)]
    if errors:
        raise SpecError(errors)
    data = doc.data
    assert isinstance(data, dict)  # the schema above takes only a mapping
    params, diags = [], []
    for name, definition in data["params"].items():
        loc = doc.loc(("params", name))
        spec_path = parse_path(name)
        if any(p == "" for p in spec_path):
            diags.append(
                Diagnostic(
                    f"'{name}' is not a spec path (dotted names, e.g. optimizer.lr)", doc.key_loc(("params", name))
                )
            )
            continue
        param, problems = _param(name, spec_path, definition, loc)
        diags += [Diagnostic(m, doc.loc(("params", name, *where))) for where, m in problems]
        if param is not None:
            params.append(param)
    fixed = []
    for name, value in (data.get("set") or {}).items():
        spec_path = parse_path(name)
        if any(p == "" for p in spec_path):
            diags.append(Diagnostic(f"'{name}' is not a spec path", doc.key_loc(("set", name))))
        fixed.append((spec_path, value, doc.loc(("set", name))))
    sampler = _normalize(data.get("sampler", "tpe"))
    pruner = _normalize(data.get("pruner", "none"))
    if pruner["type"] == "threshold" and not {"lower", "upper"} & set(pruner):
        diags.append(Diagnostic("the threshold pruner needs a lower or an upper bound", doc.loc(("pruner",))))
    if sampler["type"] == "grid":
        for p in params:
            if p.kind != "choice":
                diags.append(
                    Diagnostic(
                        f"the grid sampler needs a list of values for '{p.name}': write {{choice: [...]}}", p.loc
                    )
                )
    grid_size = math.prod(len(p.choices) for p in params) if sampler["type"] == "grid" else None
    if grid_size is not None and grid_size > MAX_GRID_SIZE:  # Optuna lists every point of a grid in memory
        diags.append(
            Diagnostic(
                f"a grid of {grid_size} points: at most {MAX_GRID_SIZE} (sample it instead)", doc.loc(("sampler",))
            )
        )
    if len(params) > MAX_PARAMS:  # each is checked at its ends against the whole spec: a cost that grows as n^2
        diags.append(Diagnostic(f"{len(params)} parameters: at most {MAX_PARAMS}", doc.loc(("params",))))
    trials = data.get("trials", grid_size or 20)
    spec = os.path.normpath(os.path.join(os.path.dirname(os.fsdecode(path)), data["spec"]))
    roots = default_roots(path)
    if not inside(os.path.realpath(spec), roots):  # refused by name, before anything reads it, as extends is
        diags.append(
            Diagnostic(
                f"the spec {excerpt(data['spec'], 200)} is outside the folders a sweep file may read "
                f"({', '.join(roots)}: the working directory and the sweep file's folder)",
                doc.loc(("spec",)),
            )
        )
    elif not os.path.isfile(spec):
        diags.append(Diagnostic(f"no such spec file '{data['spec']}' (looked for {spec})", doc.loc(("spec",))))
    if diags:
        raise SpecError(diags)
    name = data.get("name") or Path(path).stem
    metric = data["objective"]["metric"]
    return Sweep(
        os.fsdecode(path),
        doc,
        name,
        spec,
        params,
        metric,
        data["objective"]["mode"],
        trials,
        data.get("workers", 1),
        data.get("seed", 0),
        sampler,
        pruner,
        fixed,
    )


def _normalize(value) -> dict:
    return {"type": value} if isinstance(value, str) else dict(value)


def _param(name: str, path: tuple, d: dict, loc: Location):
    """(Param or None, [(subpath, message)]) for one entry of ``params``."""
    kinds = [k for k in ("choice", "int", "float") if k in d]
    if len(kinds) != 1:
        return None, [
            (
                (),
                f"'{name}' needs exactly one of choice, int and float"
                + (f"; it has {', '.join(kinds)}" if kinds else ""),
            )
        ]
    kind = kinds[0]
    problems: list[tuple[tuple[str | int, ...], str]] = []
    if kind == "choice":
        for key in ("log", "step"):
            if key in d:
                problems.append(((key,), f"'{key}' applies to int and float ranges, not to a choice"))
        return (None if problems else Param(name, path, kind, loc, choices=tuple(d["choice"]))), problems
    low, high = d[kind]
    log, step = d.get("log", False), d.get("step")
    if low > high:
        problems.append(((kind,), f"the range of '{name}' is empty: low {low} > high {high}"))
    if log and low <= 0:
        problems.append(((kind, 0), f"a log scale needs low > 0, got {low}"))
    if log and step is not None and not (kind == "int" and step == 1):
        problems.append((("step",), "a range is either on a log scale or stepped, not both"))
    if kind == "int" and step is not None and step != int(step):
        problems.append((("step",), f"an int range needs a whole step, got {step}"))
    for i, v in enumerate((low, high)):
        if isinstance(v, float) and not math.isfinite(v):
            problems.append(((kind, i), f"range bounds must be finite, got {v}"))
    if problems:
        return None, problems
    if kind == "float" and step is not None and step > 0:
        count = (high - low) / step
        if not math.isfinite(count) or count > MAX_STEPS:
            problems.append((("step",), f"a step of {step} cuts the range into more than {MAX_STEPS} values"))
            return None, problems
    step = (int(step) if kind == "int" else float(step)) if step is not None else None
    return Param(name, path, kind, loc, low=low, high=high, log=log, step=step), []


def _schema_diagnostics(error, doc: Document) -> list[Diagnostic]:
    return [d for e in _leaf_errors(error) for d in _translate(e, doc)]


# --- checking the sweep's points against the base spec -------------------------------------------------------


def points(sweep: Sweep) -> tuple[list[dict], str]:
    """The assignments to check and how they were chosen: every point of a grid, the product of every
    parameter's corners when that is small, else each corner alone plus the all-low and all-high ones."""
    names = [p.name for p in sweep.params]
    corners = [p.corners() for p in sweep.params]
    size = math.prod(len(c) for c in corners)
    limit = MAX_GRID if sweep.sampler["type"] == "grid" else MAX_POINTS
    if size <= limit:
        return [dict(zip(names, combo)) for combo in itertools.product(*corners)], f"all {size} combinations"
    first = {n: c[0] for n, c in zip(names, corners)}
    out = [first, {n: c[-1] for n, c in zip(names, corners)}]
    out += [{**first, n: v} for n, c in zip(names, corners) for v in c[1:]]
    return out, f"{len(out)} of {size} combinations (each value alone, all low, all high)"


def check_sweep(path) -> tuple[bool, list[Diagnostic]]:
    """(valid, diagnostics): the sweep file itself, its objective against the base spec, and every point
    chosen by ``points`` composed onto the base spec and validated as a spec."""
    try:
        sweep = load_sweep(path)
        base = sweep.compose({})
    except SpecError as e:
        return False, e.diagnostics
    diags, _ = validate(base)
    if any(d.severity == "error" for d in diags):
        return False, diags
    diags += objective_diagnostics(sweep, base)
    seen = {(d.message, d.location) for d in diags}
    chosen, _ = points(sweep)
    for point in chosen:
        try:
            found, _ = validate(sweep.compose(point))
        except SpecError as e:
            found = e.diagnostics
        shown = ", ".join(f"{k}={v!r}" for k, v in point.items())
        for d in found:
            if d.severity == "error" and (d.message, d.location) not in seen:
                seen.add((d.message, d.location))
                # an error in the base spec names the sweep's place too, so both ends can be found
                where = (
                    "" if d.location and d.location.file == sweep.file else f"; params at {sweep.doc.loc(('params',))}"
                )
                diags.append(Diagnostic(f"{d.message} [with {shown}{where}]", d.location))
    diags.sort(
        key=lambda d: (0, "", 0, 0) if d.location is None else (1, d.location.file, d.location.line, d.location.col)
    )
    return not any(d.severity == "error" for d in diags), diags


def objective_diagnostics(sweep: Sweep, base: Document) -> list[Diagnostic]:
    """The objective names a split the base spec makes and a metric it computes; pruning has the
    per-evaluation values it needs."""
    data = base.data
    assert isinstance(data, dict)  # check_sweep validated it: a mapping
    out: list[Diagnostic] = []
    split, metric = sweep.split, sweep.metric_name
    where = sweep.doc.loc(("objective", "metric"))
    if split != "train" and not (data["data"].get("split") or {}).get(split):
        out.append(
            Diagnostic(
                f"the objective {sweep.metric} needs a {split} split: the spec {sweep.spec} has no data.split.{split}",
                where,
            )
        )
    known = ["loss", *(metric_name(m) for m in data.get("metrics", []))]
    if metric not in known:
        out.append(
            Diagnostic(
                f"the spec does not compute '{metric}'; the objective can be one of "
                f"{', '.join(split + '.' + k for k in known)}",
                where,
            )
        )
    if sweep.pruner["type"] != "none":
        at = sweep.doc.loc(("pruner",))
        if split != "val":
            out.append(
                Diagnostic(
                    "pruning compares trials on their validation evaluations: the objective "
                    f"must be a val metric, not {sweep.metric}",
                    at,
                )
            )
        elif not (data["train"].get("validation") or {}):
            out.append(
                Diagnostic(
                    "pruning needs the spec to evaluate as it trains: set train.validation "
                    "(e.g. in the sweep's set: {train.validation.every: 50})",
                    at,
                )
            )
    return out
