"""Build: a validated spec's model and loss become one graph with shapes inferred, then its backward pass.

Every problem is reported with the location of the spec text that caused it, and building goes on past
an error (nodes that depend on a broken node are skipped silently), so one pass reports them all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from specgrad.components import normalize
from specgrad.graph.autodiff import gradients
from specgrad.graph.formula import FormulaError, apply_call, build_formula
from specgrad.graph.ir import Graph, Node, ancestors
from specgrad.graph.plan import Plan
from specgrad.losses import LOSSES
from specgrad.ops.registry import ShapeError, fmt_shape
from specgrad.spec.errors import Diagnostic, Location, SpecError

BATCH = "B"   # the symbolic batch dimension


@dataclass
class Model:
    graph: Graph
    inputs: dict[str, Node]          # data fields fed each batch: model inputs, then the loss target
    params: dict[str, Node]
    inits: dict[str, dict]           # param name -> initializer settings
    prediction: Node
    target: str                      # the data field the loss compares the prediction with
    loss: Node
    grads: list[Node]                # same order as params
    warnings: list[Diagnostic]

    def plan(self, outputs) -> Plan:
        return Plan(outputs, [*self.inputs.values(), *self.params.values()])


def build_model(spec: dict, where: Callable[[tuple], Location], formula_loc: Callable | None = None) -> Model:
    """Compile the ``model`` and ``loss`` sections of a validated spec; raises SpecError with every problem.

    ``where(path)`` gives the location of the spec value at ``path``; ``formula_loc(path, col)`` the location
    of a column inside a formula string (defaults to the string's own location).
    """
    formula_loc = formula_loc or (lambda path, col: where(path))
    errors: list[Diagnostic] = []
    graph = Graph(spec.get("dtype", "float64"))
    m = spec["model"]
    scope: dict[str, Node] = {}
    broken: set[str] = set()          # names whose definition failed; uses of them are not re-reported

    for name, shape in m["inputs"].items():
        with graph.at(where(("model", "inputs", name))):
            scope[name] = graph.input(name, (BATCH, *shape))
    inits = {}
    for name, p in (m.get("params") or {}).items():
        if name in scope:
            errors.append(Diagnostic(f"'{name}' is already defined as an input", where(("model", "params", name))))
            continue
        with graph.at(where(("model", "params", name))):
            scope[name] = graph.param(name, tuple(p["shape"]))
        inits[name] = normalize(p.get("init", "zeros"))

    for i, entry in enumerate(m["nodes"]):
        (name, body), = entry.items()
        path = ("model", "nodes", i, name)
        if name in scope or name in broken:
            errors.append(Diagnostic(f"'{name}' is defined twice", where(path)))
            continue
        try:
            with graph.at(where(path)):
                scope[name] = _build_node(graph, body, scope, broken)
        except _Skip:
            broken.add(name)
        except FormulaError as e:
            broken.add(name)
            loc = formula_loc(path, e.col) if isinstance(body, str) else where(path)
            errors.append(Diagnostic(f"node '{name}': {e}", loc))

    prediction = loss = None
    out_name = m["output"]
    if out_name in broken:
        pass
    elif out_name not in scope:
        errors.append(Diagnostic(f"output '{out_name}' is not defined{_dym(out_name, scope)}", where(("model", "output"))))
    else:
        prediction = scope[out_name]

    loss_settings = normalize(spec["loss"])
    target_name = loss_settings.get("target", "y")
    if prediction is not None:
        with graph.at(where(("loss",))):
            if target_name in scope and scope[target_name].op != "input":
                errors.append(Diagnostic(f"loss target '{target_name}' must be a data field, not a model node",
                                         where(("loss",))))
            else:
                target = scope.get(target_name) or graph.input(target_name, prediction.shape, prediction.dtype)
                try:
                    loss = LOSSES.create(loss_settings)(prediction, target)
                except ShapeError as e:
                    errors.append(Diagnostic(f"loss: {e}", where(("loss",))))
        if loss is not None and loss.shape != ():
            errors.append(Diagnostic(f"the loss must be a scalar, got shape {fmt_shape(loss.shape)}", where(("loss",))))
            loss = None

    warnings = []
    if loss is not None:
        reaching = {n.id for n in ancestors([loss])}
        for name, p in graph.params.items():
            if p.id not in reaching:
                warnings.append(Diagnostic(f"parameter '{name}' does not affect the loss", p.loc, "warning"))
    if errors:
        raise SpecError(errors + warnings)
    grads = gradients(loss, list(graph.params.values()), remat=spec["train"].get("remat", False))
    return Model(graph, dict(graph.inputs), dict(graph.params), inits, prediction, target_name, loss, grads, warnings)


class _Skip(Exception):
    """A node uses a name whose definition already failed: reported once, at the definition."""


def _build_node(graph: Graph, body, scope, broken) -> Node:
    if isinstance(body, str):
        names = _names_in(body)
        if names & broken:
            raise _Skip
        return build_formula(body, graph, scope)
    args = []
    for a in body.get("args", []):
        if isinstance(a, str):
            if a in broken:
                raise _Skip
            if a not in scope:
                raise FormulaError(f"undefined name '{a}'{_dym(a, scope)}")
            args.append(scope[a])
        else:
            args.append(a)
    attrs = {k: v for k, v in body.items() if k not in ("op", "args")}
    return apply_call(graph, body["op"], args, attrs)


def _names_in(text: str) -> set[str]:
    import ast
    try:
        return {n.id for n in ast.walk(ast.parse(text.strip(), mode="eval")) if isinstance(n, ast.Name)}
    except SyntaxError:
        return set()


def _dym(word, choices) -> str:
    from specgrad.spec.errors import did_you_mean
    return did_you_mean(word, list(choices))


def init_params(model: Model, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Initial parameter values, drawn in declaration order from ``rng``."""
    from specgrad.init import INITIALIZERS
    out = {}
    for name, node in model.params.items():
        out[name] = np.ascontiguousarray(INITIALIZERS.create(model.inits[name])(node.shape, rng, node.dtype))
    return out
