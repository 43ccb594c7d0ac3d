"""Losses: graph builders from (prediction, target) nodes to a scalar loss node, plus penalties on parameters.

Each loss also declares the target it compares the prediction with (``Target``): its per-sample shape and
dtype given the prediction's, and what its values must be (real numbers, class labels, probabilities). The
model builder creates the target input from it, so ``validate`` knows a classifier's labels are integers,
and the data checks reject labels out of range before anything runs.

Classification losses take *logits* (unnormalised scores) and fold the softmax / sigmoid in, which is both
cheaper and numerically stable.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from specgrad.base.components import (
    FRACTION,
    NAME,
    NON_NEGATIVE,
    POSITIVE,
    Registry,
    normalize,
)
from specgrad.engine.ops import REGISTRY

PENALTY = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "params", "weight"],
    "properties": {
        "type": {"enum": ["l1", "l2"], "description": "l1: weight * sum|p|; l2: weight * sum p^2"},
        "params": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1},
            "description": "parameter names or glob patterns, e.g. ['*.weight']",
        },
        "weight": NON_NEGATIVE,
    },
}

# An entry's ``batch`` meta says how the loss combines a batch's rows: "mean" (the default) or "sum". A
# data-parallel run weighs each process's share of the batch by it (specgrad/run/distributed.py).
# ``target`` names the data field the prediction is compared with (default ``y``); ``penalties`` add
# weight decay on chosen parameters to the loss. An entry's ``target={"dtype": "float" | "int"}`` meta says
# what kind of field that must be, which `validate` checks against the fields a data source declares
# (binary_cross_entropy declares none: its 0/1 targets may come as integer labels or as floats).
DEFAULT_TARGET = "y"
"""The data field a loss compares the prediction with unless it names another (``loss.target``)."""

LOSSES = Registry(
    "loss",
    common={
        "target": {**NAME, "description": f"the data field the output is compared with (default {DEFAULT_TARGET})"},
        "penalties": {
            "type": "array",
            "items": PENALTY,
            "description": "l1 / l2 terms on parameters added to the loss, e.g. "
            "[{type: l2, params: ['*.weight'], weight: 1.0e-4}]",
        },
    },
)
REAL = {"dtype": "float"}


class LossError(ValueError):
    """A loss that cannot be built as declared (a penalty matching no parameter, a misshapen prediction)."""


@dataclass(frozen=True)
class Target:
    """What a loss compares the prediction with, per sample."""

    shape: tuple  # with the batch dimension, like the prediction's
    dtype: np.dtype
    kind: str = "real"  # real | labels (integers in [0, classes)) | probabilities (in [0, 1])
    classes: int | None = None


def same_as_prediction(pred) -> Target:
    return Target(pred.shape, pred.dtype)


@dataclass(frozen=True)
class Loss:
    """A loss as a spec declares it: how it is built on the graph, the target it takes, how its predictions
    read (for predict), and the penalties added to it."""

    build: Callable  # (prediction, target) -> scalar node
    target_of: Callable = same_as_prediction  # prediction node -> Target
    decode: Callable | None = None  # prediction array -> named readings (DECODED: labels, probabilities)
    penalties: tuple = ()

    def __call__(self, pred, target):
        loss = self.build(pred, target)
        for penalty in self.penalties:
            loss = loss + penalty_term(pred.graph.params, penalty)
        return loss


DECODED = ("label", "probability")  # what a classifier's decode names, beside the output's own name


def make_loss(settings) -> Loss:
    """The loss a spec's ``loss`` value declares, penalties included."""
    settings = normalize(settings)
    return replace(LOSSES.create(settings), penalties=tuple(settings.get("penalties", ())))


def is_mean(settings) -> bool:
    """Whether the loss is a mean over a batch's rows (not a sum, as sse): how the rows of batches that are
    split (over processes) or combined (accumulated) weigh."""
    return LOSSES[normalize(settings)["type"]].meta.get("batch", "mean") == "mean"


