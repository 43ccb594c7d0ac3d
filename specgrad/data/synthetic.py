"""Synthetic data, drawn from ``default_rng(seed)`` so the same settings give the same bits.

Classification sources return ``x`` (features, float) and ``y`` (integer class labels, int64);
regression sources return a float ``y``.
"""

from __future__ import annotations

import numpy as np

from specgrad.base.components import NON_NEGATIVE, POSITIVE
from specgrad.data.registry import SOURCES, DataError, points
from specgrad.engine.ir import Graph
from specgrad.engine.plan import Plan
from specgrad.model.formula import FormulaError, build_formula

N = {"type": "integer", "minimum": 1, "description": "number of samples"}
CLASSES = {"type": "integer", "minimum": 2, "description": "number of classes"}


def evaluate_formula(text: str, **arrays: np.ndarray) -> np.ndarray:
    """Evaluate a formula such as ``sin(3*x)`` on arrays, through the same safe parser and ops as models.
    Values outside a function's domain become NaN, which the data checks then report with their row."""

    graph = Graph()
    scope = {name: graph.input(name, a.shape, a.dtype) for name, a in arrays.items()}
    try:
        out = build_formula(text, graph, scope)
    except FormulaError as e:
        raise DataError(f"function: {e}", ("function",)) from None
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    if np.broadcast_shapes(out.shape, shape) != shape:  # one_hot(1, 3): several values for each x
        raise DataError(f"function: gives values of shape {list(out.shape)}, not one value per x", ("function",))
    with np.errstate(all="ignore"):
        (value,) = Plan([out], list(scope.values()))(*arrays.values())
    return np.broadcast_to(value, shape).astype(np.float64)  # real values, as declared: "1" is 1.0, not 1


def check_synthetic(settings: dict) -> list[tuple[tuple, str]]:
    """What ``validate`` can tell before any data is drawn: the formula parses and uses only ``x``, and the
    interval of x is not empty."""
    problems = []
    try:
        evaluate_formula(settings["function"], x=np.zeros(1))
    except DataError as e:
        problems.append((e.key, str(e)))
    bounds = settings.get("x") or {}
    if "low" in bounds and "high" in bounds and not bounds["low"] < bounds["high"]:
        problems.append((("x", "low"), f"x.low must be below x.high, got {bounds['low']} and {bounds['high']}"))
    return problems


@SOURCES.register(
    "synthetic",
    {
        "function": {"type": "string", "description": "formula of x, e.g. sin(3*x)"},
        "x": {
            "type": "object",
            "additionalProperties": False,
            "required": ["low", "high"],
            "properties": {"low": {"type": "number"}, "high": {"type": "number"}},
        },
        "n": N,
        "noise": NON_NEGATIVE,
    },
    required=["function", "n"],
    fields=points(),
    check=check_synthetic,
)
def synthetic(function, n, x=None, noise=0.0, seed=0):
    """y = function(x) + noise * N(0, 1) at x ~ U(low, high): draws x, then the noise, from default_rng(seed)"""
    bounds = x or {"low": -1.0, "high": 1.0}
    rng = np.random.default_rng(seed)
    xs = rng.uniform(bounds["low"], bounds["high"], n)
    y = evaluate_formula(function, x=xs)
    if noise:
        y = y + noise * rng.standard_normal(n)
    return {"x": xs, "y": y}


def check_classes(settings: dict) -> list[tuple[tuple, str]]:
    """Every class has a sample: ``classes`` at most ``n`` (its default counted)."""
    if settings["classes"] > settings["n"]:
        return [(("classes",), f"{settings['classes']} classes need at least as many samples, got n: {settings['n']}")]
    return []


def _class_sizes(n: int, classes: int) -> list[int]:
    """n samples shared out as evenly as possible, the first classes taking the remainder."""
    return [len(part) for part in np.array_split(np.arange(n), classes)]


def _labels(sizes: list[int]) -> np.ndarray:
    return np.repeat(np.arange(len(sizes), dtype=np.int64), sizes)


@SOURCES.register(
    "spirals",
    {"n": N, "classes": CLASSES, "turns": POSITIVE, "noise": NON_NEGATIVE},
    required=["n"],
    fields=lambda settings: points((2,), settings["classes"]),
    check=check_classes,
)
def spirals(n, classes=3, turns=0.75, noise=0.2, seed=0):
    """interleaved 2-d spiral arms, one per class: not separable by any linear model"""
    rng = np.random.default_rng(seed)
    sizes = _class_sizes(n, classes)
    xs = []
    for k, m in enumerate(sizes):
        radius = np.linspace(0.0, 1.0, m)
        angle = 2 * np.pi * (turns * radius + k / classes) + noise * rng.standard_normal(m)
        xs.append(np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1))
    return {"x": np.concatenate(xs), "y": _labels(sizes)}


@SOURCES.register("moons", {"n": N, "noise": NON_NEGATIVE}, required=["n"], fields=points((2,), 2))
def moons(n, noise=0.1, seed=0):
    """two interleaving half circles in 2-d, plus Gaussian noise (two classes)"""
    rng = np.random.default_rng(seed)
    sizes = _class_sizes(n, 2)
    outer, inner = (np.linspace(0, np.pi, m) for m in sizes)
    x = np.concatenate(
        [np.stack([np.cos(outer), np.sin(outer)], axis=1), np.stack([1 - np.cos(inner), 0.5 - np.sin(inner)], axis=1)]
    )
    return {"x": x + noise * rng.standard_normal(x.shape), "y": _labels(sizes)}


@SOURCES.register(
    "blobs",
    {"n": N, "classes": CLASSES, "features": {"type": "integer", "minimum": 1}, "spread": POSITIVE, "box": POSITIVE},
    required=["n"],
    fields=lambda settings: points((settings["features"],), settings["classes"]),
    check=check_classes,
)
def blobs(n, classes=3, features=2, spread=1.0, box=10.0, seed=0):
    """Gaussian clusters (std ``spread``) around centres drawn uniformly in [-box, box]^features"""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-box, box, (classes, features))
    sizes = _class_sizes(n, classes)
    y = _labels(sizes)
    return {"x": centres[y] + spread * rng.standard_normal((n, features)), "y": y}


@SOURCES.register(
    "adding",
    {"n": N, "length": {"type": "integer", "minimum": 2}},
    required=["n", "length"],
    fields=lambda settings: points((settings["length"], 2)),
)
def adding(n, length, seed=0):
    """the adding problem (Hochreiter & Schmidhuber, 1997): x[t] = (value ~ U(0, 1), marker); two steps are
    marked and y is the sum of their values, so a model must remember values across the sequence"""
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, (n, length))
    marked = np.argsort(rng.random((n, length)), axis=1)[:, :2]  # two distinct steps per sequence
    markers = np.zeros((n, length))
    np.put_along_axis(markers, marked, 1.0, axis=1)
    return {"x": np.stack([values, markers], axis=2), "y": (values * markers).sum(axis=1)}
