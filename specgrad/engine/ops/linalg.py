"""Matrix products and the shape ops their VJPs need. matmul is one BLAS call, or fixed row blocks of one
on shared threads while a run asks for them (specgrad/engine/blocks.py)."""

import numpy as np

from specgrad.engine import blocks
from specgrad.engine.ops import onnx_lowerings as lower
from specgrad.engine.ops.registry import (
    ShapeError,
    broadcast_shapes,
    float_dtype,
    fmt_shape,
    normalize_axes,
    register,
)


def _matmul_shape(x, y):
    if not x or not y:
        raise ShapeError("matmul needs values of rank >= 1, got " + fmt_shape(x) + " and " + fmt_shape(y))
    xs = (1,) + tuple(x) if len(x) == 1 else tuple(x)
    ys = tuple(y) + (1,) if len(y) == 1 else tuple(y)
    if xs[-1] != ys[-2]:
        raise ShapeError(f"matmul of {fmt_shape(x)} by {fmt_shape(y)}: inner dimensions {xs[-1]} and {ys[-2]} differ")
    batch = broadcast_shapes(xs[:-2], ys[:-2])
    return batch + xs[-2:-1] * (len(x) > 1) + ys[-1:] * (len(y) > 1)


def _matmul_products(x, y):
    """One BLAS call of [m, k] @ [k, n] per element of the broadcast batch dimensions."""
    xs = (1,) + tuple(x) if len(x) == 1 else tuple(x)
    ys = tuple(y) + (1,) if len(y) == 1 else tuple(y)
    calls = int(np.prod(broadcast_shapes(xs[:-2], ys[:-2]), dtype=np.int64))
    return [(calls, xs[-2], xs[-1], ys[-1])]


def _mT(n):
    return n.graph.apply("transpose", n)


def _matmul_vjp_x(g, out, x, y):
    # out = x @ y; rank-1 operands are promoted (x to a row, y to a column) and demoted again.
    if y.ndim == 1:  # g[..., n] -> outer product with y
        gx = x.graph.apply("expand_dims", g, axis=[-1]) * y if x.ndim > 1 else g * y
        return gx
    if x.ndim == 1:  # g[..., m] = x[k] @ y[..., k, m]
        graph = x.graph
        return graph.apply("squeeze", graph.apply("expand_dims", g, axis=[-2]) @ _mT(y), axis=[-2])
    return g @ _mT(y)


def _matmul_vjp_y(g, out, x, y):
    graph = y.graph
    if x.ndim == 1:  # out[..., m] = x[k] @ y[..., k, m]
        if y.ndim == 1:
            return g * x
        return graph.apply("expand_dims", x, axis=[-1]) * graph.apply("expand_dims", g, axis=[-2])
    if y.ndim == 1:  # out[..., n] = x[..., n, k] @ y[k]
        if x.ndim == 2:  # one product: g[n] @ x[n, k]
            return g @ x
        return graph.apply("squeeze", _mT(x) @ graph.apply("expand_dims", g, axis=[-1]), axis=[-1])
    return _mT(x) @ g


@register(
    "matmul",
    shape=_matmul_shape,
    vjp=(_matmul_vjp_x, _matmul_vjp_y),
    arity=2,
    onnx=lower.matmul,
    products=_matmul_products,
    blocked=True,
    examples=[
        ([(3, 4), (4, 5)], {}),
        ([(4,), (4, 5)], {}),
        ([(3, 4), (4,)], {}),
        ([(4,), (4,)], {}),
        ([(2, 3, 4), (4, 5)], {}),
        ([(2, 3, 4), (1, 4, 5)], {}),
        ([(4,), (2, 4, 5)], {}),
        ([(2, 3, 4), (4,)], {}),
        ([(3, 1), (1, 4)], {}),
    ],
)
def matmul(x, y, out=None):
    """matrix product with numpy's rules for rank-1 and batched operands (one BLAS call)"""
    return blocks.matmul(x, y, out=out)


