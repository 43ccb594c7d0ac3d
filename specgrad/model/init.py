"""Parameter initializers, seeded by the generator the runner hands them.

An initializer is chosen by name in a spec (``init: zeros``, ``init: {type: normal, std: 0.01}``) and
becomes a function ``(shape, rng, dtype, fans) -> array``. ``fans`` is ``(fan_in, fan_out)``: a layer
states them for the parameters it creates (a conv kernel's fan-in counts its receptive field); for a
parameter declared directly in ``model.params`` they are read off its shape (see ``fans_of``).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from specgrad.base.components import NON_NEGATIVE, POSITIVE, Registry

INITIALIZERS = Registry("initializer")

Fans = tuple  # (fan_in, fan_out)


def fans_of(shape) -> Fans:
    """Fans of a plain parameter: the last axis is the output, the others feed it; a vector is its own fan."""
    shape = tuple(shape)
    if not shape:
        return 1, 1
    if len(shape) == 1:
        return shape[0], shape[0]
    return math.prod(shape[:-1]), shape[-1]


@INITIALIZERS.register("zeros")
def zeros():
    """all zeros"""
    return lambda shape, rng, dtype, fans: np.zeros(shape, dtype)


@INITIALIZERS.register("ones")
def ones():
    """all ones"""
    return lambda shape, rng, dtype, fans: np.ones(shape, dtype)


@INITIALIZERS.register("constant", {"value": {"type": "number"}}, required=["value"])
def constant(value):
    """every entry equal to ``value``"""
    return lambda shape, rng, dtype, fans: np.full(shape, value, dtype)


@INITIALIZERS.register("normal", {"mean": {"type": "number"}, "std": NON_NEGATIVE})
def normal(mean=0.0, std=1.0):
    """independent normal entries"""
    return lambda shape, rng, dtype, fans: (mean + std * rng.standard_normal(shape)).astype(dtype)


@INITIALIZERS.register("uniform", {"low": {"type": "number"}, "high": {"type": "number"}})
def uniform(low=-1.0, high=1.0):
    """independent uniform entries on [low, high)"""
    return lambda shape, rng, dtype, fans: rng.uniform(low, high, shape).astype(dtype)


# Variance-scaling initializers: Var(w) = gain^2 * 2 / (fan_in + fan_out) (Glorot & Bengio, 2010) or
# gain^2 * 2 / fan (He et al., 2015), drawn from a normal or from the uniform of that variance.
GAIN = {"gain": {**POSITIVE, "description": "multiplies the standard deviation (default 1)"}}
FAN_MODE = {
    "mode": {"enum": ["fan_in", "fan_out"], "description": "which fan the variance is divided by (default fan_in)"}
}


def _scaled(variance: Callable, distribution: str):
    def init(shape, rng, dtype, fans):
        std = math.sqrt(variance(*fans))
        if distribution == "normal":
            return (std * rng.standard_normal(shape)).astype(dtype)
        limit = math.sqrt(3.0) * std  # U(-a, a) has variance a^2 / 3
        return rng.uniform(-limit, limit, shape).astype(dtype)

    return init


def _glorot(distribution):
    def factory(gain=1.0):
        return _scaled(lambda fan_in, fan_out: gain**2 * 2.0 / (fan_in + fan_out), distribution)

    factory.__doc__ = f"Glorot/Xavier {distribution}: variance gain^2 * 2 / (fan_in + fan_out)"
    return factory


def _he(distribution):
    def factory(gain=1.0, mode="fan_in"):
        return _scaled(lambda fan_in, fan_out: gain**2 * 2.0 / (fan_in if mode == "fan_in" else fan_out), distribution)

    factory.__doc__ = f"He/Kaiming {distribution} (for ReLU layers): variance gain^2 * 2 / fan (fan_in by default)"
    return factory


for _dist in ("normal", "uniform"):
    for _name in (f"glorot_{_dist}", f"xavier_{_dist}"):
        INITIALIZERS.register(_name, GAIN)(_glorot(_dist))
    for _name in (f"he_{_dist}", f"kaiming_{_dist}"):
        INITIALIZERS.register(_name, {**GAIN, **FAN_MODE})(_he(_dist))


@INITIALIZERS.register("orthogonal", GAIN, min_rank=2)
def orthogonal(gain=1.0):
    """a (semi-)orthogonal matrix over (all axes but the last) x (the last), times gain (Saxe et al., 2014)"""

    def init(shape, rng, dtype, fans):
        rows, cols = math.prod(shape[:-1]), shape[-1]
        a = rng.standard_normal((max(rows, cols), min(rows, cols)))
        q, r = np.linalg.qr(a)
        q = q * np.sign(np.diag(r))  # make the distribution uniform over orthogonal matrices
        if rows < cols:
            q = q.T
        return (gain * q).reshape(shape).astype(dtype)

    return init


def init_problem(settings: dict, shape) -> str | None:
    """Why an initializer cannot fill a parameter of ``shape`` (checked while the model is built), or None."""
    min_rank = INITIALIZERS[settings["type"]].meta.get("min_rank", 0)
    if len(shape) < min_rank:
        return f"{settings['type']} initialization needs a parameter of rank >= {min_rank}, got shape {list(shape)}"
    return None
