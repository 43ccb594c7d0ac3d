"""Recurrent layers over fixed-length sequences [B, T, D], unrolled into ops at build time: lstm, gru."""

from __future__ import annotations

import numpy as np

from specgrad.engine.ops.registry import fmt_shape
from specgrad.model.layers.base import LAYERS, LayerError
from specgrad.model.layers.dense import UNITS

RETURN_SEQUENCES = {
    "type": "boolean",
    "description": "output every step's hidden state [B, T, units] (default true) or only the last one [B, units]",
}


def _check(x, layer):
    if x.ndim != 3 or not all(isinstance(d, int) for d in x.shape[1:]):
        raise LayerError(f"{layer} needs sequences [B, T, features], got shape {fmt_shape(x.shape)}")


def _steps(ctx, x):
    """The per-step slices x[:, t, :] as nodes [B, D]. Each step's input projection is its own matmul: slicing
    one projection of the whole sequence would make every step's backward pass write a [B, T, gates] zero
    array (quadratic in T), where slices of a data input need no backward pass at all."""
    if x.op == "stack" and x.attrs.get("axis") == 1:  # a recurrent layer's output: its steps as they were
        return list(x.inputs)
    return [ctx.apply("squeeze", ctx.apply("slice", x, axis=1, start=t, stop=t + 1), axis=1) for t in range(x.shape[1])]


def _gates(ctx, z, n, units):
    """z [..., n * units] cut into n pieces along the last axis."""
    return [ctx.apply("slice", z, axis=-1, start=i * units, stop=(i + 1) * units) for i in range(n)]


def _weights(ctx, x, units, n_gates):
    features = x.shape[-1]
    w = ctx.param("weight", (features, n_gates * units), "glorot_uniform", fans=(features, n_gates * units))
    u = ctx.param("recurrent_weight", (units, n_gates * units), "orthogonal")
    return w, u


def _output(ctx, hs, return_sequences):
    return ctx.apply("stack", *hs, axis=1) if return_sequences else hs[-1]


@LAYERS.register("lstm", {"units": UNITS, "return_sequences": RETURN_SEQUENCES}, required=["units"])
def lstm(ctx, x, *, units, return_sequences=True):
    """long short-term memory over [B, T, D]: c = f c + i g, h = o tanh(c), from h = c = 0

    Gates i, f, g, o in that order; weight glorot_uniform, recurrent_weight orthogonal, bias zeros."""
    _check(x, "lstm")
    w, u = _weights(ctx, x, units, 4)
    b = ctx.param("bias", (4 * units,), "zeros")
    h = c = ctx.graph.const(np.zeros(units, x.dtype))
    hs = []
    for xt in _steps(ctx, x):
        i, f, g, o = _gates(ctx, xt @ w + b + h @ u, 4, units)
        c = ctx.apply("sigmoid", f) * c + ctx.apply("sigmoid", i) * ctx.apply("tanh", g)
        h = ctx.apply("sigmoid", o) * ctx.apply("tanh", c)
        hs.append(h)
    return _output(ctx, hs, return_sequences)


@LAYERS.register("gru", {"units": UNITS, "return_sequences": RETURN_SEQUENCES}, required=["units"])
def gru(ctx, x, *, units, return_sequences=True):
    """gated recurrent unit over [B, T, D]: h = (1 - z) n + z h, from h = 0

    Gates r, z, n as PyTorch writes them, n = tanh(x W_n + b_n + r (h U_n + c_n)); weight glorot_uniform,
    recurrent_weight orthogonal, bias and recurrent_bias zeros."""
    _check(x, "gru")
    w, u = _weights(ctx, x, units, 3)
    b = ctx.param("bias", (3 * units,), "zeros")
    c = ctx.param("recurrent_bias", (3 * units,), "zeros")
    h = ctx.graph.const(np.zeros(units, x.dtype))
    hs = []
    for xt in _steps(ctx, x):
        xr, xz, xn = _gates(ctx, xt @ w + b, 3, units)
        hr, hz, hn = _gates(ctx, h @ u + c, 3, units)
        r, z = ctx.apply("sigmoid", xr + hr), ctx.apply("sigmoid", xz + hz)
        n = ctx.apply("tanh", xn + r * hn)
        h = (1 - z) * n + z * h
        hs.append(h)
    return _output(ctx, hs, return_sequences)
