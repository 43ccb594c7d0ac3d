"""Elementwise ops with numpy broadcasting. Each VJP sits beside its forward and reads like the math;
cotangents may have the broadcast shape (the engine sums them back to each input's shape).

Conventions at the points where a derivative is not defined (documented in docs/ops.md):
ties in ``maximum``/``minimum`` split the gradient equally; ``relu``, ``leaky_relu`` and ``elu`` take the
left derivative at 0; ``abs`` has gradient 0 at 0; ``clip`` passes no gradient at or beyond its bounds.
"""

from functools import partial

import numpy as np

from specgrad.engine.ops import onnx_lowerings as lower
from specgrad.engine.ops.registry import (
    ShapeError,
    broadcast_shapes,
    emit,
    float_dtype,
    register,
    result_dtype,
    same_shape,
)


def binary(name, vjp, dtype=None, **options):
    return register(name, shape=broadcast_shapes, vjp=vjp, dtype=dtype, arity=2, **options)


def unary(name, vjp, dtype=float_dtype, **options):
    return register(name, shape=same_shape, vjp=vjp, dtype=dtype, arity=1, **options)


# ------------------------------------------------------------------------------------------ arithmetic
@binary(
    "add",
    onnx=lower.elementwise("Add"),
    vjp=(lambda g, out, x, y: g, lambda g, out, x, y: g),
    examples=[([(3, 4), (4,)], {}), ([(2, 1, 3), (1, 4, 1)], {}), ([(), (3,)], {})],
)
def add(x, y, out=None):
    """x + y"""
    return np.add(x, y, out=out)


@binary(
    "sub",
    onnx=lower.elementwise("Sub"),
    vjp=(lambda g, out, x, y: g, lambda g, out, x, y: -g),
    examples=[([(3, 4), (3, 1)], {}), ([(5,), ()], {})],
)
def sub(x, y, out=None):
    """x - y"""
    return np.subtract(x, y, out=out)


@binary(
    "mul",
    onnx=lower.elementwise("Mul"),
    vjp=(lambda g, out, x, y: g * y, lambda g, out, x, y: g * x),
    examples=[([(3, 4), (4,)], {}), ([(2, 1), (1, 3)], {})],
)
def mul(x, y, out=None):
    """x * y"""
    return np.multiply(x, y, out=out)


@binary(
    "div",
    dtype=float_dtype,
    onnx=lower.elementwise("Div"),
    vjp=(lambda g, out, x, y: g / y, lambda g, out, x, y: -g * out / y),
    examples=[([(3, 4), (1, 4)], {}), ([(3,), ()], {})],
)
def div(x, y, out=None):
    """x / y"""
    return np.true_divide(x, y, out=out)


def _pow_vjp_base(g, out, x, y):
    # y x^(y-1), and 0 where y == 0 (x^0 is 1 everywhere: at x = 0 the formula reads 0 * inf)
    return emit("where", y, g * y * x ** (y - 1), 0.0)


def _pow_vjp_exponent(g, out, x, y):
    # x^y log x, and 0 at x == 0 for y >= 0 (where x^y is 0 or 1: the formula reads 0 * -inf), as torch
    return emit("where", emit("abs", x) + emit("step", -y), g * out * emit("log", x), 0.0)


@binary(
    "pow",
    fd_domain="positive",
    onnx=lower.elementwise("Pow"),
    vjp=(_pow_vjp_base, _pow_vjp_exponent),
    examples=[([(3, 4), (4,)], {}), ([(2, 3), ()], {})],
)
def pow_(x, y, out=None):
    """x ** y (for a non-constant exponent, x must be positive; at x = 0 the gradients are torch's)"""
    return np.power(x, y, out=out)


