"""Convolutional layers over NCHW images: conv2d, max/avg pooling, flatten."""

from __future__ import annotations

from specgrad.engine.ops.registry import fmt_shape
from specgrad.model.layers.base import LAYERS, LayerError
from specgrad.model.layers.dense import BIAS, UNITS

SIZE = {
    "if": {"type": "array"},
    "then": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 2, "maxItems": 2},
    "else": {"type": "integer", "minimum": 1},
    "description": "an integer or [height, width]",
}
PADDING = {
    "if": {"type": "string"},
    "then": {"type": "string", "enum": ["valid", "same"]},
    "else": {"type": "integer", "minimum": 0},
    "description": "zero padding on each side: an integer, valid (0) or same (output size = input "
    "size at stride 1; odd kernels)",
}


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _padding(padding, kernel):
    if padding == "valid":
        return 0
    if padding == "same":
        if any(k % 2 == 0 for k in kernel):
            raise LayerError(f"padding 'same' needs an odd kernel, got {list(kernel)}")
        return [(k - 1) // 2 for k in kernel]
    return padding


def _image(x, layer):
    if x.ndim != 4:
        raise LayerError(f"{layer} needs images [B, channels, height, width], got shape {fmt_shape(x.shape)}")


@LAYERS.register(
    "conv2d",
    {"filters": UNITS, "kernel": SIZE, "stride": SIZE, "padding": PADDING, "bias": BIAS},
    required=["filters", "kernel"],
)
def conv2d(ctx, x, *, filters, kernel, stride=1, padding="valid", bias=True):
    """2-D convolution (cross-correlation): [B, C, H, W] -> [B, filters, H', W']

    weight [filters, C, kh, kw] glorot_uniform with the receptive field in its fans, bias zeros."""
    _image(x, "conv2d")
    kh, kw = _pair(kernel)
    channels = x.shape[1]
    weight = ctx.param(
        "weight", (filters, channels, kh, kw), "glorot_uniform", fans=(channels * kh * kw, filters * kh * kw)
    )
    y = ctx.apply("conv2d", x, weight, stride=stride, padding=_padding(padding, (kh, kw)))
    if not bias:
        return y
    return y + ctx.apply("reshape", ctx.param("bias", (filters,), "zeros"), shape=[filters, 1, 1])


def _pool(op: str, doc: str):
    def pool(ctx, x, *, kernel, stride=None, padding=0):
        _image(x, op)
        return ctx.apply(op, x, kernel=kernel, stride=stride, padding=padding)

    pool.__doc__ = doc
    return pool


POOL = {
    "kernel": SIZE,
    "stride": {**SIZE, "description": "default: the kernel (windows do not overlap)"},
    "padding": {"type": "integer", "minimum": 0},
}
LAYERS.register("max_pool2d", POOL, required=["kernel"])(
    _pool("max_pool2d", "largest value of each window: [B, C, H, W] -> [B, C, H', W']")
)
LAYERS.register("avg_pool2d", POOL, required=["kernel"])(
    _pool("avg_pool2d", "mean of each window: [B, C, H, W] -> [B, C, H', W']")
)


@LAYERS.register("flatten")
def flatten(ctx, x):
    """every axis after the batch merged into one: [B, C, H, W] -> [B, C * H * W]"""
    return ctx.apply("flatten", x, axis=1)
