"""Finite-difference checks of the engine's gradients (HIPS autograd's ``check_grads`` idea): compare the
compiled backward pass with central differences, along random directions for a single op (the test that
enumerates the registry) and entry by entry for each parameter of a compiled model (``specgrad gradcheck``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from specgrad.base.rng import INIT, batch_key, stream
from specgrad.data.prepare import prepare_data
from specgrad.engine.autodiff import gradients
from specgrad.engine.hessian import hvp_nodes
from specgrad.engine.ir import Graph, Node
from specgrad.engine.plan import Plan
from specgrad.model.build import init_params, init_state


def directional_check(
    build: Callable[[list[Node]], Node], values: list[np.ndarray], rng: np.random.Generator, eps: float = 1e-6
) -> float:
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


def directional_hvp_check(
    build: Callable[[list[Node]], Node], values: list[np.ndarray], rng: np.random.Generator, eps: float = 1e-5
) -> float:
    """Relative error between <H v, w> from the engine's Hessian-vector product (the backward pass
    differentiated again) and <(grad L(x + eps v) - grad L(x - eps v)) / (2 eps), w>, for the loss of
    ``directional_check`` and random directions v, w over all float values."""

    graph = Graph()
    params = [graph.param(f"p{i}", v.shape, v.dtype) for i, v in enumerate(values)]
    out = build(params)
    weights = rng.standard_normal(tuple(int(d) for d in _runtime_shape(out, params, values)))
    loss = graph.apply("sum", out * graph.const(weights)) if out.shape != () else out * float(weights)
    grads = gradients(loss, params)
    vectors, products = hvp_nodes(loss, params, grads)
    hv = Plan(products, [*params, *vectors])
    grad_plan = Plan(grads, params)
    v = [rng.standard_normal(x.shape) for x in values]
    w = [rng.standard_normal(x.shape) for x in values]
    analytic = sum(float(np.sum(h * wi)) for h, wi in zip(hv(*values, *v), w))
    plus = grad_plan(*[x + eps * d for x, d in zip(values, v)])
    minus = grad_plan(*[x - eps * d for x, d in zip(values, v)])
    numeric = sum(float(np.sum((p - m) * wi)) for p, m, wi in zip(plus, minus, w)) / (2 * eps)
    return abs(analytic - numeric) / max(1.0, abs(analytic), abs(numeric))


def _runtime_shape(out: Node, params, values):
    (value,) = Plan([out], params)(*values)
    return np.shape(value)


# ------------------------------------------------------------------------------------ a compiled model
@dataclass
class ParamCheck:
    name: str
    shape: tuple
    entries: int  # how many of its entries were perturbed
    error: float  # max |analytic - numeric| over them, relative to the parameter's largest gradient


def check_model(
    model,
    fields: dict[str, np.ndarray],
    rng: np.random.Generator,
    batch_size: int = 8,
    eps: float = 1e-6,
    max_entries: int = 24,
) -> list[ParamCheck]:
    """Central differences against the compiled backward pass of ``model`` (a ``specgrad.model.build.Model``) on the
    first ``batch_size`` rows of ``fields``, per parameter, at parameters drawn from the model's initializers
    and nudged off exact zeros.

    Each parameter's entries (all of them, or ``max_entries`` chosen at random plus its largest-gradient one)
    are perturbed by +-eps (scaled by the entry's size); the error is the worst |analytic - numeric| divided by
    the parameter's largest gradient magnitude (at least 1e-3 of the model's largest), so entries with tiny
    gradients are judged on the right scale.
    """

    feeds = []
    for name, node in model.inputs.items():
        if name not in fields:
            raise ValueError(f"the data has no field '{name}' (it has {', '.join(sorted(fields))})")
        value = np.asarray(fields[name])[:batch_size]
        feeds.append(value.astype(node.dtype) if value.dtype.kind == "f" else value)
    # At a generic point: initializers put biases at exactly 0, and on data with exact zeros (blank pixels, a
    # spiral's centre) a relu then sits on its kink, where central differences measure half a slope.
    # (np.asarray: numpy arithmetic on a 0-d array gives a scalar, and a parameter stays an array of its shape)
    params = {
        name: np.asarray(p + 0.01 * rng.standard_normal(p.shape).astype(p.dtype))
        for name, p in init_params(model, rng).items()
    }
    # train mode, as the gradient is used: first model state (batch statistics), one fixed dropout mask
    extra = [*init_state(model).values(), *([batch_key(0, 0)] if model.rng is not None else [])]
    names = list(params)
    loss_and_grads, loss_only = model.plan([model.loss, *model.grads]), model.plan([model.loss])
    _, *analytic = loss_and_grads(*feeds, *params.values(), *extra)

    def loss_at(name, index, value):
        trial = dict(params)
        trial[name] = params[name].copy()
        trial[name][index] = value
        return float(loss_only(*feeds, *trial.values(), *extra)[0])

    measured = []
    for name, grad in zip(names, analytic):
        p = params[name]
        grad = np.broadcast_to(np.asarray(grad, np.float64), p.shape)
        flat = np.arange(p.size)
        if p.size > max_entries:
            flat = np.union1d(rng.choice(p.size, max_entries, replace=False), [np.argmax(np.abs(grad))])
        worst_diff, scale = 0.0, 1e-12
        for i in flat:
            index = np.unravel_index(i, p.shape)
            h = eps * max(1.0, abs(float(p[index])))
            numeric = (loss_at(name, index, p[index] + h) - loss_at(name, index, p[index] - h)) / (2 * h)
            worst_diff = max(worst_diff, abs(float(grad[index]) - numeric))
            scale = max(scale, abs(float(grad[index])), abs(numeric))
        measured.append((name, tuple(p.shape), len(flat), worst_diff, scale))
    # A parameter whose gradient is zero in exact arithmetic (a key bias under softmax, a bias before
    # batchnorm) would be judged on rounding noise alone: judge it against a thousandth of the model's
    # largest gradient instead.
    floor = 1e-3 * max((m[4] for m in measured), default=1.0)
    return [ParamCheck(name, shape, n, diff / max(scale, floor)) for name, shape, n, diff, scale in measured]


def check_spec(spec, batch_size: int = 8, eps: float = 1e-6, max_entries: int = 24) -> list[ParamCheck]:
    """``check_model`` on a loaded spec's model, with the first rows of its training data as training sees
    them (paths relative to the spec, split, standardized) and parameters drawn as training draws them."""

    fields = prepare_data(spec).splits["train"]
    return check_model(spec.model, fields, stream(spec.settings.seed, INIT), batch_size, eps, max_entries)