@binary(
    "maximum",
    onnx=lower.elementwise("Max"),
    vjp=(lambda g, out, x, y: g * emit("win_share", x, y), lambda g, out, x, y: g * emit("win_share", y, x)),
    examples=[([(3, 4), (4,)], {}), ([(2, 1), (1, 3)], {})],
)
def maximum(x, y, out=None):
    """elementwise larger of x and y (ties split the gradient equally)"""
    return np.maximum(x, y, out=out)


@binary(
    "minimum",
    onnx=lower.elementwise("Min"),
    vjp=(lambda g, out, x, y: g * emit("win_share", y, x), lambda g, out, x, y: g * emit("win_share", x, y)),
    examples=[([(3, 4), (3, 1)], {}), ([(), (3,)], {})],
)
def minimum(x, y, out=None):
    """elementwise smaller of x and y (ties split the gradient equally)"""
    return np.minimum(x, y, out=out)


@binary(
    "win_share",
    constant=True,
    vjp=(None, None),
    dtype=float_dtype,
    internal=True,
    no_examples="piecewise constant (maximum/minimum's tie shares): zero almost everywhere",
)
def win_share(x, y):
    """1 where x > y, 1/2 where x == y, 0 where x < y: x's share of the gradient of maximum(x, y)"""
    dtype = float_dtype(np.result_type(x), np.result_type(y))
    return np.greater(x, y).astype(dtype) + np.equal(x, y).astype(dtype) * dtype.type(0.5)


def _where_shape(cond, x, y):
    return broadcast_shapes(cond, x, y)


@register(
    "where",
    inert=(0,),
    shape=_where_shape,
    arity=3,
    onnx=lower.where,
    dtype=lambda c, x, y: result_dtype(x, y),
    vjp=(
        None,
        lambda g, out, cond, x, y: emit("where", cond, g, 0.0),
        lambda g, out, cond, x, y: emit("where", cond, 0.0, g),
    ),
    examples=[([np.array([[1.0, 0, 1, 0]]), (3, 4), (3, 1)], {}), ([np.array([True, False]), (), (2, 1, 2)], {})],
)
def where(cond, x, y):
    """x where cond is non-zero, else y (cond is not differentiable)"""
    return np.where(cond, x, y)


def _clip_shape(x, lo=None, hi=None):
    if lo is not None and hi is not None and lo > hi:
        raise ShapeError(f"clip bounds are in the wrong order: lo={lo} > hi={hi}")
    return tuple(x)


def _clip_vjp(g, out, x, lo=None, hi=None):
    if lo is not None:
        g = g * emit("step", x - lo)
    if hi is not None:
        g = g * emit("step", hi - x)
    return g


def _clip_dtype(x, lo=None, hi=None):
    # numpy: a float bound makes an integer x's result float64; integer bounds keep x's dtype
    return float_dtype(x) if any(isinstance(b, float) for b in (lo, hi)) else x


@register(
    "clip",
    shape=_clip_shape,
    dtype=_clip_dtype,
    attrs=("lo", "hi"),
    arity=1,
    onnx=lower.clip,
    vjp=(_clip_vjp,),
    examples=[([(3, 4)], {"lo": -0.5, "hi": 0.5}), ([(2, 1, 3)], {"lo": 0.0}), ([(5,)], {"hi": 0.2})],
)
def clip(x, lo=None, hi=None, out=None):
    """x limited to [lo, hi] (either bound may be omitted); no gradient at or beyond a bound"""
    return np.clip(x, lo, hi, out=out)


@unary(
    "neg",
    dtype=None,
    onnx=lower.elementwise("Neg"),
    vjp=(lambda g, out, x: -g,),
    examples=[([(3, 2)], {}), ([(1, 3, 1)], {})],
)
def neg(x, out=None):
    """-x"""
    return np.negative(x, out=out)


@unary(
    "abs",
    dtype=None,
    onnx=lower.elementwise("Abs"),
    vjp=(lambda g, out, x: g * emit("sign", x),),
    examples=[([(3, 2)], {}), ([(1, 4)], {})],
)
def abs_(x, out=None):
    """|x| (gradient 0 at 0)"""
    return np.abs(x, out=out)


