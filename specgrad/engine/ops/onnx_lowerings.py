"""ONNX lowerings of the registered ops: each op declares its own at its ``register()`` call (``onnx=...``).

A lowering is ``lower(b, node, *xs, **attrs) -> name``: ``node`` is the graph node being exported (its
``dtype`` and ``shape``, and its inputs' in ``node.inputs``), ``xs`` the names of the ONNX values holding its
inputs, ``attrs`` its attributes; it emits ONNX nodes through the emitter ``b`` and returns the name of the
value holding the op's result. The emitter (specgrad/run/export/onnx.py) is the only code that imports onnx: this
module stays importable without the ``onnx`` extra, so the registry can name its lowerings.

Emitter calls used here: ``b.op(type, *inputs, **attributes)`` (one output; ``None`` is an omitted optional
input), ``b.const(value, dtype)``, ``b.ints(values)`` (an int64 tensor: axes, shapes), ``b.cast(x, dtype)``,
``b.reduce(type, x, axes, keepdims)`` (axes as attribute or input, as the opset wants) and
``b.count(x, shape, axes, dtype)`` (the number of elements over axes, read from the runtime shape where it
holds the batch dimension).

Each lowering computes what the numpy forward computes, in the same order of operations where that matters
for accuracy. Where onnxruntime's CPU provider has no float64 kernel for the matching ONNX operator
(Softplus, Elu, Conv, AveragePool), the lowering composes primitive operators instead -- for every dtype
(softplus, elu) or for float64 only (conv2d, avg_pool2d, whose ONNX operators are the fast path in float32).
tests/test_export.py runs every lowering against its op's forward in float32 and float64.
"""

from __future__ import annotations

import numpy as np

from specgrad.engine.ops.registry import normalize_axes

FLOAT32 = np.dtype(np.float32)


class NotExportable:
    """The declared absence of a lowering: ``reason`` says why the op has no ONNX form (shown in errors)."""

    def __init__(self, reason: str):
        self.reason = reason


# ------------------------------------------------------------------------------------------------- helpers
def input_dtype(node, i: int) -> np.dtype:
    """The dtype of input ``i`` as exported: a Python-number constant takes the node's dtype (it is
    materialized so, as numpy lets it adopt its partner's)."""
    dtype = node.inputs[i].dtype
    return node.dtype if dtype is None else np.dtype(dtype)


def promoted(b, node, xs) -> list:
    """Inputs 0, 1, ... cast to the node's dtype, as numpy promotes them before computing."""
    return [promote(b, node, i, x) for i, x in enumerate(xs)]


def promote(b, node, i: int, x):
    """Input ``i`` cast to the node's dtype."""
    return b.cast(x, node.dtype, input_dtype(node, i))


def _axes(axis, rank: int) -> list[int] | None:
    return None if axis is None else list(normalize_axes(axis, rank))


def _log1p(b, x, dtype):
    """log(1 + x), accurate for small x (ONNX has no Log1p): with w = 1 + x rounded, log(w) * x / (w - 1)
    corrects the rounding of w (Goldberg); where w rounds to 1, log1p(x) is x to working precision."""
    one = b.const(1, dtype)
    w = b.op("Add", one, x)
    corrected = b.op("Div", b.op("Mul", b.op("Log", w), x), b.op("Sub", w, one))
    return b.op("Where", b.op("Equal", w, one), x, corrected)


def _expm1(b, x, dtype):
    """e ** x - 1, accurate for small x (ONNX has no Expm1): with u = e ** x, (u - 1) * x / log(u) (Kahan);
    x where u rounds to 1, and -1 where u underflows to 0."""
    one = b.const(1, dtype)
    u = b.op("Exp", x)
    um1 = b.op("Sub", u, one)
    corrected = b.op("Div", b.op("Mul", um1, x), b.op("Log", u))
    tiny = b.op("Where", b.op("Equal", u, b.const(0, dtype)), b.const(-1, dtype), corrected)
    return b.op("Where", b.op("Equal", u, one), x, tiny)


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# --------------------------------------------------------------------------------------------- elementwise
def elementwise(onnx_type: str):
    """The ONNX operator of the same name and semantics, inputs promoted to the result's dtype."""

    def lower(b, node, *xs, **attrs):
        return b.op(onnx_type, *promoted(b, node, xs), **attrs)

    lower.__doc__ = onnx_type
    return lower


def where(b, node, cond, x, y):
    """Where(cond != 0, x, y)"""
    return b.op(
        "Where", b.cast(cond, np.dtype(bool), input_dtype(node, 0)), promote(b, node, 1, x), promote(b, node, 2, y)
    )