def penalty_term(params: dict, penalty: dict):
    """weight * sum over the matched parameters of |p| (l1) or p^2 (l2)."""
    matched = [
        node
        for name, node in params.items()
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in penalty["params"])
    ]
    if not matched:
        raise LossError(
            f"{penalty['type']} penalty: no parameter matches {', '.join(penalty['params'])} "
            f"(parameters: {', '.join(params) or 'none'})"
        )
    graph = matched[0].graph
    each = "abs" if penalty["type"] == "l1" else "square"
    total = None
    for node in matched:
        term = graph.apply("sum", graph.apply(each, node))
        total = term if total is None else total + term
    return penalty["weight"] * total


# --------------------------------------------------------------------------------------------- regression
def _mean(node):
    return node.graph.apply("mean", node)


@LOSSES.register("sse", target=REAL, batch="sum")
def sse():
    """sum of squared errors, the article's loss: sum((y_hat - y) ** 2)"""
    return Loss(lambda pred, target: pred.graph.apply("sum", pred.graph.apply("square", pred - target)))


@LOSSES.register("mse", target=REAL)
def mse():
    """mean squared error: mean((y_hat - y) ** 2)"""
    return Loss(lambda pred, target: _mean(pred.graph.apply("square", pred - target)))


@LOSSES.register("mae", target=REAL)
def mae():
    """mean absolute error: mean(|y_hat - y|), robust to outliers"""
    return Loss(lambda pred, target: _mean(pred.graph.apply("abs", pred - target)))


@LOSSES.register("huber", {"delta": POSITIVE}, target=REAL)
def huber(delta=1.0):
    """mean Huber loss: quadratic for |error| <= delta, linear beyond (delta defaults to 1)"""

    def build(pred, target):
        graph = pred.graph
        size = graph.apply("abs", pred - target)
        inner = graph.apply("minimum", size, delta)  # the quadratic part, capped at delta
        return _mean(0.5 * graph.apply("square", inner) + delta * (size - inner))

    return Loss(build)


# ----------------------------------------------------------------------------------------- classification
def _labels_of_logits(pred) -> Target:
    if len(pred.shape) < 2:
        raise LossError(
            f"cross_entropy needs logits with a class axis last (e.g. [B, classes]), "
            f"got a prediction of shape [{', '.join(map(str, pred.shape))}]"
        )
    return Target(pred.shape[:-1], np.dtype(np.int64), "labels", pred.shape[-1])


@LOSSES.register("cross_entropy", {"label_smoothing": FRACTION}, target={"dtype": "int"})
def cross_entropy(label_smoothing=0.0):
    """mean softmax cross-entropy of logits [.., classes] against integer labels [..]; with label_smoothing e,
    the target puts 1 - e on the label and e spread evenly over all classes"""

    def build(logits, labels):
        graph = logits.graph
        loss = graph.apply("softmax_cross_entropy", logits, labels)  # mean of -log softmax(z)[label]
        if label_smoothing:
            # the uniform part: mean of -mean_c log softmax(z)_c = logsumexp(z) - mean_c z
            uniform = _mean(graph.apply("logsumexp", logits, axis=-1) - graph.apply("mean", logits, axis=-1))
            loss = (1 - label_smoothing) * loss + label_smoothing * uniform
        return loss

    def decode(logits):
        return {"label": np.argmax(logits, axis=-1), "probability": REGISTRY["softmax"].forward(logits)}

    return Loss(build, _labels_of_logits, decode)


@LOSSES.register("binary_cross_entropy")
def binary_cross_entropy():
    """mean binary cross-entropy of logits z against targets y in [0, 1]:
    -y log sigmoid(z) - (1 - y) log(1 - sigmoid(z)), computed without overflow"""

    def build(logits, target):
        return logits.graph.apply("sigmoid_binary_cross_entropy", logits, target)

    def decode(logits):
        return {"label": (logits > 0).astype(np.int64), "probability": 0.5 * (1 + np.tanh(logits / 2))}

    return Loss(build, lambda pred: Target(pred.shape, pred.dtype, "probabilities", 2), decode)