@unary(
    "sign",
    constant=True,
    dtype=None,
    vjp=(None,),
    internal=True,
    no_examples="piecewise constant (abs's derivative): zero almost everywhere, needed only by first derivatives",
)
def sign(x, out=None):
    """-1, 0 or 1 by the sign of x: the derivative of abs"""
    return np.sign(x, out=out)


@unary(
    "step",
    constant=True,
    vjp=(None,),
    internal=True,
    no_examples="piecewise constant (relu's derivative): zero almost everywhere",
)
def step(x, out=None):
    """1 where x > 0, else 0 (in x's float dtype): the derivative of relu"""
    if out is not None:  # the comparison's booleans written as 0.0 / 1.0 into the buffer
        return np.greater(x, 0, out=out)
    return np.greater(x, 0).astype(float_dtype(np.result_type(x)))


# -------------------------------------------------------------------------------------- transcendental
@unary("exp", onnx=lower.elementwise("Exp"), vjp=(lambda g, out, x: g * out,), examples=[([(3, 2)], {}), ([(1,)], {})])
def exp(x, out=None):
    """e ** x"""
    return np.exp(x, out=out)


@unary(
    "log",
    fd_domain="positive",
    onnx=lower.elementwise("Log"),
    vjp=(lambda g, out, x: g / x,),
    examples=[([(3, 2)], {}), ([(1, 4)], {})],
)
def log(x, out=None):
    """natural logarithm"""
    return np.log(x, out=out)


@unary(
    "log1p",
    fd_domain="positive",
    onnx=lower.log1p,
    vjp=(lambda g, out, x: g / (1 + x),),
    examples=[([(3, 2)], {}), ([(1, 3, 1)], {})],
)
def log1p(x, out=None):
    """log(1 + x), accurate for small x"""
    return np.log1p(x, out=out)


@unary(
    "sqrt",
    fd_domain="positive",
    onnx=lower.elementwise("Sqrt"),
    vjp=(lambda g, out, x: g * 0.5 / out,),
    examples=[([(3, 2)], {}), ([(1,)], {})],
)
def sqrt(x, out=None):
    """square root"""
    return np.sqrt(x, out=out)


@unary(
    "square",
    dtype=None,
    onnx=lower.square,
    vjp=(lambda g, out, x: g * (2 * x),),
    examples=[([(4,)], {}), ([(2, 1, 3)], {})],
)
def square(x, out=None):
    """x ** 2"""
    return np.square(x, out=out)


@unary(
    "sin",
    onnx=lower.elementwise("Sin"),
    vjp=(lambda g, out, x: g * emit("cos", x),),
    examples=[([(3, 2)], {}), ([(1,)], {})],
)
def sin(x, out=None):
    """sine"""
    return np.sin(x, out=out)


@unary(
    "cos",
    onnx=lower.elementwise("Cos"),
    vjp=(lambda g, out, x: -g * emit("sin", x),),
    examples=[([(3, 2)], {}), ([(2, 1)], {})],
)
def cos(x, out=None):
    """cosine"""
    return np.cos(x, out=out)


@unary(
    "tanh",
    onnx=lower.elementwise("Tanh"),
    vjp=(lambda g, out, x: g * (1 - out * out),),
    examples=[([(3, 2)], {}), ([(1, 1)], {})],
)
def tanh(x, out=None):
    """hyperbolic tangent"""
    return np.tanh(x, out=out)


@unary(
    "sigmoid",
    onnx=lower.sigmoid,
    vjp=(lambda g, out, x: g * out * (1 - out),),
    examples=[([(3, 2)], {}), ([(1, 5)], {})],
)
def sigmoid(x):
    """1 / (1 + e ** -x), computed without overflow for any x"""
    x = np.asarray(x)
    e = np.exp(-np.abs(x))  # in (0, 1]: never overflows
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(float_dtype(x.dtype), copy=False)


