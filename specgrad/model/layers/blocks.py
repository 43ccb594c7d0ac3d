"""Structure: residual blocks over nested node definitions, flatten."""

from __future__ import annotations

from specgrad.engine.ops.registry import fmt_shape
from specgrad.model.layers.base import LAYERS, LayerError


@LAYERS.register(
    "residual",
    {
        "body": {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": "#/$defs/node"},
            "description": "node definitions like model.nodes; a layer without input takes the previous "
            "node's output (the first: the block's input); names stay inside the block",
        },
    },
    required=["body"],
)
def residual(ctx, x, *, body):
    """x + body(x), the body being nested node definitions whose last node keeps x's shape"""
    y = ctx.build_nodes(body, x)
    if y.shape != x.shape:
        raise LayerError(
            f"the body's output has shape {fmt_shape(y.shape)} but the block's input has "
            f"{fmt_shape(x.shape)}; a residual block must keep the shape"
        )
    return x + y
