"""Ops that move values around without arithmetic: reshape, broadcast, slice, gather, concat, stack.

Shapes may hold the symbolic batch dimension (a string such as ``"B"``); a shape attribute may name it too
(``reshape(x, [B, 16])``), and the forward resolves it from the runtime value.
"""

import numpy as np

from specgrad.engine.ops import onnx_lowerings as lower
from specgrad.engine.ops.registry import (
    PerInput,
    ShapeError,
    emit,
    fmt_shape,
    normalize_axes,
    register,
    require_integer,
)


def _numeric_size(shape) -> int:
    return int(np.prod([d for d in shape if isinstance(d, int) and d != -1]))


def _symbols(shape) -> list:
    return [d for d in shape if isinstance(d, str)]


# ---------------------------------------------------------------------------------------------- reshape
def _reshape_shape(x, shape):
    shape = list(shape)
    if any(not isinstance(d, str) and (not isinstance(d, int) or d < -1 or d == 0) for d in shape):
        raise ShapeError(f"reshape sizes must be positive integers, -1 or the batch dimension, got {shape}")
    unknown = [d for d in shape if d == -1 or isinstance(d, str)]
    if len(unknown) > 1:
        known = _numeric_size(x) // max(_numeric_size(shape), 1)
        hint = [known if d == -1 else d for d in shape]
        raise ShapeError(
            f"reshape of {fmt_shape(x)} to {shape} leaves more than one size to infer; "
            f"write {hint}, or flatten(x, axis)"
        )
    x_syms, t_syms = _symbols(x), _symbols(shape)
    if len(x_syms) > 1 or any(s not in x_syms for s in t_syms):
        raise ShapeError(f"reshape of {fmt_shape(x)} to {shape}: the batch dimension must stay a whole axis")
    if x_syms and not t_syms and -1 not in shape:
        raise ShapeError(
            f"reshape of {fmt_shape(x)} to {shape} drops the batch dimension {x_syms[0]}; keep it as {x_syms[0]} or -1"
        )
    total, known = _numeric_size(x), _numeric_size(shape)
    if unknown:
        if total % known:
            raise ShapeError(f"cannot reshape {fmt_shape(x)} to {shape}")
        fill = x_syms[0] if x_syms else total // known
        if x_syms and total != known:
            raise ShapeError(
                f"reshape of {fmt_shape(x)} to {shape} would merge the batch dimension with "
                f"other axes; keep {x_syms[0]} as an axis of its own"
            )
        return tuple(fill if d == -1 else d for d in shape)
    if total != known:
        raise ShapeError(f"cannot reshape {fmt_shape(x)} ({total} elements) to {shape} ({known})")
    return tuple(shape)


@register(
    "reshape",
    shape=_reshape_shape,
    attrs=("shape",),
    view=True,
    arity=1,
    onnx=lower.reshape,
    vjp=(lambda g, out, x, shape: emit("reshape", g, shape=list(x.shape)),),
    examples=[([(3, 4)], {"shape": [2, 6]}), ([(2, 3, 1)], {"shape": [-1]}), ([(1, 6)], {"shape": [3, 1, -1]})],
)
def reshape(x, shape):
    """the same elements in a new shape; one size may be -1 (inferred) or the batch dimension B"""
    return np.reshape(x, [-1 if isinstance(d, str) else d for d in shape])


def _flatten_shape(x, axis=1):
    axis = normalize_axes(axis, len(x))[0] if x else 0
    tail = x[axis:]
    if _symbols(tail) and len(tail) > 1:
        raise ShapeError(f"flatten of {fmt_shape(x)} from axis {axis} would merge the batch dimension")
    return tuple(x[:axis]) + ((tail[0] if _symbols(tail) else _numeric_size(tail)),)


@register(
    "flatten",
    shape=_flatten_shape,
    attrs=("axis",),
    view=True,
    arity=1,
    onnx=lower.flatten,
    vjp=(lambda g, out, x, axis=1: emit("reshape", g, shape=list(x.shape)),),
    examples=[([(2, 3, 4)], {}), ([(2, 1, 3, 1)], {"axis": 2}), ([(4,)], {"axis": 0})],
)
def flatten(x, axis=1):
    """merge the axes from ``axis`` on (default 1) into one: [B, C, H, W] -> [B, C*H*W]"""
    x = np.asarray(x)
    return np.reshape(x, x.shape[: axis % max(x.ndim, 1)] + (-1,))


def _broadcast_to_shape(x, shape):
    shape = tuple(shape)
    lead = len(shape) - len(x)
    if lead < 0:
        raise ShapeError(f"cannot broadcast {fmt_shape(x)} to the lower-rank {fmt_shape(shape)}")
    for i, d in enumerate(shape):
        src = x[i - lead] if i >= lead else None
        if isinstance(d, str) and src != d:
            raise ShapeError(f"broadcast_to {fmt_shape(shape)}: the batch dimension {d} must come from the input")
        if not isinstance(d, str) and src not in (None, 1, d):
            raise ShapeError(f"cannot broadcast {fmt_shape(x)} to {fmt_shape(shape)}")
    return shape