def _transpose_shape(x, axes=None):
    if axes is None:
        if len(x) < 2:
            raise ShapeError(f"transpose needs rank >= 2, got {fmt_shape(x)}")
        return tuple(x[:-2]) + (x[-1], x[-2])
    if len(axes) != len(x) or sorted(a % len(x) for a in axes) != list(range(len(x))):
        raise ShapeError(f"axes {list(axes)} are not a permutation for rank {len(x)}")
    return tuple(x[a] for a in axes)


def _transpose_vjp(g, out, x, axes=None):
    if axes is None:
        return g.graph.apply("transpose", g)
    return g.graph.apply("transpose", g, axes=list(np.argsort([a % x.ndim for a in axes])))


@register(
    "transpose",
    shape=_transpose_shape,
    attrs=("axes",),
    view=True,
    arity=1,
    vjp=(_transpose_vjp,),
    onnx=lower.transpose,
    examples=[([(3, 4)], {}), ([(2, 3, 4)], {"axes": [2, 0, 1]}), ([(1, 3, 1)], {})],
)
def transpose(x, axes=None):
    """permute axes (default: swap the last two)"""
    # the method, not np.swapaxes: its Python wrapper was a third of this op's cost, run per matmul VJP
    return x.swapaxes(-1, -2) if axes is None else np.transpose(x, axes)


def _expand_shape(x, axis):
    axes = normalize_axes(axis, len(x) + len(np.atleast_1d(axis)))
    out = list(x)
    for a in axes:
        out.insert(a, 1)
    return tuple(out)


@register(
    "expand_dims",
    shape=_expand_shape,
    attrs=("axis",),
    view=True,
    arity=1,
    onnx=lower.expand_dims,
    vjp=(lambda g, out, x, axis: g.graph.apply("squeeze", g, axis=axis),),
    examples=[([(3, 4)], {"axis": 1}), ([(3,)], {"axis": [0, -1]})],
)
def expand_dims(x, axis):
    """insert size-1 axes"""
    return np.expand_dims(x, tuple(np.atleast_1d(axis)))


def _squeeze_shape(x, axis):
    axes = normalize_axes(axis, len(x))
    if any(x[a] != 1 for a in axes):
        raise ShapeError(f"cannot squeeze axis of size other than 1 in {fmt_shape(x)}")
    return tuple(d for i, d in enumerate(x) if i not in axes)


@register(
    "squeeze",
    shape=_squeeze_shape,
    attrs=("axis",),
    view=True,
    arity=1,
    onnx=lower.squeeze,
    vjp=(lambda g, out, x, axis: g.graph.apply("expand_dims", g, axis=axis),),
    examples=[([(3, 1, 4)], {"axis": 1}), ([(1, 3, 1)], {"axis": [0, 2]})],
)
def squeeze(x, axis):
    """remove size-1 axes"""
    return np.squeeze(x, tuple(np.atleast_1d(axis)))


def _powers_shape(x, degree):
    if not isinstance(degree, int) or isinstance(degree, bool) or degree < 0:
        raise ShapeError(f"powers needs a non-negative integer degree, got {degree!r}")
    return tuple(x) + (degree + 1,)


def _powers_vjp(g, out, x, degree):
    # d/dx x**j = j * x**(j-1): out @ S with S[j-1, j] = j shifts each power down one place.
    shift = np.diag(np.arange(1.0, degree + 1), k=1).astype(out.dtype)
    return g.graph.apply("sum", g * (out @ shift), axis=-1)


@register(
    "powers",
    shape=_powers_shape,
    dtype=float_dtype,
    attrs=("degree",),
    arity=1,
    vjp=(_powers_vjp,),
    onnx=lower.powers,
    examples=[([(5,)], {"degree": 3}), ([(2, 3)], {"degree": 0})],
)
def powers(x, degree):
    """polynomial features: x ** 0, x ** 1, ..., x ** degree along a new last axis"""
    # x**j by repeated products along the new axis: one cumprod instead of a pow call per element.
    x = np.asarray(x)
    out = np.empty(x.shape + (degree + 1,), x.dtype if x.dtype.kind == "f" else np.float64)
    out[..., :1] = 1
    out[..., 1:] = x[..., None]
    return np.cumprod(out, axis=-1, out=out)
