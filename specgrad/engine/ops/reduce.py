"""Reductions and the broadcasting helpers the engine emits when it builds a backward pass."""

from functools import lru_cache

import numpy as np

from specgrad.engine.ops import onnx_lowerings as lower
from specgrad.engine.ops.registry import (
    ShapeError,
    broadcast_shapes,
    float_dtype,
    normalize_axes,
    reduced_shape,
    register,
    result_dtype,
)


def _axes(axis):
    """An axis attribute as numpy takes it."""
    return None if axis is None else tuple(np.atleast_1d(axis))


def _expand_back(g, x, axis, keepdims):
    """The VJP of a reduction: g put back on the reduced axes and broadcast to x's shape."""
    graph = x.graph
    if not keepdims and axis is not None:
        g = graph.apply("expand_dims", g, axis=list(normalize_axes(axis, x.ndim)))
    return graph.apply("broadcast_like", g, x)


def _sum_dtype(x, **_):
    """numpy's sum: bools and integers narrower than the platform's int are summed (and returned) in it."""
    if x is not None and x.kind in "biu" and x.itemsize < np.dtype(np.int_).itemsize:
        return np.dtype(np.uint if x.kind == "u" else np.int_)
    return result_dtype(x)


@register(
    "sum",
    shape=reduced_shape,
    dtype=_sum_dtype,
    attrs=("axis", "keepdims"),
    arity=1,
    onnx=lower.reduction("ReduceSum"),
    vjp=(lambda g, out, x, axis=None, keepdims=False: _expand_back(g, x, axis, keepdims),),
    examples=[
        ([(3, 4)], {}),
        ([(3, 4, 2)], {"axis": 1}),
        ([(3, 4)], {"axis": [0, 1], "keepdims": True}),
        ([(3, 1)], {"axis": -1}),
    ],
)
def sum_(x, axis=None, keepdims=False):
    """sum over axes (all when axis is omitted)"""
    if axis is None and type(x) is np.ndarray and x.dtype.kind == "f":
        return np.add.reduce(x, axis=None, keepdims=keepdims)  # np.sum's own reduction, minus its wrapper
    return np.sum(x, axis=_axes(axis), keepdims=keepdims)


@register(
    "mean",
    shape=reduced_shape,
    dtype=float_dtype,
    attrs=("axis", "keepdims"),
    arity=1,
    onnx=lower.reduction("ReduceMean"),
    vjp=(
        lambda g, out, x, axis=None, keepdims=False: (
            _expand_back(g, x, axis, keepdims) / x.graph.apply("count", x, axis=axis)
        ),
    ),
    examples=[([(3, 4)], {}), ([(3, 4, 2)], {"axis": [0, 2]}), ([(3, 4)], {"axis": 0, "keepdims": True})],
)
def mean(x, axis=None, keepdims=False):
    """mean over axes (all when axis is omitted)"""
    return np.mean(x, axis=_axes(axis), keepdims=keepdims)


@register(
    "count",
    shape=lambda x, axis=None: (),
    dtype=float_dtype,
    attrs=("axis",),
    arity=1,
    constant=True,
    vjp=(None,),
    internal=True,
    no_examples="returns a size, which does not depend on the values",
)
def count(x, axis=None):
    """number of elements over axes, as a float scalar (sizes may be known only at run time)"""
    shape = np.shape(x)
    return np.asarray(np.prod([shape[a] for a in normalize_axes(axis, len(shape))]), float_dtype(np.result_type(x)))


def _keep(out, x, axis, keepdims):
    """A reduction's result with its reduced axes restored as size 1 (so it broadcasts against x)."""
    if keepdims or x.ndim == 0:
        return out
    return x.graph.apply("expand_dims", out, axis=list(normalize_axes(axis, x.ndim)))


def _extremum_vjp(g, out, x, axis=None, keepdims=False):
    return _expand_back(g, x, axis, keepdims) * x.graph.apply("tie_share", x, _keep(out, x, axis, keepdims), axis=axis)


@register(
    "max",
    shape=reduced_shape,
    attrs=("axis", "keepdims"),
    arity=1,
    onnx=lower.reduction("ReduceMax"),
    vjp=(_extremum_vjp,),
    examples=[([(3, 4)], {}), ([(3, 4, 2)], {"axis": 1}), ([(3, 1)], {"axis": [0, 1], "keepdims": True})],
)
def max_(x, axis=None, keepdims=False):
    """largest element over axes (ties split the gradient equally)"""
    return np.max(x, axis=_axes(axis), keepdims=keepdims)


@register(
    "min",
    shape=reduced_shape,
    attrs=("axis", "keepdims"),
    arity=1,
    onnx=lower.reduction("ReduceMin"),
    vjp=(_extremum_vjp,),
    examples=[([(3, 4)], {}), ([(2, 4, 3)], {"axis": -1, "keepdims": True}), ([(1, 3)], {"axis": 0})],
)
def min_(x, axis=None, keepdims=False):
    """smallest element over axes (ties split the gradient equally)"""
    return np.min(x, axis=_axes(axis), keepdims=keepdims)


def _tie_share_shape(x, extremum, axis=None):
    if len(extremum) != len(x):
        raise ShapeError(f"tie_share needs the extremum with kept axes, got {list(extremum)} for {list(x)}")
    return tuple(x)