@register(
    "broadcast_to",
    shape=_broadcast_to_shape,
    attrs=("shape",),
    view=True,
    arity=1,
    onnx=lower.broadcast_to,
    vjp=(lambda g, out, x, shape: g,),
    examples=[([(4,)], {"shape": [3, 4]}), ([(3, 1)], {"shape": [2, 3, 5]})],
)  # the engine sums g back to x's shape
def broadcast_to(x, shape):
    """x repeated along new leading axes and size-1 axes to ``shape`` (a read-only view)"""
    x = np.asarray(x)
    lead = len(shape) - x.ndim
    return np.broadcast_to(x, [x.shape[i - lead] if isinstance(d, str) else d for i, d in enumerate(shape)])


# ------------------------------------------------------------------------------------------------ slice
def _index(ndim, axis, start, stop, step):
    idx = [slice(None)] * ndim
    idx[axis % ndim] = slice(start, stop, step)
    return tuple(idx)


def _slice_shape(x, axis, start=None, stop=None, step=None):
    (axis,) = normalize_axes(axis, len(x))
    n = x[axis]
    if isinstance(n, str):
        if (start, stop, step) != (None, None, None):
            raise ShapeError(f"cannot slice the batch dimension {n}")
        return tuple(x)
    if step == 0:
        raise ShapeError("slice step cannot be zero")
    size = len(range(*slice(start, stop, step).indices(n)))
    if size == 0:
        raise ShapeError(f"slice [{start}:{stop}:{step}] of an axis of size {n} is empty")
    return tuple(x[:axis]) + (size,) + tuple(x[axis + 1 :])


@register(
    "slice",
    shape=_slice_shape,
    attrs=("axis", "start", "stop", "step"),
    view=True,
    arity=1,
    onnx=lower.slice_,
    vjp=(lambda g, out, x, **where: emit("slice_grad", g, x, **where),),
    examples=[
        ([(3, 6)], {"axis": 1, "start": 1, "stop": 5, "step": 2}),
        ([(4, 1)], {"axis": 0, "start": -2}),
        ([(2, 5, 1)], {"axis": -2, "stop": 3}),
    ],
)
def slice_(x, axis, start=None, stop=None, step=None):
    """x[start:stop:step] along one axis (Python slice rules; a view)"""
    x = np.asarray(x)
    return x[_index(x.ndim, axis, start, stop, step)]


def _slice_grad_shape(g, like, axis, start=None, stop=None, step=None):
    if _slice_shape(like, axis, start, stop, step) != tuple(g):
        raise ShapeError(f"slice_grad: {fmt_shape(g)} is not a slice of {fmt_shape(like)}")
    return tuple(like)


@register(
    "slice_grad",
    shape=_slice_grad_shape,
    attrs=("axis", "start", "stop", "step"),
    arity=2,
    inert=(1,),
    internal=True,
    dtype=lambda g, like, **_: g,
    vjp=(lambda c, out, g, like, **where: emit("slice", c, **where), None),
    examples=[
        ([(3, 2), np.zeros((3, 6))], {"axis": 1, "start": 1, "stop": 5, "step": 2}),
        ([(1, 1), np.zeros((1, 4))], {"axis": -1, "start": -1}),
    ],
)
def slice_grad(g, like, axis, start=None, stop=None, step=None):
    """zeros of like's shape with g written where slice(like, ...) reads: the VJP of slice"""
    out = np.zeros(np.shape(like), np.result_type(g))
    out[_index(out.ndim, axis, start, stop, step)] = g
    return out


# ------------------------------------------------------------------------------------------------- take
def _take_shape(x, indices, axis=0):
    (axis,) = normalize_axes(axis, len(x))
    return tuple(x[:axis]) + tuple(indices) + tuple(x[axis + 1 :])


def _take_dtype(x, indices, **_):
    require_integer(indices, "take's indices")
    return x


@register(
    "take",
    shape=_take_shape,
    attrs=("axis",),
    arity=2,
    dtype=_take_dtype,
    onnx=lower.take,
    vjp=(lambda g, out, x, indices, axis=0: emit("take_grad", g, indices, x, axis=axis), None),
    examples=[
        ([(5, 3), np.array([[0, 4], [4, 2]])], {}),
        ([(2, 4, 1), np.array([3, 0, 3])], {"axis": 1}),
        ([(3,), np.array(2)], {}),
    ],
)
def take(x, indices, axis=0):
    """x's entries at integer ``indices`` along ``axis`` (default 0): embedding lookup, gather.
    The result's shape is x's with that axis replaced by the shape of indices; indices are not differentiable"""
    return np.take(x, indices, axis=axis)


