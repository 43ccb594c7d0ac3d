"""Hessian-vector products of a compiled model's training loss: the engine's ``hvp_nodes`` (the backward
pass differentiated again, specgrad/engine/hessian.py) fed with a model's data, parameters and state."""

from __future__ import annotations

import numpy as np

from specgrad.base.rng import batch_key
from specgrad.engine.hessian import SecondDerivativeMissing, hvp_nodes
from specgrad.engine.plan import Plan
from specgrad.model.build import init_state

__all__ = ["HessianVectorProduct", "SecondDerivativeMissing", "hvp"]


class HessianVectorProduct:
    """H v for a compiled model (``specgrad.model.build.Model``), H the Hessian of its training loss in its parameters,
    at the parameters and data given each call. The graph and its plan are built once."""

    def __init__(self, model):
        self.model = model
        self.vectors, self.products = hvp_nodes(model.loss, list(model.params.values()), model.grads)
        self.plan = Plan(self.products, [*model.feeds, *self.vectors])

    def __call__(
        self, fields: dict, params: dict, vector: dict, state: dict | None = None, key=None
    ) -> dict[str, np.ndarray]:
        model = self.model
        missing = [name for name in model.params if name not in vector]
        if missing:
            raise ValueError(f"the vector has no block for parameter(s) {', '.join(missing)}")
        if model.state and state is None:
            state = init_state(model)
        if model.rng is not None and key is None:
            key = batch_key(0, 0)  # the key form a training step feeds, for batch 0 of seed 0
        blocks = [np.asarray(vector[name], node.dtype).reshape(node.shape) for name, node in model.params.items()]
        out = self.plan(*model.feed(fields, params, state, key), *blocks)
        return {name: np.asarray(value) for name, value in zip(model.params, out)}


def hvp(model, fields: dict, params: dict, vector: dict, state: dict | None = None, key=None) -> dict[str, np.ndarray]:
    """H v of ``model``'s training loss on the batch ``fields`` at ``params``, for ``vector`` given as one
    block per parameter (by name); the result has the same blocks. Compiled on the first call per model."""
    cached = model.__dict__.get("_hvp")
    if cached is None:
        cached = model.__dict__["_hvp"] = HessianVectorProduct(model)
    return cached(fields, params, vector, state, key)
