"""The op registry: one entry per primitive, holding its forward, shape rule and VJPs side by side.

An op's forward is a numpy function of arrays and keyword attributes. Its shape rule maps input shapes
(tuples of ints and symbolic dims such as ``"B"``, the batch) to the output shape, so that shapes are known
before any data exists. Its VJPs, one per input, build *graph nodes*: they take the output cotangent ``g``,
the op's output node ``out`` and its input nodes, and return the cotangent for that input expressed with
registered ops (node arithmetic reads like the math). Broadcasting is undone once, by the engine, so a VJP
may return a cotangent of the broadcast shape. A ``None`` VJP declares an input not differentiable (integer
labels and indices, or a value whose shape alone is read).

A forward whose signature has an ``out`` parameter writes its result into a preallocated ``out=`` array when
given one (``Op.writes_out``); the execution plan may use that to reuse buffers across steps. An op whose
result may share memory with an input (``Op.view``: reshape, slice, transpose...) must not have that result
written in place while the input is live.

Each op gives example calls (``examples=``): a list of ``([input, ...], attrs)`` where an input is a shape
(random floats, differentiated) or an array (a constant: integer labels, indices and keys, or a value read
only for its shape), with broadcasting and size-1 axes wherever the op allows them. tests/test_engine.py checks
every op's VJPs against finite differences on them, docs/ops.md shows the first, and the ONNX tests run them
too. An op without examples says why (``no_examples=``): every VJP is None, or a named test checks it instead.

An op's ONNX lowering (``onnx=``, written in specgrad/engine/ops/onnx_lowerings.py) emits the ONNX nodes computing
its forward; ``specgrad export`` calls it. An op a spec can write declares one, or a ``NotExportable``
saying why it has none (a test checks every op does).
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # onnx_lowerings imports this module
    from specgrad.engine.ops.onnx_lowerings import NotExportable

Dim = "int | str"
Shape = tuple


class ShapeError(ValueError):
    """Inputs whose shapes (or attributes) an op cannot accept; the message names them."""


class ArgumentError(ShapeError):
    """Arguments an op does not take, or of the wrong kind: about the call, not about its inputs' shapes."""


@dataclass(frozen=True)
class Op:
    name: str
    forward: Callable  # (*arrays, **attrs) -> ndarray
    infer_shape: Callable  # (*shapes, **attrs) -> shape
    vjps: tuple | PerInput | None  # one builder per input; None entry: not differentiable there
    infer_dtype: Callable | None = None  # (*dtypes, **attrs) -> dtype; default: numpy promotion
    doc: str = ""
    attrs: tuple = ()  # names of the attributes the op takes
    arity: int | None = None  # fixed number of inputs, None if variadic
    fd_domain: str = "real"  # where finite differences are meaningful: real | positive
    internal: bool = False  # emitted by the engine, not written in specs
    writes_out: bool = False  # forward accepts ``out=`` (a preallocated result buffer)
    view: bool = False  # result may share memory with an input
    onnx: Callable | NotExportable | None = (
        None  # ONNX lowering (specgrad/engine/ops/onnx_lowerings.py); None: not exportable
    )
    examples: tuple = ()  # example calls ([input, ...], attrs), checked by finite differences
    no_examples: str | None = None  # why the op has no examples (and what checks it instead)
    # locally constant in its inputs (a step, a sign, a size): the derivative is zero wherever it is defined,
    # so no cotangent flows through it. Such ops appear in first-derivative graphs; differentiating those
    # again (Hessian-vector products) passes over them.
    constant: bool = False
    # inputs the result does not depend on smoothly: read only for their shape (``like``) or as a condition
    # (``where``'s): zero derivative, nothing flows back to them (their VJP entry is None)
    inert: tuple = ()
    products: Callable | None = None  # (*shapes, **attrs) -> [(calls, m, k, n)]: the BLAS matrix products
    # its forward makes (a run picks its thread count from them)
    blocked: bool = False  # its products go through specgrad/engine/blocks.py (row blocks on shared threads)

    def __call__(self, *args, **kwargs):  # convenience for numpy-level use in tests
        return self.forward(*args, **kwargs)


REGISTRY: dict[str, Op] = {}


class PerInput:
    """The VJPs of a variadic op (concat, stack): ``vjps[k]`` is ``vjp(k, g, out, *inputs, **attrs)``, the
    cotangent of input ``k``. Indexable like a tuple of any length; not iterable (it has no end)."""

    def __init__(self, vjp: Callable):
        self.vjp = vjp

    def __getitem__(self, k: int) -> Callable:
        return partial(self.vjp, k)

    def __len__(self) -> int:
        return sys.maxsize

    def __iter__(self):
        raise TypeError("the VJPs of a variadic op are indexed per input, not iterated")


