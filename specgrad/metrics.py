"""Metrics declared in a spec (``metrics: [mse, r2]``), computed from predictions and targets in numpy."""
from __future__ import annotations

import numpy as np

from specgrad.components import Registry, normalize

METRICS = Registry("metric")


@METRICS.register("mse")
def mse():
    """mean squared error"""
    return lambda pred, target: float(np.mean((pred - target) ** 2))


@METRICS.register("mae")
def mae():
    """mean absolute error"""
    return lambda pred, target: float(np.mean(np.abs(pred - target)))


@METRICS.register("r2")
def r2():
    """coefficient of determination, 1 - SS_res / SS_tot"""
    return lambda pred, target: float(1 - np.sum((pred - target) ** 2) / np.sum((target - np.mean(target)) ** 2))


def metric_name(settings) -> str:
    return normalize(settings)["type"]


def evaluate(model, params: dict, fields: dict, metrics=(), state: dict | None = None) -> dict[str, float]:
    """The loss (as the spec defines it, over all of ``fields``) and each metric, for given parameter values
    and model state (default: its initial value), in eval mode (no dropout, batchnorm's running statistics)."""
    from specgrad.graph.build import init_state
    forward = model.eval
    plan = forward.plan([forward.loss, forward.prediction])
    loss, pred = plan(*forward.feed(fields, params, init_state(model) if state is None else state))
    target = fields[model.target]
    out = {"loss": float(loss)}
    for m in metrics:
        out[metric_name(m)] = METRICS.create(normalize(m))(np.asarray(pred), target)
    return out
