"""Finite-difference checks of the engine's gradients (HIPS autograd's ``check_grads`` idea): compare the
compiled backward pass with central differences along random directions."""
from __future__ import annotations

from typing import Callable

import numpy as np

from specgrad.graph.autodiff import gradients
from specgrad.graph.ir import Graph, Node
from specgrad.graph.plan import Plan


def directional_check(build: Callable[[list[Node]], Node], values: list[np.ndarray],
                      rng: np.random.Generator, eps: float = 1e-6) -> float:
    """Relative error between <grad L, v> and (L(x + eps v) - L(x - eps v)) / (2 eps), where
    L = sum(build(params) * R) for a fixed random R, and v is a random direction over all float values."""
    graph = Graph()
    params = [graph.param(f"p{i}", v.shape, v.dtype) for i, v in enumerate(values)]
    out = build(params)
    weights = rng.standard_normal(tuple(int(d) for d in _runtime_shape(out, params, values)))
    loss = graph.apply("sum", out * graph.const(weights)) if out.shape != () else out * float(weights)
    grads = gradients(loss, params)
    plan, loss_plan = Plan([loss, *grads], params), Plan([loss], params)
    _, *g = plan(*values)
    directions = [rng.standard_normal(v.shape) for v in values]
    analytic = sum(float(np.sum(gi * d)) for gi, d in zip(g, directions))
    plus = loss_plan(*[v + eps * d for v, d in zip(values, directions)])[0]
    minus = loss_plan(*[v - eps * d for v, d in zip(values, directions)])[0]
    numeric = (float(plus) - float(minus)) / (2 * eps)
    return abs(analytic - numeric) / max(1.0, abs(analytic), abs(numeric))


def _runtime_shape(out: Node, params, values):
    (value,) = Plan([out], params)(*values)
    return np.shape(value)
