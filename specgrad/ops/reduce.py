"""Reductions and the broadcasting helpers the engine emits when it builds a backward pass."""
import numpy as np

from specgrad.ops.registry import ShapeError, float_dtype, normalize_axes, reduced_shape, register


def _expand_back(g, x, axis, keepdims):
    """The VJP of a reduction: g put back on the reduced axes and broadcast to x's shape."""
    graph = x.graph
    if not keepdims and axis is not None:
        g = graph.apply("expand_dims", g, axis=list(normalize_axes(axis, x.ndim)))
    return graph.apply("broadcast_like", g, x)


@register("sum", shape=reduced_shape, attrs=("axis", "keepdims"), arity=1,
          vjp=(lambda g, out, x, axis=None, keepdims=False: _expand_back(g, x, axis, keepdims),))
def sum_(x, axis=None, keepdims=False):
    """sum over axes (all when axis is omitted)"""
    return np.sum(x, axis=None if axis is None else tuple(np.atleast_1d(axis)), keepdims=keepdims)


@register("mean", shape=reduced_shape, dtype=float_dtype, attrs=("axis", "keepdims"), arity=1,
          vjp=(lambda g, out, x, axis=None, keepdims=False:
               _expand_back(g, x, axis, keepdims) / x.graph.apply("count", x, axis=axis),))
def mean(x, axis=None, keepdims=False):
    """mean over axes (all when axis is omitted)"""
    return np.mean(x, axis=None if axis is None else tuple(np.atleast_1d(axis)), keepdims=keepdims)


@register("count", shape=lambda x, axis=None: (), dtype=float_dtype, attrs=("axis",), arity=1,
          vjp=(None,), internal=True)
def count(x, axis=None):
    """number of elements over axes, as a float scalar (sizes may be known only at run time)"""
    shape = np.shape(x)
    return np.float64(np.prod([shape[a] for a in normalize_axes(axis, len(shape))]))


def _sum_to_shape(g, shape):
    """Runtime reduction of a broadcast cotangent back to ``shape`` (symbolic dims taken from g)."""
    lead = g.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, d in enumerate(shape)
                                      if d == 1 and g.shape[lead + i] != 1)
    if axes:
        g = np.sum(g, axis=axes, keepdims=True)
    return g.reshape(g.shape[lead:]) if lead else g


def _sum_to_infer(g, shape):
    if len(shape) > len(g):
        raise ShapeError(f"cannot sum a value of rank {len(g)} to rank {len(shape)}")
    return tuple(shape)


@register("sum_to", shape=_sum_to_infer, attrs=("shape",), arity=1, internal=True,
          vjp=(lambda g, out, x, shape: x.graph.apply("broadcast_like", g, x),))
def sum_to(g, shape):
    """undo broadcasting: sum g over the axes along which a value of ``shape`` was broadcast"""
    return _sum_to_shape(np.asarray(g), shape)


def _broadcast_like_infer(g, like):
    from specgrad.ops.registry import broadcast_shapes
    if broadcast_shapes(g, like) != tuple(like):
        raise ShapeError(f"cannot broadcast {list(g)} to {list(like)}")
    return tuple(like)


@register("broadcast_like", shape=_broadcast_like_infer, arity=2, internal=True,
          dtype=lambda g, like: g if g is not None else like,
          vjp=(lambda g, out, x, like: x.graph.apply("sum_to", g, shape=x.shape), None))
def broadcast_like(x, like):
    """x broadcast to the shape of ``like`` (whose values are not used)"""
    return np.broadcast_to(x, np.shape(like))