def register(
    name: str,
    *,
    shape: Callable,
    vjp: Sequence | PerInput | None,
    dtype: Callable | None = None,
    attrs: Sequence[str] = (),
    arity: int | None = None,
    fd_domain: str = "real",
    internal: bool = False,
    view: bool = False,
    onnx: Callable | NotExportable | None = None,
    examples: Sequence = (),
    no_examples: str | None = None,
    constant: bool = False,
    inert: Sequence[int] = (),
    products: Callable | None = None,
    blocked: bool = False,
) -> Callable:
    """Decorator registering ``forward`` under ``name``; the forward's docstring becomes the op's doc.
    ``onnx`` is the op's lowering to ONNX nodes (see specgrad/engine/ops/onnx_lowerings.py), or a ``NotExportable``
    saying why there is none; ``constant`` and ``inert`` tell second derivatives what has none (see ``Op``).
    ``products`` gives, from concrete input shapes and the attributes, the matrix products (``(calls, m, k,
    n)``: ``calls`` BLAS calls of [m, k] @ [k, n]) the forward hands to BLAS; ``blocked``, that it hands them
    over through ``specgrad.engine.blocks.matmul`` (which may split them into row blocks)."""

    def deco(forward: Callable) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"op {name!r} registered twice")
        vjps = vjp if vjp is None or isinstance(vjp, PerInput) else tuple(vjp)
        writes_out = "out" in inspect.signature(forward).parameters
        if bool(examples) == bool(no_examples):
            raise ValueError(f"op {name!r} needs either examples or the reason it has none (no_examples)")
        REGISTRY[name] = Op(
            name,
            forward,
            shape,
            vjps,
            dtype,
            (forward.__doc__ or "").strip(),
            tuple(attrs),
            arity,
            fd_domain,
            internal,
            writes_out,
            view,
            onnx,
            tuple(examples),
            no_examples,
            constant,
            tuple(inert),
            products,
            blocked,
        )
        return forward

    return deco


def get_op(name: str) -> Op:
    return REGISTRY[name]


def emit(name: str, *args, **attrs):
    """``name(*args, **attrs)`` appended to the graph of the first node among ``args``: how a VJP calls an op
    that has no operator of its own (``emit("cos", x)``)."""
    graph = next(a for a in args if hasattr(a, "graph")).graph
    return graph.apply(name, *args, **attrs)


# ------------------------------------------------------------------------------------------ shape rules
def fmt_shape(shape: Shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def broadcast_shapes(*shapes: Shape) -> Shape:
    """numpy broadcasting over shapes that may hold symbolic dims (a symbol only matches itself or 1)."""
    nd = max(len(s) for s in shapes)
    padded = [(1,) * (nd - len(s)) + tuple(s) for s in shapes]
    out = []
    for dims in zip(*padded):
        sizes = {d for d in dims if d != 1}
        if len(sizes) > 1:
            raise ShapeError("cannot broadcast shapes " + " and ".join(fmt_shape(s) for s in shapes))
        out.append(sizes.pop() if sizes else 1)
    return tuple(out)


def same_shape(x: Shape, **_) -> Shape:
    return tuple(x)


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """Axis attribute (None, int or list) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ShapeError(f"axis {a} is out of range for a value of rank {ndim}")
        out.append(a % ndim)
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {list(axes)}")
    return tuple(sorted(out))


def reduced_shape(x: Shape, axis=None, keepdims: bool = False) -> Shape:
    axes = normalize_axes(axis, len(x))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def result_dtype(*dtypes, **_):
    """numpy promotion; ``None`` marks a Python scalar constant, which adopts its partner's dtype."""
    real = [d for d in dtypes if d is not None]
    return np.result_type(*real) if real else np.dtype(np.float64)


def float_dtype(*dtypes, **_):
    """Promotion, with integers promoted to float64 (exp, log, division...)."""
    d = result_dtype(*dtypes)
    return d if np.issubdtype(d, np.floating) else np.dtype(np.float64)


def require_integer(dtype, what: str) -> None:
    """Dtype rules of ops whose input holds labels, indices or a random key."""
    if dtype is not None and np.dtype(dtype).kind not in "iub":
        raise ShapeError(f"{what} must be integers, got {np.dtype(dtype)}")
