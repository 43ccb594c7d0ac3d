"""Neural-network ops: stable fused softmax and cross-entropies, convolution and pooling, dropout.

Convolution and pooling use NCHW layout. A convolution is one BLAS call: the padded input is viewed as its
sliding windows (a strided view, no copy) and contracted with the kernel by ``tensordot``. Its two VJPs
are convolutions too (``conv2d_input_grad``, a transposed convolution, and ``conv2d_weight_grad``), and the
three ops close under differentiation.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from specgrad.engine.ops import onnx_lowerings as lower
from specgrad.engine.ops.registry import (
    ShapeError,
    emit,
    float_dtype,
    fmt_shape,
    normalize_axes,
    register,
    require_integer,
)

EXAMPLE_LABELS = np.array([[0, 2, 1], [1, 1, 0]])  # integer labels and a dropout key for the ops' examples
EXAMPLE_KEY = np.array(7)


# ---------------------------------------------------------------------------------- softmax and friends
def _axis_shape(x, axis=-1):
    normalize_axes(axis, len(x))
    return tuple(x)


def _softmax_vjp(g, out, x, axis=-1):
    return out * (g - emit("sum", g * out, axis=axis, keepdims=True))


@register(
    "softmax",
    shape=_axis_shape,
    dtype=float_dtype,
    attrs=("axis",),
    arity=1,
    vjp=(_softmax_vjp,),
    onnx=lower.softmax("Softmax"),
    examples=[([(3, 4)], {}), ([(2, 3, 1)], {"axis": 1}), ([(1, 5)], {"axis": 0})],
)
def softmax(x, axis=-1):
    """e ** x normalized to sum 1 along ``axis`` (default -1); the largest entry is subtracted first"""
    x = np.asarray(x, float_dtype(np.result_type(x)))
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


@register(
    "log_softmax",
    shape=_axis_shape,
    dtype=float_dtype,
    attrs=("axis",),
    arity=1,
    onnx=lower.softmax("LogSoftmax"),
    vjp=(lambda g, out, x, axis=-1: g - emit("exp", out) * emit("sum", g, axis=axis, keepdims=True),),
    examples=[([(3, 4)], {}), ([(2, 3, 1)], {"axis": 1}), ([(1, 5)], {})],
)
def log_softmax(x, axis=-1):
    """x - logsumexp(x) along ``axis`` (default -1), exact for logits of any size"""
    x = np.asarray(x, float_dtype(np.result_type(x)))
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _batch_axes(logits):
    return list(range(len(logits.shape) - 1))


def _sce_shape(logits, labels):
    if not logits or tuple(labels) != tuple(logits[:-1]):
        raise ShapeError(
            f"softmax_cross_entropy needs logits [..., classes] and integer labels [...], "
            f"got {fmt_shape(logits)} and {fmt_shape(labels)}"
        )
    return ()


def _sce_vjp(g, out, logits, labels):
    return emit("softmax_cross_entropy_grad", logits, labels, g)


def _sce_dtype(logits, labels):
    require_integer(labels, "softmax_cross_entropy's labels")
    return float_dtype(logits)


@register(
    "softmax_cross_entropy",
    shape=_sce_shape,
    dtype=_sce_dtype,
    arity=2,
    vjp=(_sce_vjp, None),
    onnx=lower.softmax_cross_entropy,
    examples=[([(2, 3, 4), EXAMPLE_LABELS], {}), ([(1, 3), np.array([2])], {}), ([(5,), np.array(1)], {})],
)
def softmax_cross_entropy(logits, labels):
    """mean over the batch of -log softmax(logits)[label]: logits [..., classes], integer labels [...]"""
    x = _float_array(logits)
    m = x.max(axis=-1, keepdims=True)
    lse = np.log(np.exp(x - m).sum(axis=-1)) + m[..., 0]
    return _mean(lse - _at_labels(x, labels))


def _mean(v):
    """``v.mean()`` with the same bits (numpy's own steps: the sum, divided by the count as an intp, then
    cast to the sum's type), without ``mean``'s Python wrapper: a loss runs once a step."""
    total = np.add.reduce(v, axis=None)
    return total.dtype.type(total / np.intp(v.size))


def _float_array(x, *others):
    """x as an array of its float dtype (promoted with ``others``; integers become float64), converted only
    when it is not one already (a loss's arrays are small: per-call overhead is most of their cost)."""
    x = np.asarray(x)
    dtype = np.result_type(x, *others) if others else x.dtype
    if dtype.kind != "f":
        dtype = np.dtype(np.float64)
    return x if x.dtype == dtype else x.astype(dtype)


def _at_labels(x, labels):
    """Each row's entry at its label: x [..., C], integer labels [...] -> [...]."""
    labels = np.asarray(labels)
    rows = x.reshape(-1, x.shape[-1])
    return rows[np.arange(len(rows)), labels.reshape(-1)].reshape(labels.shape)


def _sce_grad_shape(logits, labels, g):
    _sce_shape(logits, labels)
    if tuple(g) != ():
        raise ShapeError(f"softmax_cross_entropy_grad needs a scalar cotangent, got {fmt_shape(g)}")
    return tuple(logits)


def _sce_grad_dtype(logits, labels, g):
    return float_dtype(_sce_dtype(logits, labels), g)


def _sce_grad_logits_vjp(c, out, logits, labels, g):
    """out = (p - onehot) g / rows with p = softmax(logits): c -> softmax's VJP of c g / rows."""
    return _softmax_vjp(c * (g / emit("count", logits, axis=_batch_axes(logits))), emit("softmax", logits), logits)


def _sce_grad_g_vjp(c, out, logits, labels, g):
    target = emit("one_hot", labels, depth=logits.shape[-1], dtype=str(logits.dtype))
    return emit("sum", c * (emit("softmax", logits) - target)) / emit("count", logits, axis=_batch_axes(logits))


@register(
    "softmax_cross_entropy_grad",
    shape=_sce_grad_shape,
    dtype=_sce_grad_dtype,
    arity=3,
    internal=True,
    vjp=(_sce_grad_logits_vjp, None, _sce_grad_g_vjp),
    examples=[([(2, 3, 4), EXAMPLE_LABELS, ()], {}), ([(1, 3), np.array([2]), ()], {}), ([(5,), np.array(1), ()], {})],
)
def softmax_cross_entropy_grad(logits, labels, g, out=None):
    """the VJP of softmax_cross_entropy with respect to its logits, (softmax(logits) - one_hot(labels)) * g
    / rows, fused: softmax computed in place, 1 subtracted at the labels, scaled in place (the numpy
    operations of the unfused form, so the same bits)"""
    x = _float_array(logits, g)
    out = np.subtract(x, x.max(axis=-1, keepdims=True), out=out)
    np.exp(out, out=out)
    out /= out.sum(axis=-1, keepdims=True)
    by_row = out.reshape(-1, x.shape[-1])  # a view: out is contiguous
    by_row[np.arange(len(by_row)), np.asarray(labels).reshape(-1)] -= 1
    out *= np.asarray(g) / x.dtype.type(len(by_row))
    return out


def _bce_shape(logits, targets):
    if tuple(logits) != tuple(targets):
        raise ShapeError(
            f"sigmoid_binary_cross_entropy needs logits and targets of one shape, "
            f"got {fmt_shape(logits)} and {fmt_shape(targets)}"
        )
    return ()


@register(
    "sigmoid_binary_cross_entropy",
    shape=_bce_shape,
    dtype=float_dtype,
    arity=2,
    onnx=lower.sigmoid_binary_cross_entropy,
    vjp=(
        lambda g, out, x, t: (emit("sigmoid", x) - t) * (g / emit("count", x)),
        lambda g, out, x, t: -x * (g / emit("count", x)),
    ),
    examples=[([(3, 4), (3, 4)], {}), ([(1, 2), (1, 2)], {})],
)
def sigmoid_binary_cross_entropy(logits, targets):
    """mean over all elements of -t log sigmoid(x) - (1 - t) log(1 - sigmoid(x)), from logits x,
    computed as max(x, 0) - x t + log(1 + e ** -|x|) (exact for logits of any size)"""
    x = np.asarray(logits, float_dtype(np.result_type(logits)))
    return np.mean(np.maximum(x, 0) - x * targets + np.log1p(np.exp(-np.abs(x))))


# ------------------------------------------------------------------------------------ windows (NCHW)
def _pair(v, what):
    pair = (v, v) if isinstance(v, int) else tuple(v) if isinstance(v, (list, tuple)) else None
    if pair is None or len(pair) != 2 or not all(isinstance(d, int) and not isinstance(d, bool) for d in pair):
        raise ShapeError(f"{what} must be an integer or a pair of integers, got {v!r}")
    return pair


def _out_size(hw, kernel, stride, padding):
    """Output height and width of sliding a ``kernel`` window over ``hw`` (checked: all static, non-empty)."""
    kernel, stride, padding = _pair(kernel, "kernel"), _pair(stride, "stride"), _pair(padding, "padding")
    if not all(isinstance(d, int) for d in hw):
        raise ShapeError(f"height and width must be known sizes, got {fmt_shape(hw)}")
    if min(stride) < 1 or min(padding) < 0 or min(kernel) < 1:
        raise ShapeError(f"need kernel >= 1, stride >= 1 and padding >= 0, got {kernel}, {stride}, {padding}")
    out = tuple((n + 2 * p - k) // s + 1 for n, k, s, p in zip(hw, kernel, stride, padding))
    if min(out) < 1:
        raise ShapeError(f"a {kernel[0]}x{kernel[1]} window does not fit in {hw[0]}x{hw[1]} with padding {padding}")
    return out


def _windows(x, kernel, stride, padding, fill=0.0):
    """[N, C, H, W] -> [N, C, Ho, Wo, kh, kw]: each output position's input window, as a strided view."""
    (ph, pw), (sh, sw) = _pair(padding, "padding"), _pair(stride, "stride")
    x = np.asarray(x)
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=fill)
    return sliding_window_view(x, _pair(kernel, "kernel"), axis=(2, 3))[:, :, ::sh, ::sw]


def _unwindow(cols, size, stride, padding):
    """The transpose of ``_windows``: add each window [N, C, Ho, Wo, kh, kw] back where it was read from."""
    (ph, pw), (sh, sw) = _pair(padding, "padding"), _pair(stride, "stride")
    n, c, ho, wo, kh, kw = cols.shape
    out = np.zeros((n, c, size[0] + 2 * ph, size[1] + 2 * pw), cols.dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw] += cols[..., i, j]
    return out[:, :, ph : ph + size[0], pw : pw + size[1]]


def _image_shape(x, what):
    if len(x) != 4:
        raise ShapeError(f"{what} needs a [N, C, H, W] input, got {fmt_shape(x)}")


# -------------------------------------------------------------------------------------------- conv2d
def _conv_shape(x, w, stride=1, padding=0):
    _image_shape(x, "conv2d")
    if len(w) != 4 or w[1] != x[1]:
        raise ShapeError(f"conv2d of {fmt_shape(x)} needs a kernel [out, {x[1]}, kh, kw], got {fmt_shape(w)}")
    return (x[0], w[0]) + _out_size(x[2:], tuple(w[2:]), stride, padding)


def _conv_products(n, c, o, out_hw, kernel):
    """conv2d and its two VJPs are one tensordot each: [N Ho Wo] x [C kh kw] x [O] in some order."""
    rows, taps = n * out_hw[0] * out_hw[1], c * kernel[0] * kernel[1]
    return [(1, rows, taps, o)]


def _conv_x_vjp(g, out, x, w, stride=1, padding=0):
    return emit("conv2d_input_grad", g, w, stride=stride, padding=padding, size=list(x.shape[2:]))


def _conv_w_vjp(g, out, x, w, stride=1, padding=0):
    return emit("conv2d_weight_grad", x, g, stride=stride, padding=padding, kernel=list(w.shape[2:]))


@register(
    "conv2d",
    shape=_conv_shape,
    attrs=("stride", "padding"),
    arity=2,
    vjp=(_conv_x_vjp, _conv_w_vjp),
    onnx=lower.conv2d,
    products=lambda x, w, stride=1, padding=0: _conv_products(
        x[0], x[1], w[0], _conv_shape(x, w, stride, padding)[2:], w[2:]
    ),
    examples=[
        ([(2, 3, 5, 5), (4, 3, 3, 3)], {}),
        ([(1, 2, 6, 5), (3, 2, 3, 2)], {"stride": 2, "padding": 1}),
        ([(2, 1, 4, 4), (1, 1, 1, 1)], {"stride": [1, 2], "padding": [0, 1]}),
    ],
)
def conv2d(x, w, stride=1, padding=0):
    """2-D cross-correlation, NCHW: x [N, C, H, W], kernel w [O, C, kh, kw] -> [N, O, Ho, Wo]
    (stride and zero padding: an integer or a pair)"""
    cols = _windows(x, np.shape(w)[2:], stride, padding)  # [N, C, Ho, Wo, kh, kw]
    return np.moveaxis(np.tensordot(cols, w, axes=([1, 4, 5], [1, 2, 3])), 3, 1)


def _conv_input_grad_shape(g, w, stride, padding, size):
    if len(g) != 4 or len(w) != 4:
        raise ShapeError(f"conv2d_input_grad needs rank-4 values, got {fmt_shape(g)} and {fmt_shape(w)}")
    shape = (g[0], w[1]) + tuple(size)
    if _conv_shape(shape, w, stride, padding) != tuple(g):
        raise ShapeError(f"conv2d_input_grad: {fmt_shape(g)} is not conv2d's output for {fmt_shape(shape)}")
    return shape


@register(
    "conv2d_input_grad",
    shape=_conv_input_grad_shape,
    attrs=("stride", "padding", "size"),
    arity=2,
    internal=True,
    products=lambda g, w, stride, padding, size: _conv_products(g[0], w[1], w[0], g[2:], w[2:]),
    vjp=(
        lambda c, out, g, w, stride, padding, size: emit("conv2d", c, w, stride=stride, padding=padding),
        lambda c, out, g, w, stride, padding, size: emit(
            "conv2d_weight_grad", c, g, stride=stride, padding=padding, kernel=list(w.shape[2:])
        ),
    ),
    examples=[
        ([(2, 4, 3, 3), (4, 3, 3, 3)], {"stride": 1, "padding": 0, "size": [5, 5]}),
        ([(1, 3, 3, 3), (3, 2, 3, 2)], {"stride": 2, "padding": 1, "size": [6, 5]}),
    ],
)
def conv2d_input_grad(g, w, stride, padding, size):
    """the VJP of conv2d with respect to its input (a transposed convolution): g [N, O, Ho, Wo] -> [N, C, H, W]"""
    cols = np.tensordot(g, w, axes=([1], [0]))  # [N, Ho, Wo, C, kh, kw]
    return _unwindow(np.moveaxis(cols, 3, 1), size, stride, padding)


def _conv_weight_grad_shape(x, g, stride, padding, kernel):
    if len(x) != 4 or len(g) != 4:
        raise ShapeError(f"conv2d_weight_grad needs rank-4 values, got {fmt_shape(x)} and {fmt_shape(g)}")
    w = (g[1], x[1]) + tuple(_pair(kernel, "kernel"))
    if _conv_shape(x, w, stride, padding) != tuple(g):
        raise ShapeError(f"conv2d_weight_grad: {fmt_shape(g)} is not conv2d's output for {fmt_shape(x)}")
    return w


@register(
    "conv2d_weight_grad",
    shape=_conv_weight_grad_shape,
    attrs=("stride", "padding", "kernel"),
    arity=2,
    internal=True,
    products=lambda x, g, stride, padding, kernel: _conv_products(x[0], x[1], g[1], g[2:], _pair(kernel, "kernel")),
    vjp=(
        lambda c, out, x, g, stride, padding, kernel: emit(
            "conv2d_input_grad", g, c, stride=stride, padding=padding, size=list(x.shape[2:])
        ),
        lambda c, out, x, g, stride, padding, kernel: emit("conv2d", x, c, stride=stride, padding=padding),
    ),
    examples=[
        ([(2, 3, 5, 5), (2, 4, 3, 3)], {"stride": 1, "padding": 0, "kernel": [3, 3]}),
        ([(1, 2, 6, 5), (1, 3, 3, 3)], {"stride": 2, "padding": 1, "kernel": [3, 2]}),
    ],
)
def conv2d_weight_grad(x, g, stride, padding, kernel):
    """the VJP of conv2d with respect to its kernel: x [N, C, H, W], g [N, O, Ho, Wo] -> [O, C, kh, kw]"""
    cols = _windows(x, kernel, stride, padding)
    return np.tensordot(g, cols, axes=([0, 2, 3], [0, 2, 3]))


# ------------------------------------------------------------------------------------------- pooling
def _pool_shape(x, kernel, stride=None, padding=0):
    _image_shape(x, "pooling")
    # a window may reach half its size into the padding, as torch allows: a wider padding makes windows of
    # padding alone (-inf for a max, 0 for an average)
    if any(p > k // 2 for p, k in zip(_pair(padding, "padding"), _pair(kernel, "kernel"))):
        raise ShapeError(f"pooling padding {padding} is more than half the kernel {kernel}")
    return tuple(x[:2]) + _out_size(x[2:], kernel, kernel if stride is None else stride, padding)


@register(
    "max_pool2d",
    shape=_pool_shape,
    attrs=("kernel", "stride", "padding"),
    arity=1,
    onnx=lower.max_pool2d,
    vjp=(
        lambda g, out, x, kernel, stride=None, padding=0: emit(
            "max_pool2d_grad", g, x, kernel=kernel, stride=stride, padding=padding
        ),
    ),
    examples=[
        ([(2, 3, 4, 4)], {"kernel": 2}),
        ([(1, 2, 5, 5)], {"kernel": 3, "stride": 2, "padding": 1}),
        ([(1, 1, 3, 4)], {"kernel": [1, 2], "stride": 1}),
    ],
)
def max_pool2d(x, kernel, stride=None, padding=0):
    """largest value of each kernel window, NCHW (stride defaults to the kernel; padding never wins;
    ties split the gradient equally)"""
    return np.max(_windows(x, kernel, kernel if stride is None else stride, padding, _lowest(x)), axis=(-2, -1))


def _lowest(x):
    """What padding holds in a max pool: below every value (-inf; an integer x's smallest integer)."""
    dtype = np.result_type(x)
    return np.iinfo(dtype).min if dtype.kind in "iu" else -np.inf


def _max_pool_grad_shape(g, x, kernel, stride=None, padding=0):
    if _pool_shape(x, kernel, stride, padding) != tuple(g):
        raise ShapeError(f"max_pool2d_grad: {fmt_shape(g)} is not max_pool2d's output for {fmt_shape(x)}")
    return tuple(x)


@register(
    "max_pool2d_grad",
    shape=_max_pool_grad_shape,
    attrs=("kernel", "stride", "padding"),
    arity=2,
    internal=True,
    vjp=(None, None),
    no_examples="backward-only helper of max_pool2d; second derivatives through max pooling are not supported",
)
def max_pool2d_grad(g, x, kernel, stride=None, padding=0):
    """the VJP of max_pool2d: each window's g shared equally among the window's maxima"""
    stride = kernel if stride is None else stride
    windows = _windows(x, kernel, stride, padding, _lowest(x))
    hit = (windows == np.max(windows, axis=(-2, -1), keepdims=True)).astype(np.result_type(g))
    share = hit / np.sum(hit, axis=(-2, -1), keepdims=True)
    return _unwindow(np.asarray(g)[..., None, None] * share, np.shape(x)[2:], stride, padding)


@register(
    "avg_pool2d",
    shape=_pool_shape,
    dtype=float_dtype,
    attrs=("kernel", "stride", "padding"),
    arity=1,
    onnx=lower.avg_pool2d,
    vjp=(
        lambda g, out, x, kernel, stride=None, padding=0: emit(
            "avg_pool2d_grad", g, kernel=kernel, stride=stride, padding=padding, size=list(x.shape[2:])
        ),
    ),
    examples=[
        ([(2, 3, 4, 4)], {"kernel": 2}),
        ([(1, 2, 5, 5)], {"kernel": 3, "stride": 2, "padding": 1}),
        ([(1, 1, 3, 3)], {"kernel": 3}),
    ],
)
def avg_pool2d(x, kernel, stride=None, padding=0):
    """mean of each kernel window, NCHW (stride defaults to the kernel; zero padding counts in the mean)"""
    return np.mean(_windows(x, kernel, kernel if stride is None else stride, padding), axis=(-2, -1))


def _avg_pool_grad_shape(g, kernel, stride, padding, size):
    x = tuple(g[:2]) + tuple(size)
    if _pool_shape(x, kernel, stride, padding) != tuple(g):
        raise ShapeError(f"avg_pool2d_grad: {fmt_shape(g)} is not avg_pool2d's output for {fmt_shape(x)}")
    return x


@register(
    "avg_pool2d_grad",
    shape=_avg_pool_grad_shape,
    dtype=float_dtype,
    attrs=("kernel", "stride", "padding", "size"),
    arity=1,
    internal=True,
    vjp=(
        lambda c, out, g, kernel, stride, padding, size: emit(
            "avg_pool2d", c, kernel=kernel, stride=stride, padding=padding
        ),
    ),
    examples=[
        ([(2, 3, 2, 2)], {"kernel": 2, "stride": None, "padding": 0, "size": [4, 4]}),
        ([(1, 2, 3, 3)], {"kernel": 3, "stride": 2, "padding": 1, "size": [5, 5]}),
    ],
)
def avg_pool2d_grad(g, kernel, stride, padding, size):
    """the VJP of avg_pool2d: each window's g spread evenly over the window"""
    kh, kw = _pair(kernel, "kernel")
    g = np.asarray(g)
    cols = np.broadcast_to((g / (kh * kw))[..., None, None], g.shape + (kh, kw))
    return _unwindow(cols, size, kernel if stride is None else stride, padding)


# ------------------------------------------------------------------------------------------- dropout
def _dropout_shape(x, key, rate, salt=0):
    if tuple(key) not in ((), (2,)):
        raise ShapeError(f"dropout's key must be a scalar or a pair [key, first row], got {fmt_shape(key)}")
    if not 0 <= rate < 1:
        raise ShapeError(f"dropout rate must be in [0, 1), got {rate}")
    return tuple(x)


def _dropout_dtype(x, key, **_):
    require_integer(key, "dropout's key")
    return float_dtype(x)


@register(
    "dropout",
    shape=_dropout_shape,
    attrs=("rate", "salt"),
    arity=2,
    dtype=_dropout_dtype,
    onnx=lower.DROPOUT,
    vjp=(lambda g, out, x, key, rate, salt=0: emit("dropout", g, key, rate=rate, salt=salt), None),
    examples=[
        ([(3, 4), EXAMPLE_KEY], {"rate": 0.5}),
        ([(1, 6), EXAMPLE_KEY], {"rate": 0.1, "salt": 3}),
        ([(4, 3), np.array([7, 2])], {"rate": 0.5}),
    ],
)
def dropout(x, key, rate, salt=0):
    """inverted dropout: each entry zeroed with probability ``rate``, the rest scaled by 1 / (1 - rate).
    The mask is drawn from numpy's default_rng([key, salt]) (key: a non-negative integer scalar input, fed a
    new value each step; salt: a constant telling the dropout sites of one model apart), so a run is
    deterministic, and the backward pass redraws the same mask instead of keeping it. A key [key, r] says
    that x's first row is row r of a larger batch split over processes: the draws start where that row's
    start in the whole batch's mask (the generator is advanced past the r rows before it), so every row gets
    the mask it has in one process, however the batch is split"""
    x = np.asarray(x)
    key = np.asarray(key)
    bits = np.random.default_rng([int(key.flat[0]), salt])
    first_row = int(key[1]) if key.ndim else 0
    if first_row:
        per_row = x.size // x.shape[0] if x.ndim and x.shape[0] else x.size
        bits.bit_generator.advance(first_row * per_row)  # one draw per entry
    keep = bits.random(x.shape) >= rate
    return x * (keep / (1 - rate)).astype(x.dtype if x.dtype.kind == "f" else np.float64, copy=False)
