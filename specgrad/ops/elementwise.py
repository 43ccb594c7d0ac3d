"""Elementwise ops with numpy broadcasting. Each VJP sits beside its forward and reads like the math;
cotangents may have the broadcast shape (the engine sums them back to each input's shape)."""
import numpy as np

from specgrad.ops.registry import broadcast_shapes, float_dtype, register, same_shape


def binary(name, vjp, dtype=None, fd_domain="real"):
    return register(name, shape=broadcast_shapes, vjp=vjp, dtype=dtype, arity=2, fd_domain=fd_domain)


def unary(name, vjp, dtype=float_dtype, fd_domain="real"):
    return register(name, shape=same_shape, vjp=vjp, dtype=dtype, arity=1, fd_domain=fd_domain)


@binary("add", vjp=(lambda g, out, x, y: g,
                    lambda g, out, x, y: g))
def add(x, y):
    """x + y"""
    return np.add(x, y)


@binary("sub", vjp=(lambda g, out, x, y: g,
                    lambda g, out, x, y: -g))
def sub(x, y):
    """x - y"""
    return np.subtract(x, y)


@binary("mul", vjp=(lambda g, out, x, y: g * y,
                    lambda g, out, x, y: g * x))
def mul(x, y):
    """x * y"""
    return np.multiply(x, y)


@binary("div", dtype=float_dtype,
        vjp=(lambda g, out, x, y: g / y,
             lambda g, out, x, y: -g * out / y))
def div(x, y):
    """x / y"""
    return np.true_divide(x, y)


@binary("pow", fd_domain="positive",
        vjp=(lambda g, out, x, y: g * y * x ** (y - 1),
             lambda g, out, x, y: g * out * x.graph.apply("log", x)))
def pow_(x, y):
    """x ** y (for a non-constant exponent, x must be positive)"""
    return np.power(x, y)


@unary("neg", dtype=None, vjp=(lambda g, out, x: -g,))
def neg(x):
    """-x"""
    return np.negative(x)


@unary("exp", vjp=(lambda g, out, x: g * out,))
def exp(x):
    """e ** x"""
    return np.exp(x)


@unary("log", fd_domain="positive", vjp=(lambda g, out, x: g / x,))
def log(x):
    """natural logarithm"""
    return np.log(x)


@unary("square", dtype=None, vjp=(lambda g, out, x: g * (2 * x),))
def square(x):
    """x ** 2"""
    return np.square(x)


@unary("sin", vjp=(lambda g, out, x: g * x.graph.apply("cos", x),))
def sin(x):
    """sine"""
    return np.sin(x)


@unary("cos", vjp=(lambda g, out, x: -g * x.graph.apply("sin", x),))
def cos(x):
    """cosine"""
    return np.cos(x)


@unary("tanh", vjp=(lambda g, out, x: g * (1 - out * out),))
def tanh(x):
    """hyperbolic tangent"""
    return np.tanh(x)
