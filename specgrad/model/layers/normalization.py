"""Normalization and regularization: layernorm, batchnorm (running statistics as state), dropout."""

from __future__ import annotations

from specgrad.base.components import FRACTION, POSITIVE
from specgrad.engine.ops.registry import fmt_shape
from specgrad.model.layers.base import LAYERS, LayerError
from specgrad.model.layers.dense import features

EPS = {**POSITIVE, "description": "added to the variance before the square root (default 1e-5)"}
AFFINE = {"type": "boolean", "description": "learn a per-feature scale and bias (default true)"}


def _normalize(ctx, x, axes, eps):
    """(x - mean) / sqrt(var + eps) over ``axes``, and the batch statistics."""
    mean = ctx.apply("mean", x, axis=axes, keepdims=True)
    centered = x - mean
    var = ctx.apply("mean", ctx.apply("square", centered), axis=axes, keepdims=True)
    return centered / ctx.apply("sqrt", var + eps), mean, var


def _normalize_across_processes(ctx, x, axes, eps):
    """``_normalize`` over the whole batch of a data-parallel run, each process holding some of its rows:
    the sums (and the count) are summed over the processes, two passes as in one process (the mean, then
    the centered squares), so every process normalizes with the whole batch's statistics. The
    collectives' VJPs sum the statistics' cotangents likewise: the gradients are those of one process."""

    def over_batch(v):
        return ctx.apply("allreduce_sum", v)

    count = over_batch(ctx.apply("count", ctx.apply("stop_gradient", x), axis=axes))  # a size: no gradient
    mean = over_batch(ctx.apply("sum", x, axis=axes, keepdims=True)) / count
    centered = x - mean
    var = over_batch(ctx.apply("sum", ctx.apply("square", centered), axis=axes, keepdims=True)) / count
    return centered / ctx.apply("sqrt", var + eps), mean, var, count


def _affine(ctx, y, n):
    return y * ctx.param("scale", (n,), "ones") + ctx.param("bias", (n,), "zeros")


@LAYERS.register("layernorm", {"eps": EPS, "affine": AFFINE})
def layernorm(ctx, x, *, eps=1e-5, affine=True):
    """each sample normalized over its last axis to mean 0 and variance 1, then scaled and shifted per feature"""
    n = features(x, "layernorm")
    y, _, _ = _normalize(ctx, x, -1, eps)
    return _affine(ctx, y, n) if affine else y


@LAYERS.register(
    "batchnorm",
    {
        "eps": EPS,
        "affine": AFFINE,
        "momentum": {**FRACTION, "description": "weight of the batch in the running statistics (default 0.1)"},
        "axis": {
            "type": "integer",
            "description": "the feature axis (default 1: features of [B, F], channels "
            "of [B, C, H, W]; -1 for [B, T, F])",
        },
    },
)
def batchnorm(ctx, x, *, eps=1e-5, momentum=0.1, affine=True, axis=1):
    """each feature normalized over the batch: batch statistics in training, running ones in evaluation

    Training normalizes with the batch's mean and variance (over every axis but the feature axis) and updates
    the state running_mean and running_var; evaluation uses those running statistics. In a data-parallel run
    the batch is the whole batch (train.distributed.sync_batchnorm, the default) or each process's rows."""
    if x.ndim < 2 or not -x.ndim <= axis < x.ndim or axis % x.ndim == 0:
        raise LayerError(
            f"batchnorm's feature axis {axis} must be a non-batch axis of its input, "
            f"whose shape is {fmt_shape(x.shape)}"
        )
    axis %= x.ndim
    n = x.shape[axis]
    axes = [a for a in range(x.ndim) if a != axis]
    running_mean = ctx.state("running_mean", (n,), "zeros")
    running_var = ctx.state("running_var", (n,), "ones")
    if ctx.training:
        if ctx.parallel and ctx.parallel.sync_batchnorm:
            y, mean, var, count = _normalize_across_processes(ctx, x, axes, eps)
        else:
            y, mean, var = _normalize(ctx, x, axes, eps)
            count = ctx.apply("count", x, axis=axes)
        unbiased = count / ctx.apply("maximum", count - 1, 1.0)  # the running variance is unbiased
        batch_mean, batch_var = (ctx.apply("squeeze", v, axis=axes) for v in (mean, var))
        ctx.update(running_mean, (1 - momentum) * running_mean + momentum * batch_mean)
        ctx.update(running_var, (1 - momentum) * running_var + (momentum * unbiased) * batch_var)
    else:
        mean, var = (_per_feature(ctx, v, x, axis) for v in (running_mean, running_var))
        y = (x - mean) / ctx.apply("sqrt", var + eps)
    if not affine:
        return y
    scale, bias = ctx.param("scale", (n,), "ones"), ctx.param("bias", (n,), "zeros")
    return y * _per_feature(ctx, scale, x, axis) + _per_feature(ctx, bias, x, axis)


def _per_feature(ctx, v, x, axis):
    """A per-feature vector shaped to broadcast along ``axis`` of x (trailing size-1 axes)."""
    trailing = x.ndim - 1 - axis
    return ctx.apply("reshape", v, shape=[v.shape[0]] + [1] * trailing) if trailing else v


@LAYERS.register(
    "dropout", {"rate": {**FRACTION, "description": "probability that an entry is zeroed"}}, required=["rate"]
)
def dropout(ctx, x, *, rate):
    """entries zeroed with probability rate in training (the rest scaled by 1 / (1 - rate)); identity in eval

    The mask is drawn from the step's random key, so it changes every step and a resumed run redraws it."""
    if not ctx.training or rate == 0:
        return x
    key, salt = ctx.key()
    return ctx.apply("dropout", x, key, rate=rate, salt=salt)