@unary(
    "softplus",
    onnx=lower.softplus,
    vjp=(lambda g, out, x: g * emit("sigmoid", x),),
    examples=[([(3, 2)], {}), ([(4, 1)], {})],
)
def softplus(x):
    """log(1 + e ** x), computed without overflow for any x"""
    return np.logaddexp(np.zeros((), float_dtype(np.result_type(x))), x)


# ---------------------------------------------------------------------------------------- activations
@unary(
    "relu",
    dtype=None,
    onnx=lower.elementwise("Relu"),
    vjp=(lambda g, out, x: g * emit("step", x),),
    examples=[([(3, 4)], {}), ([(1, 5)], {})],
)
def relu(x, out=None):
    """max(x, 0) (gradient 0 at 0)"""
    return np.maximum(x, 0, out=out)


@unary(
    "leaky_relu",
    attrs=("alpha",),
    onnx=lower.leaky_relu,
    vjp=(lambda g, out, x, alpha=0.01: g * (alpha + (1 - alpha) * emit("step", x)),),
    examples=[([(3, 4)], {}), ([(1, 5)], {"alpha": 0.2})],
)
def leaky_relu(x, alpha=0.01):
    """x for x > 0, alpha * x otherwise (default alpha 0.01)"""
    return np.where(np.greater(x, 0), x, np.multiply(alpha, x, dtype=np.result_type(x, 0.0)))


@unary(
    "elu",
    attrs=("alpha",),
    onnx=lower.elu,
    vjp=(lambda g, out, x, alpha=1.0: emit("where", emit("step", x), g, g * (out + alpha)),),
    examples=[([(3, 4)], {}), ([(5, 1)], {"alpha": 0.5})],
)
def elu(x, alpha=1.0):
    """x for x > 0, alpha * (e ** x - 1) otherwise (default alpha 1)"""
    return np.where(np.greater(x, 0), x, alpha * np.expm1(np.minimum(x, 0)))


GELU_C = float(np.sqrt(2 / np.pi))
GELU_K = 0.044715


def _gelu_vjp(g, out, x):
    # out = x/2 (1 + t), t = tanh(u), u = C (x + K x^3):  d out/dx = (1 + t)/2 + x/2 (1 - t^2) C (1 + 3K x^2)
    t = emit("tanh", GELU_C * (x + GELU_K * x * x * x))
    return g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (GELU_C * (1 + 3 * GELU_K * x * x)))


@unary(
    "gelu",
    onnx=partial(lower.gelu, GELU_C=GELU_C, GELU_K=GELU_K),
    vjp=(_gelu_vjp,),
    examples=[([(3, 4)], {}), ([(1, 5)], {})],
)
def gelu(x):
    """Gaussian error linear unit, tanh form: x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"""
    x = np.asarray(x)
    return 0.5 * x * (1 + np.tanh(GELU_C * (x + GELU_K * x * x * x)))


def _silu_vjp(g, out, x):
    s = emit("sigmoid", x)
    return g * (s * (1 + x * (1 - s)))


@unary("silu", onnx=lower.silu, vjp=(_silu_vjp,), examples=[([(3, 4)], {}), ([(1, 5)], {})])
def silu(x):
    """x * sigmoid(x) (also called swish)"""
    return np.multiply(x, sigmoid(x))


# ---------------------------------------------------------------------------------------- gradient flow
@unary(
    "stop_gradient",
    dtype=None,
    view=True,
    constant=True,
    onnx=lower.elementwise("Identity"),
    vjp=(lambda g, out, x: emit("broadcast_like", 0.0, x),),
    no_examples="the identity forward, with a zero gradient by definition "
    "(test_stop_gradient_passes_values_and_blocks_gradients)",
)
def stop_gradient(x):
    """x itself, but no gradient flows back through it (its VJP is zero)"""
    return x
