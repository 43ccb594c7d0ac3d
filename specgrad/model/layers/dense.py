"""Dense layers: linear, mlp, polynomial features, embedding."""

from __future__ import annotations

from specgrad.engine.ops.registry import REGISTRY, fmt_shape
from specgrad.model.layers.base import LAYERS, LayerError

UNITS = {"type": "integer", "minimum": 1}
BIAS = {"type": "boolean", "description": "add a learned bias (default true)"}
# Elementwise activations an mlp may use between its layers: the registered ones among these.
ACTIVATIONS = [a for a in ("relu", "leaky_relu", "elu", "gelu", "silu", "sigmoid", "tanh", "softplus") if a in REGISTRY]
RELU_LIKE = {"relu", "leaky_relu", "elu", "gelu", "silu"}


def features(x, layer: str) -> int:
    if not x.shape or not isinstance(x.shape[-1], int):
        raise LayerError(f"{layer} needs an input with a feature axis last, got shape {fmt_shape(x.shape)}")
    return x.shape[-1]


@LAYERS.register("linear", {"units": UNITS, "bias": BIAS}, required=["units"])
def linear(ctx, x, *, units, bias=True, weight_init="glorot_uniform"):
    """x @ weight + bias over the last axis: [..., in] -> [..., units] (glorot_uniform weight, zero bias)"""
    n_in = features(x, "linear")
    y = x @ ctx.param("weight", (n_in, units), weight_init, fans=(n_in, units))
    return y + ctx.param("bias", (units,), "zeros") if bias else y


@LAYERS.register(
    "mlp",
    {
        "widths": {
            "type": "array",
            "items": UNITS,
            "minItems": 1,
            "description": "units of each linear layer; the last is the output width",
        },
        "activation": {"enum": ACTIVATIONS, "description": "between layers, not after the last (default relu)"},
        "bias": BIAS,
    },
    required=["widths"],
)
def mlp(ctx, x, *, widths, activation="relu", bias=True):
    """linear layers 0, 1, ... of the given widths with an activation between them

    Weights are he_uniform when the activation is relu-like, else glorot_uniform."""
    weight_init = "he_uniform" if activation in RELU_LIKE else "glorot_uniform"
    for i, units in enumerate(widths):
        if i:
            x = ctx.apply(activation, x)
        x = linear(ctx.sub(str(i)), x, units=units, bias=bias, weight_init=weight_init)
    return x


@LAYERS.register(
    "polynomial",
    {
        "degree": {"type": "integer", "minimum": 1},
        "constant": {"type": "boolean", "description": "include the x ** 0 = 1 column (default true)"},
    },
    required=["degree"],
)
def polynomial(ctx, x, *, degree, constant=True):
    """powers x ** 0 .. x ** degree of each feature, side by side (no parameters)

    [B] -> [B, degree + 1] for a scalar per sample, [B, d] -> [B, d * (degree + 1)]."""
    phi = ctx.apply("powers", x, degree=degree)
    if not constant:
        phi = ctx.apply("slice", phi, axis=-1, start=1)
    if x.ndim > 1:
        phi = ctx.apply("reshape", phi, shape=[*x.shape[:-1], x.shape[-1] * phi.shape[-1]])
    return phi


@LAYERS.register("embedding", {"vocab": UNITS, "units": UNITS}, required=["vocab", "units"])
def embedding(ctx, ids, *, vocab, units):
    """rows of a learned [vocab, units] table: integer ids [...] -> [..., units] (weight normal(0, 1))"""
    if ids.dtype.kind not in "iu":
        raise LayerError(
            f"embedding needs integer ids, got {ids.dtype}; declare the model input as "
            f"{{shape: {list(ids.shape[1:])}, dtype: int64}}"
        )
    table = ctx.param("weight", (vocab, units), {"type": "normal", "std": 1.0}, fans=(vocab, units))
    return ctx.apply("take", table, ids, axis=0)
