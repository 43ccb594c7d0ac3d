"""Normalization and regularization: layernorm, batchnorm (running statistics as state), dropout."""
from __future__ import annotations

from specgrad.layers.base import LAYERS, LayerError
from specgrad.layers.dense import features
from specgrad.components import FRACTION, POSITIVE

EPS = {**POSITIVE, "description": "added to the variance before the square root (default 1e-5)"}
AFFINE = {"type": "boolean", "description": "learn a per-feature scale and bias (default true)"}


def _normalize(ctx, x, axes, eps):
    """(x - mean) / sqrt(var + eps) over ``axes``, and the batch statistics."""
    mean = ctx.apply("mean", x, axis=axes, keepdims=True)
    centered = x - mean
    var = ctx.apply("mean", ctx.apply("square", centered), axis=axes, keepdims=True)
    return centered * (var + eps) ** -0.5, mean, var


def _affine(ctx, y, n):
    return y * ctx.param("scale", (n,), "ones") + ctx.param("bias", (n,), "zeros")


@LAYERS.register("layernorm", {"eps": EPS, "affine": AFFINE})
def layernorm(ctx, x, *, eps=1e-5, affine=True):
    """each sample normalized over its last axis to mean 0 and variance 1, then scaled and shifted per feature
    (scale ones, bias zeros)"""
    n = features(x, "layernorm")
    y, _, _ = _normalize(ctx, x, -1, eps)
    return _affine(ctx, y, n) if affine else y


@LAYERS.register("batchnorm", {
    "eps": EPS, "affine": AFFINE,
    "momentum": {**FRACTION, "description": "weight of the batch in the running statistics (default 0.1)"},
})
def batchnorm(ctx, x, *, eps=1e-5, momentum=0.1, affine=True):
    """each feature (last axis) normalized over the batch and every other axis; training uses the batch's
    statistics and updates running ones (state running_mean, running_var), evaluation uses the running ones"""
    n = features(x, "batchnorm")
    if x.ndim < 2:
        raise LayerError(f"batchnorm needs a batch axis and a feature axis, got shape {list(x.shape)}")
    axes = list(range(x.ndim - 1))
    running_mean = ctx.state("running_mean", (n,), "zeros")
    running_var = ctx.state("running_var", (n,), "ones")
    if ctx.training:
        y, mean, var = _normalize(ctx, x, axes, eps)
        count = ctx.apply("count", x, axis=axes)
        unbiased = ctx.apply("squeeze", var, axis=axes) * (count / (count - 1))   # as the running variance
        ctx.update(running_mean, (1 - momentum) * running_mean + momentum * ctx.apply("squeeze", mean, axis=axes))
        ctx.update(running_var, (1 - momentum) * running_var + momentum * unbiased)
    else:
        y = (x - running_mean) * (running_var + eps) ** -0.5
    return _affine(ctx, y, n) if affine else y


@LAYERS.register("dropout", {"rate": {**FRACTION, "description": "probability that an entry is zeroed"}},
                 required=["rate"])
def dropout(ctx, x, *, rate):
    """training: each entry zeroed with probability rate, the rest scaled by 1 / (1 - rate), a new mask each
    step; evaluation: the identity"""
    if not ctx.training or rate == 0:
        return x
    return ctx.apply("dropout", x, ctx.key(), rate=rate)
