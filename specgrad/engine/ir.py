"""The graph IR: nodes of registered ops with shapes known before any data exists.

A ``Node`` supports Python arithmetic (``g * y``, ``x @ w``) so that VJPs and model builders read like
the math; every operator becomes a registered op through ``Graph.apply``. The forward model and its
backward pass live in the same graph, so the same planning applies to both.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from functools import cache
from typing import Any

import numpy as np

from specgrad.base.diagnostics import did_you_mean
from specgrad.engine.ops.registry import (
    REGISTRY,
    ArgumentError,
    ShapeError,
    fmt_shape,
    result_dtype,
)

SOURCE_KINDS = ("input", "param", "const")


class Node:
    __slots__ = ("graph", "id", "op", "inputs", "attrs", "shape", "dtype", "name", "loc", "value")

    def __init__(self, graph, id, op, inputs, attrs, shape, dtype, name=None, loc=None, value=None):
        self.graph, self.id, self.op, self.inputs, self.attrs = graph, id, op, inputs, attrs
        self.shape, self.dtype, self.name, self.loc, self.value = shape, dtype, name, loc, value

    def __repr__(self):
        label = self.name or f"%{self.id}"
        return f"<{label} = {self.op}{fmt_shape(self.shape)}>"

    @property
    def ndim(self) -> int:
        return len(self.shape)

    # arithmetic builds graph nodes; Python scalars become constants
    def __add__(self, o):
        return self.graph.apply("add", self, o)

    def __radd__(self, o):
        return self.graph.apply("add", o, self)

    def __sub__(self, o):
        return self.graph.apply("sub", self, o)

    def __rsub__(self, o):
        return self.graph.apply("sub", o, self)

    def __mul__(self, o):
        return self.graph.apply("mul", self, o)

    def __rmul__(self, o):
        return self.graph.apply("mul", o, self)

    def __truediv__(self, o):
        return self.graph.apply("div", self, o)

    def __rtruediv__(self, o):
        return self.graph.apply("div", o, self)

    def __pow__(self, o):
        return self.graph.apply("pow", self, o)

    def __rpow__(self, o):
        return self.graph.apply("pow", o, self)

    def __matmul__(self, o):
        return self.graph.apply("matmul", self, o)

    def __rmatmul__(self, o):
        return self.graph.apply("matmul", o, self)

    def __neg__(self):
        return self.graph.apply("neg", self)

    # Nodes are identities, not values: keep hashing by id even though arithmetic is overloaded.
    __hash__ = object.__hash__

    def __eq__(self, other):
        return self is other


DEFAULT_DTYPE = "float64"
"""The floating dtype of a graph (and of a spec) that names none."""


class Graph:
    """An append-only list of nodes; appending in dependency order makes ``nodes`` a topological order."""

    def __init__(self, dtype: str | np.dtype = DEFAULT_DTYPE) -> None:
        self.nodes: list[Node] = []
        self.inputs: dict[str, Node] = {}
        self.params: dict[str, Node] = {}
        self.dtype = np.dtype(dtype)
        self.loc: Any = None  # location stamped on nodes created meanwhile (see ``at``)

    def _add(self, op, inputs, attrs, shape, dtype, name=None, value=None) -> Node:
        node = Node(self, len(self.nodes), op, tuple(inputs), attrs, tuple(shape), dtype, name, self.loc, value)
        self.nodes.append(node)
        return node

    def input(self, name: str, shape, dtype=None) -> Node:
        node = self._add("input", (), {}, shape, np.dtype(dtype or self.dtype), name)
        self.inputs[name] = node
        return node

    def param(self, name: str, shape, dtype=None) -> Node:
        node = self._add("param", (), {}, shape, np.dtype(dtype or self.dtype), name)
        self.params[name] = node
        return node

    def const(self, value) -> Node:
        """A constant. Python scalars stay Python scalars so they adopt their partner's dtype."""
        if isinstance(value, (bool, int, float)):
            # a numpy scalar (np.float64 is a float) would keep its own dtype at run time: float32 * np.float64
            # is float64 in numpy 2, so it becomes the Python number it stands for
            value = bool(value) if isinstance(value, bool) else int(value) if isinstance(value, int) else float(value)
            return self._add("const", (), {}, (), None, value=value)
        arr = np.asarray(value)
        return self._add("const", (), {}, arr.shape, arr.dtype, value=arr)

    def apply(self, op_name: str, *args, **attrs) -> Node:
        """Append ``op_name(*args, **attrs)``, inferring its shape and dtype; raises ShapeError."""
        op = REGISTRY[op_name]
        inputs = [a if isinstance(a, Node) else self.const(a) for a in args]
        if op.arity is not None and len(inputs) != op.arity:
            raise ShapeError(f"{op_name} takes {op.arity} argument(s), got {len(inputs)}")
        unknown = sorted(set(attrs) - set(op.attrs))
        if unknown:
            takes = f" (it takes {', '.join(op.attrs)})" if op.attrs else ""
            raise ArgumentError(
                f"{op_name} takes no argument '{unknown[0]}'{did_you_mean(unknown[0], op.attrs) or takes}"
            )
        _check_attrs(op, attrs)
        try:
            shape = op.infer_shape(*[n.shape for n in inputs], **attrs)
            dtype = (op.infer_dtype or result_dtype)(*[n.dtype for n in inputs], **attrs)
        except ShapeError:
            raise
        except (TypeError, ValueError, IndexError):  # an attribute of the wrong kind: "axis": "a"
            given = ", ".join(f"{k}={v!r}" for k, v in attrs.items())
            raise ArgumentError(f"{op_name} cannot take {given}") from None
        return self._add(op_name, inputs, attrs, shape, np.dtype(dtype))

    def at(self, loc):
        """Context manager: nodes created inside carry ``loc`` (a spec location) for error messages."""
        return _At(self, loc)


