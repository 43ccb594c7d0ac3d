"""Data sources: each turns its spec settings and a seed into named arrays with one row per sample.
A source declares the fields it makes and their dtype kind (``fields=``: a dict, or a function of its
settings), so `validate` can check the model's inputs and the loss target before any data is read."""
from __future__ import annotations

import numpy as np

from specgrad.components import FRACTION, NON_NEGATIVE, Registry

SPLIT = {"type": "object", "additionalProperties": False, "properties": {"val": FRACTION, "test": FRACTION},
         "description": "fractions of the rows held out for validation and test (seeded)"}
SOURCES = Registry("data source", tag="source", common={
    "seed": {"type": "integer", "minimum": 0, "description": "seed of the data (default: the spec's seed)"},
    "split": SPLIT,
})
SPLIT_STREAM = 3


def evaluate_formula(text: str, **arrays: np.ndarray) -> np.ndarray:
    """Evaluate a formula such as ``sin(3*x)`` on arrays, through the same safe parser and ops as models."""
    from specgrad.graph.formula import build_formula
    from specgrad.graph.ir import Graph
    from specgrad.graph.plan import Plan

    graph = Graph()
    scope = {name: graph.input(name, a.shape, a.dtype) for name, a in arrays.items()}
    out = build_formula(text, graph, scope)
    (value,) = Plan([out], list(scope.values()))(*arrays.values())
    return np.broadcast_to(value, np.broadcast_shapes(*(a.shape for a in arrays.values()))).copy()


@SOURCES.register("synthetic", {
    "function": {"type": "string", "description": "formula of x, e.g. sin(3*x)"},
    "x": {"type": "object", "additionalProperties": False, "required": ["low", "high"],
          "properties": {"low": {"type": "number"}, "high": {"type": "number"}}},
    "n": {"type": "integer", "minimum": 1},
    "noise": NON_NEGATIVE,
}, required=["function", "n"], fields={"x": "float", "y": "float"})
def synthetic(function, n, x=None, noise=0.0, seed=0):
    """y = function(x) + noise * N(0, 1) at x ~ U(low, high): draws x, then the noise, from default_rng(seed)"""
    bounds = x or {"low": -1.0, "high": 1.0}
    rng = np.random.default_rng(seed)
    xs = rng.uniform(bounds["low"], bounds["high"], n)
    y = evaluate_formula(function, x=xs)
    if noise:
        y = y + noise * rng.standard_normal(n)
    return {"x": xs, "y": y}


def load_data(settings: dict, seed: int) -> dict[str, np.ndarray]:
    """All rows of the source, as named arrays."""
    seed = settings.get("seed", seed)
    return SOURCES.create(settings, seed=seed)


def load_splits(settings: dict, seed: int) -> dict[str, dict[str, np.ndarray]]:
    """``{"train": fields, "val": fields, "test": fields}``; val and test only when ``split`` asks for them.
    Rows are assigned by a permutation drawn from the data seed, so the split is reproducible."""
    fields = load_data(settings, seed)
    split = settings.get("split") or {}
    if not split:
        return {"train": fields}
    n = len(next(iter(fields.values())))
    order = np.random.default_rng(np.random.SeedSequence(settings.get("seed", seed), spawn_key=(SPLIT_STREAM,))).permutation(n)
    n_val, n_test = int(round(split.get("val", 0) * n)), int(round(split.get("test", 0) * n))
    parts = {"test": order[:n_test], "val": order[n_test:n_test + n_val], "train": order[n_test + n_val:]}
    return {name: {k: v[np.sort(idx)] for k, v in fields.items()} for name, idx in parts.items()
            if name == "train" or len(idx)}