@register(
    "tie_share",
    shape=_tie_share_shape,
    dtype=float_dtype,
    attrs=("axis",),
    arity=2,
    constant=True,
    vjp=(None, None),
    internal=True,
    no_examples="piecewise constant (max/min's tie shares): zero almost everywhere",
)
def tie_share(x, extremum, axis=None):
    """1/k at each of the k elements equal to the extremum over axes, 0 elsewhere: their gradient shares"""
    hit = np.equal(x, extremum).astype(float_dtype(np.result_type(x)))
    return hit / np.sum(hit, axis=_axes(axis), keepdims=True)


def _var_shape(x, axis=None, keepdims=False, ddof=0):
    return reduced_shape(x, axis, keepdims)


def _var_vjp(g, out, x, axis=None, keepdims=False, ddof=0):
    graph = x.graph
    centered = x - graph.apply("mean", x, axis=axis, keepdims=True)
    return _expand_back(g, x, axis, keepdims) * (2 * centered) / (graph.apply("count", x, axis=axis) - ddof)


@register(
    "var",
    shape=_var_shape,
    dtype=float_dtype,
    attrs=("axis", "keepdims", "ddof"),
    arity=1,
    onnx=lower.var,
    vjp=(_var_vjp,),
    examples=[([(3, 4)], {}), ([(3, 4, 2)], {"axis": [0, 2]}), ([(5, 1)], {"axis": 0, "keepdims": True, "ddof": 1})],
)
def var(x, axis=None, keepdims=False, ddof=0):
    """variance over axes: mean of squared deviations, divided by n - ddof instead of n (default ddof 0)"""
    return np.var(x, axis=_axes(axis), keepdims=keepdims, ddof=ddof)


@register(
    "logsumexp",
    shape=reduced_shape,
    dtype=float_dtype,
    attrs=("axis", "keepdims"),
    arity=1,
    onnx=lower.logsumexp,
    vjp=(
        lambda g, out, x, axis=None, keepdims=False: (
            _expand_back(g, x, axis, keepdims) * x.graph.apply("exp", x - _keep(out, x, axis, keepdims))
        ),
    ),
    examples=[([(3, 4)], {}), ([(3, 4, 2)], {"axis": 1}), ([(1, 4)], {"axis": -1, "keepdims": True})],
)
def logsumexp(x, axis=None, keepdims=False):
    """log(sum(e ** x)) over axes, computed without overflow (the largest element is factored out)"""
    x = np.asarray(x, float_dtype(np.result_type(x)))
    m = np.max(x, axis=_axes(axis), keepdims=True)
    m = np.where(np.isfinite(m), m, 0)  # all -inf (or an inf) along an axis: nothing to factor out
    out = np.log(np.sum(np.exp(x - m), axis=_axes(axis), keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=_axes(axis) if axis is not None else None)


def _sum_to_shape(g, shape):
    """Runtime reduction of a broadcast cotangent back to ``shape`` (symbolic dims taken from g)."""
    axes, lead, leading_only = _sum_axes(g.shape, tuple(shape))
    # in g's own dtype (numpy would widen an int32 sum): undoing a broadcast keeps the dtype
    if leading_only:  # a bias gradient: sum over the batch axes, nothing to reshape
        return np.add.reduce(g, axis=axes, dtype=g.dtype)
    if axes:
        g = np.sum(g, axis=axes, keepdims=True, dtype=g.dtype)
    return g.reshape(g.shape[lead:]) if lead else g


@lru_cache(maxsize=1024)
def _sum_axes(g_shape: tuple, shape: tuple) -> tuple[tuple, int, bool]:
    """The axes to sum (leading ones, then broadcast size-1 ones), the number of leading axes, and whether
    only leading axes are summed. Worked out once per pair of shapes: the plan calls with the same ones."""
    lead = len(g_shape) - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape) if d == 1 and g_shape[lead + i] != 1)
    return axes, lead, bool(axes) and axes == tuple(range(lead))


def _sum_to_infer(g, shape):
    if len(shape) > len(g):
        raise ShapeError(f"cannot sum a value of rank {len(g)} to rank {len(shape)}")
    return tuple(shape)


@register(
    "sum_to",
    shape=_sum_to_infer,
    attrs=("shape",),
    view=True,
    arity=1,
    internal=True,
    vjp=(lambda g, out, x, shape: x.graph.apply("broadcast_like", g, x),),
    examples=[([(3, 4)], {"shape": (4,)}), ([(2, 3, 4)], {"shape": (3, 1)})],
)
def sum_to(g, shape):
    """undo broadcasting: sum g over the axes along which a value of ``shape`` was broadcast"""
    return _sum_to_shape(np.asarray(g), shape)


def _broadcast_like_infer(g, like):
    if broadcast_shapes(g, like) != tuple(like):
        raise ShapeError(f"cannot broadcast {list(g)} to {list(like)}")
    return tuple(like)


@register(
    "broadcast_like",
    shape=_broadcast_like_infer,
    view=True,
    arity=2,
    internal=True,
    inert=(1,),
    dtype=lambda g, like: g if g is not None else like,
    vjp=(lambda g, out, x, like: x.graph.apply("sum_to", g, shape=x.shape), None),
    examples=[([(4,), np.zeros((3, 4))], {}), ([(3, 1), np.zeros((3, 5))], {})],
)
def broadcast_like(x, like):
    """x broadcast to the shape of ``like`` (whose values are not used)"""
    return np.broadcast_to(x, np.shape(like))