def clip(b, node, x, lo=None, hi=None):
    """Clip(x, lo, hi)"""
    (x,) = promoted(b, node, [x])
    bound = lambda v: None if v is None else b.const(v, node.dtype)
    return b.op("Clip", x, bound(lo), bound(hi))


def square(b, node, x):
    """Mul(x, x)"""
    (x,) = promoted(b, node, [x])
    return b.op("Mul", x, x)


def log1p(b, node, x):
    """Log of 1 + x, corrected for the rounding of 1 + x"""
    (x,) = promoted(b, node, [x])
    return _log1p(b, x, node.dtype)


def softplus(b, node, x):
    """max(x, 0) + log1p(e ** -|x|) (composed: onnxruntime has no float64 Softplus, and Softplus rounds
    log(1 + e ** x) to 0 for very negative x)"""
    (x,) = promoted(b, node, [x])
    tail = _log1p(b, b.op("Exp", b.op("Neg", b.op("Abs", x))), node.dtype)
    return b.op("Add", b.op("Max", x, b.const(0, node.dtype)), tail)


def leaky_relu(b, node, x, alpha=0.01):
    """Where(x > 0, x, alpha x) (ONNX's LeakyRelu holds alpha as a float32 attribute: not alpha in float64)"""
    (x,) = promoted(b, node, [x])
    return b.op("Where", b.op("Greater", x, b.const(0, node.dtype)), x, b.op("Mul", b.const(alpha, node.dtype), x))


def elu(b, node, x, alpha=1.0):
    """Where(x > 0, x, alpha * expm1(min(x, 0))) (composed: onnxruntime has no float64 Elu)"""
    (x,) = promoted(b, node, [x])
    zero = b.const(0, node.dtype)
    negative = b.op("Mul", b.const(alpha, node.dtype), _expm1(b, b.op("Min", x, zero), node.dtype))
    return b.op("Where", b.op("Greater", x, zero), x, negative)


def gelu(b, node, x, *, GELU_C: float, GELU_K: float):
    """0.5 x (1 + tanh(C (x + K x^3))), in the forward's order of operations (C and K: the forward's own)"""
    (x,) = promoted(b, node, [x])
    c = lambda v: b.const(v, node.dtype)  # noqa: E731
    cube = b.op("Mul", b.op("Mul", b.op("Mul", c(GELU_K), x), x), x)
    t = b.op("Tanh", b.op("Mul", c(GELU_C), b.op("Add", x, cube)))
    return b.op("Mul", b.op("Mul", c(0.5), x), b.op("Add", c(1), t))


def _sigmoid(b, x, dtype):
    e = b.op("Exp", b.op("Neg", b.op("Abs", x)))  # in (0, 1]: never overflows
    one = b.const(1, dtype)
    denominator = b.op("Add", one, e)
    return b.op(
        "Where",
        b.op("GreaterOrEqual", x, b.const(0, dtype)),
        b.op("Div", one, denominator),
        b.op("Div", e, denominator),
    )


def sigmoid(b, node, x):
    """Where(x >= 0, 1 / (1 + e), e / (1 + e)) with e = e ** -|x|, as the forward computes it (onnxruntime's
    Sigmoid rounds sigmoid(-40) = 4e-18 to 0)"""
    (x,) = promoted(b, node, [x])
    return _sigmoid(b, x, node.dtype)


def silu(b, node, x):
    """x sigmoid(x)"""
    (x,) = promoted(b, node, [x])
    return b.op("Mul", x, _sigmoid(b, x, node.dtype))


# -------------------------------------------------------------------------------------------------- reduce
def reduction(onnx_type: str):
    """ReduceSum, ReduceMean... over ``axis`` (all axes when omitted), keepdims as given."""

    def lower(b, node, x, axis=None, keepdims=False):
        (x,) = promoted(b, node, [x])
        return b.reduce(onnx_type, x, _axes(axis, node.inputs[0].ndim), keepdims)

    lower.__doc__ = onnx_type
    return lower


def var(b, node, x, axis=None, keepdims=False, ddof=0):
    """ReduceSum of squared deviations from ReduceMean, divided by n - ddof"""
    (x,) = promoted(b, node, [x])
    shape = node.inputs[0].shape
    axes = _axes(axis, len(shape))
    centered = b.op("Sub", x, b.reduce("ReduceMean", x, axes, True))
    total = b.reduce("ReduceSum", b.op("Mul", centered, centered), axes, keepdims)
    n = b.count(x, shape, axes if axes is not None else list(range(len(shape))), node.dtype)
    return b.op("Div", total, b.op("Sub", n, b.const(ddof, node.dtype)) if ddof else n)


