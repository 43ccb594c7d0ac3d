"""Multi-head attention (Vaswani et al., 2017) over sequences [B, T, D]."""

from __future__ import annotations

import numpy as np

from specgrad.engine.ops.registry import fmt_shape
from specgrad.model.layers.base import LAYERS, LayerError
from specgrad.model.layers.dense import BIAS, UNITS, linear

MASKED = -1e9  # added to the scores a causal mask hides: exp underflows to exactly 0 in softmax


def _sequence(x, what):
    if x.ndim != 3 or not all(isinstance(d, int) for d in x.shape[1:]):
        raise LayerError(f"attention needs {what} [B, T, features], got shape {fmt_shape(x.shape)}")
    return x.shape[1], x.shape[2]


@LAYERS.register(
    "attention",
    {
        "heads": UNITS,
        "units": {
            **UNITS,
            "description": "width of queries, keys and values over all heads (default: the "
            "input's features); a multiple of heads",
        },
        "causal": {"type": "boolean", "description": "position t attends only to positions <= t (default false)"},
        "bias": BIAS,
    },
    required=["heads"],
)
def attention(ctx, x, context=None, *, heads, units=None, causal=False, bias=True):
    """multi-head scaled dot-product attention: [B, T, D] -> [B, T, D]

    Queries come from x, keys and values from x (self-attention) or from a second input [B, S, E]
    (cross-attention); the projections query, key, value and output are linear layers (glorot_uniform)."""
    steps, width = _sequence(x, "an input")
    source = x if context is None else context
    source_steps, _ = _sequence(source, "a context")
    if causal and context is not None:
        raise LayerError("a causal mask applies to self-attention only (there is a second input)")
    units = units or width
    if units % heads:
        raise LayerError(f"{units} units do not split into {heads} heads")
    size = units // heads

    def split(h, n):  # [B, n, units] -> [B, heads, n, size]
        h = ctx.apply("reshape", h, shape=[h.shape[0], n, heads, size])
        return ctx.apply("transpose", h, axes=[0, 2, 1, 3])

    q = split(linear(ctx.sub("query"), x, units=units, bias=bias), steps)
    k = split(linear(ctx.sub("key"), source, units=units, bias=bias), source_steps)
    v = split(linear(ctx.sub("value"), source, units=units, bias=bias), source_steps)
    scores = (q @ ctx.apply("transpose", k)) * (1.0 / np.sqrt(size))  # [B, heads, T, S]
    if causal:
        scores = scores + ctx.graph.const(np.triu(np.full((steps, steps), MASKED, x.dtype), k=1))
    mixed = ctx.apply("softmax", scores, axis=-1) @ v  # [B, heads, T, size]
    mixed = ctx.apply("reshape", ctx.apply("transpose", mixed, axes=[0, 2, 1, 3]), shape=[x.shape[0], steps, units])
    return linear(ctx.sub("output"), mixed, units=width, bias=bias)