def _take_grad_shape(g, indices, like, axis=0):
    if _take_shape(like, indices, axis) != tuple(g):
        raise ShapeError(f"take_grad: {fmt_shape(g)} is not what take gives for {fmt_shape(like)}")
    return tuple(like)


@register(
    "take_grad",
    shape=_take_grad_shape,
    attrs=("axis",),
    arity=3,
    internal=True,
    inert=(2,),
    dtype=lambda g, i, like, **_: g,
    vjp=(lambda c, out, g, indices, like, axis=0: emit("take", c, indices, axis=axis), None, None),
    examples=[
        ([(2, 2, 3), np.array([[0, 4], [4, 2]]), np.zeros((5, 3))], {}),
        ([(2, 3, 1), np.array([3, 0, 3]), np.zeros((2, 4, 1))], {"axis": 1}),
    ],
)
def take_grad(g, indices, like, axis=0):
    """zeros of like's shape with g added at ``indices`` along ``axis`` (repeats accumulate): take's VJP"""
    indices = np.asarray(indices)
    out = np.zeros(np.shape(like), np.result_type(g))
    axis = axis % out.ndim
    rows = np.moveaxis(np.asarray(g), list(range(axis, axis + indices.ndim)), list(range(indices.ndim)))
    np.add.at(
        np.moveaxis(out, axis, 0), indices.reshape(-1), rows.reshape((indices.size,) + rows.shape[indices.ndim :])
    )
    return out


def _one_hot_shape(labels, depth, dtype="float64"):
    if not isinstance(depth, int) or depth < 1:
        raise ShapeError(f"one_hot needs a positive integer depth, got {depth!r}")
    return tuple(labels) + (depth,)


def _one_hot_dtype(labels, depth, dtype="float64"):
    require_integer(labels, "one_hot's labels")
    return np.dtype(dtype)


@register(
    "one_hot",
    shape=_one_hot_shape,
    attrs=("depth", "dtype"),
    arity=1,
    vjp=(None,),
    dtype=_one_hot_dtype,
    onnx=lower.one_hot,
    no_examples="its input is integer labels",
)
def one_hot(labels, depth, dtype="float64"):
    """1 at position labels[...] of a new last axis of size ``depth``, 0 elsewhere (labels: integers)"""
    return np.equal(np.asarray(labels)[..., None], np.arange(depth)).astype(dtype)


# ---------------------------------------------------------------------------------------- concat, stack
def _concat_shape(*xs, axis=0):
    if not xs:
        raise ShapeError("concat needs at least one input")
    (axis,) = normalize_axes(axis, len(xs[0]))
    rest = {tuple(x[:axis]) + tuple(x[axis + 1 :]) for x in xs}
    if len(rest) > 1 or any(len(x) != len(xs[0]) for x in xs):
        raise ShapeError(f"concat along axis {axis} of {', '.join(map(fmt_shape, xs))}: other axes differ")
    if any(isinstance(x[axis], str) for x in xs):
        raise ShapeError("cannot concat along the batch dimension")
    return tuple(xs[0][:axis]) + (sum(x[axis] for x in xs),) + tuple(xs[0][axis + 1 :])


def _concat_vjp(k, g, out, *xs, axis=0):
    start = sum(x.shape[axis] for x in xs[:k])
    return emit("slice", g, axis=axis, start=start, stop=start + xs[k].shape[axis])


@register(
    "concat",
    shape=_concat_shape,
    attrs=("axis",),
    vjp=PerInput(_concat_vjp),
    onnx=lower.concat,
    examples=[([(2, 3), (2, 1), (2, 2)], {"axis": 1}), ([(1, 3), (2, 3)], {}), ([(4,)], {})],
)
def concat(*xs, axis=0):
    """inputs joined along an existing ``axis`` (default 0)"""
    return np.concatenate(xs, axis=axis)


def _stack_shape(*xs, axis=0):
    if not xs or len({tuple(x) for x in xs}) > 1:
        raise ShapeError("stack needs inputs of one shape, got " + ", ".join(map(fmt_shape, xs)))
    (axis,) = normalize_axes(axis, len(xs[0]) + 1)
    return tuple(xs[0][:axis]) + (len(xs),) + tuple(xs[0][axis:])


def _stack_vjp(k, g, out, *xs, axis=0):
    (axis,) = normalize_axes(axis, out.ndim)
    return emit("squeeze", emit("slice", g, axis=axis, start=k, stop=k + 1), axis=axis)


@register(
    "stack",
    shape=_stack_shape,
    attrs=("axis",),
    vjp=PerInput(_stack_vjp),
    onnx=lower.stack,
    examples=[([(2, 3), (2, 3)], {}), ([(3, 1), (3, 1), (3, 1)], {"axis": -1}), ([(), ()], {})],
)
def stack(*xs, axis=0):
    """inputs of one shape joined along a new ``axis`` (default 0)"""
    return np.stack(xs, axis=axis)