def logsumexp(b, node, x, axis=None, keepdims=False):
    """Log(ReduceSum(Exp(x - m))) + m with m the ReduceMax (0 where it is not finite), as the forward does"""
    (x,) = promoted(b, node, [x])
    axes = _axes(axis, node.inputs[0].ndim)
    m = b.reduce("ReduceMax", x, axes, True)
    m = b.op("Where", b.op("IsInf", m), b.const(0, node.dtype), m)
    out = b.op("Add", b.op("Log", b.reduce("ReduceSum", b.op("Exp", b.op("Sub", x, m)), axes, True)), m)
    return out if keepdims else b.op("Squeeze", out, None if axes is None else b.ints(axes))


# ---------------------------------------------------------------------------------------- linalg and shape
def matmul(b, node, x, y):
    """MatMul (numpy's rules for rank-1 and batched operands are ONNX's)"""
    return b.op("MatMul", *promoted(b, node, [x, y]))


def transpose(b, node, x, axes=None):
    """Transpose(perm)"""
    rank = node.inputs[0].ndim
    perm = list(range(rank - 2)) + [rank - 1, rank - 2] if axes is None else [a % rank for a in axes]
    return b.op("Transpose", x, perm=perm)


def expand_dims(b, node, x, axis):
    """Unsqueeze"""
    return b.op("Unsqueeze", x, b.ints(_axes(axis, node.ndim)))


def squeeze(b, node, x, axis):
    """Squeeze"""
    return b.op("Squeeze", x, b.ints(_axes(axis, node.inputs[0].ndim)))


def powers(b, node, x, degree):
    """Concat of 1, x, x x, ... along a new last axis (the forward's running product, so the same bits)"""
    (x,) = promoted(b, node, [x])
    column = b.op("Unsqueeze", x, b.ints([-1]))
    terms = [b.op("Expand", b.const(1, node.dtype), b.op("Shape", column))]
    for _ in range(degree):
        terms.append(b.op("Mul", terms[-1], column))
    return b.op("Concat", *terms, axis=-1)


def reshape(b, node, x, shape):
    """Reshape (the batch dimension, the one unknown size, becomes -1)"""
    return b.op("Reshape", x, b.ints([-1 if isinstance(d, str) else d for d in shape]))


def flatten(b, node, x, axis=1):
    """Reshape to the leading axes and -1 (ONNX's Flatten makes a matrix of any rank)"""
    shape = node.inputs[0].shape
    lead = shape[: axis % max(len(shape), 1)]
    return b.op("Reshape", x, b.ints([0 if isinstance(d, str) else d for d in lead] + [-1]))


def broadcast_to(b, node, x, shape):
    """Expand (the batch dimension comes from x: 1 in the target shape)"""
    return b.op("Expand", x, b.ints([1 if isinstance(d, str) else d for d in shape]))


def slice_(b, node, x, axis, start=None, stop=None, step=None):
    """Slice with Python's slice rules resolved against the axis's size"""
    shape = node.inputs[0].shape
    (axis,) = normalize_axes(axis, len(shape))
    if isinstance(shape[axis], str):  # only the whole batch axis can be sliced
        return b.op("Identity", x)
    first, last, stride = slice(start, stop, step).indices(shape[axis])
    if last < 0:  # "before index 0" of a backward slice: ONNX reads -1 as the end
        last = -shape[axis] - 1
    return b.op("Slice", x, b.ints([first]), b.ints([last]), b.ints([axis]), b.ints([stride]))


def take(b, node, x, indices, axis=0):
    """Gather"""
    (axis,) = normalize_axes(axis, node.inputs[0].ndim)
    return b.op("Gather", x, b.cast(indices, np.dtype(np.int64), input_dtype(node, 1)), axis=axis)


def one_hot(b, node, labels, depth, dtype="float64"):
    """Cast(Equal(labels[..., None], 0..depth-1))"""
    labels = b.cast(labels, np.dtype(np.int64), input_dtype(node, 0))
    hit = b.op("Equal", b.op("Unsqueeze", labels, b.ints([-1])), b.ints(list(range(depth))))
    return b.cast(hit, np.dtype(dtype), np.dtype(bool))


def concat(b, node, *xs, axis=0):
    """Concat"""
    (axis,) = normalize_axes(axis, node.ndim)
    return b.op("Concat", *promoted(b, node, xs), axis=axis)


def stack(b, node, *xs, axis=0):
    """Concat of the inputs unsqueezed at axis"""
    (axis,) = normalize_axes(axis, node.ndim)
    return b.op("Concat", *(b.op("Unsqueeze", x, b.ints([axis])) for x in promoted(b, node, xs)), axis=axis)