class _At:
    """``Graph.at``'s context (one class, not one per call: a spec enters hundreds)."""

    __slots__ = ("graph", "loc", "prev")

    def __init__(self, graph: Graph, loc):
        self.graph, self.loc = graph, loc

    def __enter__(self):
        self.prev, self.graph.loc = self.graph.loc, self.loc

    def __exit__(self, *exc):
        self.graph.loc = self.prev


def _check_attrs(op, attrs: dict) -> None:
    """Attributes the op's forward requires are given, and text is given only where the op takes text
    (``one_hot``'s dtype; a symbolic dim such as "B" inside a shape list is fine)."""
    params = _parameters(op.forward)
    missing = [a for a in op.attrs if a in params and params[a].default is inspect.Parameter.empty and a not in attrs]
    if missing:
        raise ArgumentError(f"{op.name} needs argument '{missing[0]}' (it takes {', '.join(op.attrs)})")
    for name, value in attrs.items():
        if isinstance(value, str) and not isinstance(params[name].default if name in params else None, str):
            raise ArgumentError(f"argument '{name}' of {op.name} must be a number, not {value!r}")
        if name in INTEGER_ATTRS and not _integers(value):
            raise ArgumentError(
                f"argument '{name}' of {op.name} must be an integer"
                f"{' or a list of integers' if name in LIST_ATTRS else ''}, got {value!r}"
            )


# Attributes that count or index (axes, sizes, degrees...): 2.0 is refused here, once for every op, rather
# than failing deep in numpy. Every other attribute is a real number, a flag or text (tests/test_ops.py
# checks that each registered attribute is one or the other).
INTEGER_ATTRS = frozenset(
    {
        "axes",
        "axis",
        "ddof",
        "degree",
        "depth",
        "kernel",
        "padding",
        "salt",
        "shape",
        "size",
        "start",
        "step",
        "stop",
        "stride",
    }
)
LIST_ATTRS = frozenset({"axes", "axis", "kernel", "padding", "shape", "size", "stride"})
NON_INTEGER_ATTRS = frozenset({"alpha", "dtype", "hi", "keepdims", "lo", "rate"})


def _integers(value) -> bool:
    """An int, None (the default), a symbolic dimension ("B") or a list of these; never a bool or a float."""
    if isinstance(value, (list, tuple)):
        return all(_integers(v) and not isinstance(v, (list, tuple)) for v in value)
    return (
        value is None
        or isinstance(value, str)
        or (isinstance(value, (int, np.integer)) and not isinstance(value, bool))
    )


@cache
def _parameters(forward) -> Any:
    """A forward's parameters, read once per op (inspect.signature costs ~50 µs; a spec applies ops by the
    hundred)."""
    return inspect.signature(forward).parameters


def ancestors(outputs: Iterable[Node]) -> list[Node]:
    """Every node the outputs depend on, themselves included, in topological (id) order."""
    seen: set[int] = set()
    stack = list(outputs)
    found = []
    while stack:
        n = stack.pop()
        if n.id in seen:
            continue
        seen.add(n.id)
        found.append(n)
        stack.extend(n.inputs)
    return sorted(found, key=lambda n: n.id)
