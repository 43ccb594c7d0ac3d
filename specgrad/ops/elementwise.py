"""Elementwise ops with numpy broadcasting. Each VJP sits beside its forward and reads like the math;
cotangents may have the broadcast shape (the engine sums them back to each input's shape)."""
import numpy as np

from specgrad.ops.registry import broadcast_shapes, float_dtype, register, same_shape


def binary(name, vjp, dtype=None, fd_domain="real"):
    return register(name, shape=broadcast_shapes, vjp=vjp, dtype=dtype, arity=2, fd_domain=fd_domain, out=True)


def unary(name, vjp, dtype=float_dtype, fd_domain="real"):
    return register(name, shape=same_shape, vjp=vjp, dtype=dtype, arity=1, fd_domain=fd_domain, out=True)


@binary("add", vjp=(lambda g, out, x, y: g,
                    lambda g, out, x, y: g))
def add(x, y, out=None):
    """x + y"""
    return np.add(x, y, out=out)


@binary("sub", vjp=(lambda g, out, x, y: g,
                    lambda g, out, x, y: -g))
def sub(x, y, out=None):
    """x - y"""
    return np.subtract(x, y, out=out)


@binary("mul", vjp=(lambda g, out, x, y: g * y,
                    lambda g, out, x, y: g * x))
def mul(x, y, out=None):
    """x * y"""
    return np.multiply(x, y, out=out)


@binary("div", dtype=float_dtype,
        vjp=(lambda g, out, x, y: g / y,
             lambda g, out, x, y: -g * out / y))
def div(x, y, out=None):
    """x / y"""
    return np.true_divide(x, y, out=out)


@binary("pow", fd_domain="positive",
        vjp=(lambda g, out, x, y: g * y * x ** (y - 1),
             lambda g, out, x, y: g * out * x.graph.apply("log", x)))
def pow_(x, y, out=None):
    """x ** y (for a non-constant exponent, x must be positive)"""
    return np.power(x, y, out=out)


@unary("neg", dtype=None, vjp=(lambda g, out, x: -g,))
def neg(x, out=None):
    """-x"""
    return np.negative(x, out=out)


@unary("exp", vjp=(lambda g, out, x: g * out,))
def exp(x, out=None):
    """e ** x"""
    return np.exp(x, out=out)


@unary("log", fd_domain="positive", vjp=(lambda g, out, x: g / x,))
def log(x, out=None):
    """natural logarithm"""
    return np.log(x, out=out)


@unary("square", dtype=None, vjp=(lambda g, out, x: g * (2 * x),))
def square(x, out=None):
    """x ** 2"""
    return np.square(x, out=out)


@unary("sin", vjp=(lambda g, out, x: g * x.graph.apply("cos", x),))
def sin(x, out=None):
    """sine"""
    return np.sin(x, out=out)


@unary("cos", vjp=(lambda g, out, x: -g * x.graph.apply("sin", x),))
def cos(x, out=None):
    """cosine"""
    return np.cos(x, out=out)


@unary("tanh", vjp=(lambda g, out, x: g * (1 - out * out),))
def tanh(x, out=None):
    """hyperbolic tangent"""
    return np.tanh(x, out=out)