# ---------------------------------------------------------------------------------------------------- nn
def softmax(onnx_type: str):
    """Softmax or LogSoftmax along ``axis`` (opset 13's per-axis semantics)"""

    def lower(b, node, x, axis=-1):
        (x,) = promoted(b, node, [x])
        return b.op(onnx_type, x, axis=axis)

    lower.__doc__ = onnx_type
    return lower


def softmax_cross_entropy(b, node, logits, labels):
    """ReduceMean of logsumexp(logits) - GatherElements(logits, labels)"""
    (x,) = promoted(b, node, [logits])
    m = b.reduce("ReduceMax", x, [-1], True)
    lse = b.op("Add", b.op("Log", b.reduce("ReduceSum", b.op("Exp", b.op("Sub", x, m)), [-1], True)), m)
    at = b.op("Unsqueeze", b.cast(labels, np.dtype(np.int64), input_dtype(node, 1)), b.ints([-1]))
    picked = b.op("GatherElements", x, at, axis=-1)
    return b.reduce("ReduceMean", b.op("Sub", lse, picked), None, False)


def sigmoid_binary_cross_entropy(b, node, logits, targets):
    """ReduceMean of max(x, 0) - x t + log1p(e ** -|x|)"""
    x, t = promoted(b, node, [logits, targets])
    zero = b.const(0, node.dtype)
    tail = _log1p(b, b.op("Exp", b.op("Neg", b.op("Abs", x))), node.dtype)
    return b.reduce("ReduceMean", b.op("Add", b.op("Sub", b.op("Max", x, zero), b.op("Mul", x, t)), tail), None, False)


def _windows(b, node, x, kernel, stride, padding, out_hw):
    """[N, C, H, W] -> [N, C, kh * kw, Ho, Wo]: each output position's window, one strided Slice per kernel
    offset (the padded input read as the forward's sliding-window view reads it)."""
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    if ph or pw:
        x = b.op("Pad", x, b.ints([0, 0, ph, pw, 0, 0, ph, pw]), b.const(0, node.dtype))
    ho, wo = out_hw
    parts = [
        b.op(
            "Unsqueeze",
            b.op(
                "Slice",
                x,
                b.ints([i, j]),
                b.ints([i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1]),
                b.ints([2, 3]),
                b.ints([sh, sw]),
            ),
            b.ints([2]),
        )
        for i in range(kh)
        for j in range(kw)
    ]
    return b.op("Concat", *parts, axis=2)


def conv2d(b, node, x, w, stride=1, padding=0):
    """Conv in float32; in float64 (no onnxruntime kernel) one MatMul of the kernel [O, C kh kw] with the
    input's windows [N, C kh kw, Ho Wo]"""
    x, w = promoted(b, node, [x, w])
    (ph, pw), (sh, sw) = _pair(padding), _pair(stride)
    if node.dtype == FLOAT32:
        return b.op("Conv", x, w, strides=[sh, sw], pads=[ph, pw, ph, pw])
    o, c, kh, kw = node.inputs[1].shape
    ho, wo = node.shape[2:]
    cols = b.op(
        "Reshape", _windows(b, node, x, (kh, kw), (sh, sw), (ph, pw), (ho, wo)), b.ints([0, c * kh * kw, ho * wo])
    )
    out = b.op("MatMul", b.op("Reshape", w, b.ints([o, c * kh * kw])), cols)
    return b.op("Reshape", out, b.ints([0, o, ho, wo]))


def max_pool2d(b, node, x, kernel, stride=None, padding=0):
    """MaxPool (its padding never wins, as the forward's -inf padding)"""
    (ph, pw) = _pair(padding)
    return b.op(
        "MaxPool",
        x,
        kernel_shape=list(_pair(kernel)),
        strides=list(_pair(kernel if stride is None else stride)),
        pads=[ph, pw, ph, pw],
    )


def avg_pool2d(b, node, x, kernel, stride=None, padding=0):
    """AveragePool counting the zero padding, in float32; in float64 (no onnxruntime kernel) the windows'
    ReduceSum divided by the window size"""
    (x,) = promoted(b, node, [x])
    kernel, stride, (ph, pw) = _pair(kernel), _pair(kernel if stride is None else stride), _pair(padding)
    if node.dtype == FLOAT32:
        return b.op(
            "AveragePool",
            x,
            kernel_shape=list(kernel),
            strides=list(stride),
            pads=[ph, pw, ph, pw],
            count_include_pad=1,
        )
    windows = _windows(b, node, x, kernel, stride, (ph, pw), node.shape[2:])
    return b.op("Div", b.reduce("ReduceSum", windows, [2], False), b.const(kernel[0] * kernel[1], node.dtype))


DROPOUT = NotExportable(
    "its mask is drawn from numpy's generator, which ONNX cannot reproduce; the dropout "
    "layer leaves no op in the evaluation graph that is exported"
)
