"""Parameter initializers, seeded by the generator the runner hands them."""
import numpy as np

from specgrad.components import NON_NEGATIVE, Registry

INITIALIZERS = Registry("initializer")


@INITIALIZERS.register("zeros")
def zeros():
    """all zeros"""
    return lambda shape, rng, dtype: np.zeros(shape, dtype)


@INITIALIZERS.register("constant", {"value": {"type": "number"}}, required=["value"])
def constant(value):
    """every entry equal to ``value``"""
    return lambda shape, rng, dtype: np.full(shape, value, dtype)


@INITIALIZERS.register("normal", {"mean": {"type": "number"}, "std": NON_NEGATIVE})
def normal(mean=0.0, std=1.0):
    """independent normal entries"""
    return lambda shape, rng, dtype: (mean + std * rng.standard_normal(shape)).astype(dtype)


@INITIALIZERS.register("uniform", {"low": {"type": "number"}, "high": {"type": "number"}})
def uniform(low=-1.0, high=1.0):
    """independent uniform entries on [low, high)"""
    return lambda shape, rng, dtype: rng.uniform(low, high, shape).astype(dtype)
