"""Metrics declared in a spec (``metrics: [accuracy, {type: top_k_accuracy, k: 3}, r2]``), computed in numpy
from the model's predictions and the targets on each split, at the end of a run and by ``specgrad eval``.

Classifiers predict logits, as the classification losses expect: [.., classes] scores against integer
labels (cross_entropy), or one score per output against 0/1 targets (binary_cross_entropy).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from specgrad.base.components import Registry, normalize
from specgrad.engine.ops import REGISTRY
from specgrad.model.build import init_state

METRICS = Registry("metric")
CLASSIFICATION = ("labels", "probabilities")  # target kinds of the classification losses


@dataclass(frozen=True)
class Metric:
    compute: Callable  # (prediction, target) arrays -> float
    targets: tuple  # the loss target kinds it makes sense for: "real", "labels", "probabilities"


def _multiclass(pred: np.ndarray, target: np.ndarray) -> bool:
    return pred.ndim == target.ndim + 1


def _outputs(values: np.ndarray) -> np.ndarray:
    """[samples, outputs]: every axis after the batch is an output of its own (one column for [samples])."""
    return values.reshape(len(values), -1)


@METRICS.register("mse")
def mse():
    """mean squared error (regression: a classifier's logits are not its labels)"""
    return Metric(lambda pred, target: float(np.mean((pred - target) ** 2)), ("real",))


@METRICS.register("mae")
def mae():
    """mean absolute error (regression)"""
    return Metric(lambda pred, target: float(np.mean(np.abs(pred - target))), ("real",))


@METRICS.register("r2")
def r2():
    """coefficient of determination 1 - SS_res / SS_tot of each output, averaged over the outputs

    As scikit-learn's r2_score by default: a constant output scores 1.0 if predicted exactly, else 0.0."""

    def compute(pred, target):
        pred, target = _outputs(pred), _outputs(target)
        ss_res = np.sum((target - pred) ** 2, axis=0)
        ss_tot = np.sum((target - np.mean(target, axis=0)) ** 2, axis=0)
        exact = np.where(ss_res == 0, 1.0, 0.0)  # a constant output: no variance to explain
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(ss_tot == 0, exact, 1 - ss_res / ss_tot)
        return float(np.mean(scores))

    return Metric(compute, ("real",))


@METRICS.register("accuracy")
def accuracy():
    """fraction of samples whose predicted class (largest logit; logit > 0 for one score) is right in every output

    A sample with several outputs counts when all are right: scikit-learn's accuracy_score (subset accuracy)."""

    def compute(pred, target):
        guess = np.argmax(pred, axis=-1) if _multiclass(pred, target) else (pred > 0)
        return float(np.mean(np.all(_outputs(guess == target), axis=1)))

    return Metric(compute, CLASSIFICATION)


@METRICS.register("top_k_accuracy", {"k": {"type": "integer", "minimum": 1}})
def top_k_accuracy(k=5):
    """fraction of samples whose label is among the k largest logits in every output

    As accuracy, a sample with several outputs counts when all are right. Among tied logits the higher class
    ranks first, as in scikit-learn's top_k_accuracy_score (accuracy takes the first of tied maxima, numpy's
    argmax: the two differ at k = 1 only on ties)."""

    def compute(pred, target):
        top = np.argsort(pred, axis=-1, kind="stable")[..., ::-1][..., :k]
        return float(np.mean(np.all(_outputs(np.any(top == target[..., None], axis=-1)), axis=1)))

    return Metric(compute, ("labels",))


@METRICS.register("log_loss")
def log_loss():
    """mean negative log-likelihood of the targets under the predicted (softmax or sigmoid) probabilities

    The mean over samples and outputs: the average of scikit-learn's log_loss of each output, computed
    exactly from the logits (scikit-learn clips probabilities at machine epsilon, so the two differ where a
    wrong class wins by a logit margin beyond ~36: there specgrad's is the larger, true value)."""

    def compute(pred, target):
        if _multiclass(pred, target):
            log_p = REGISTRY["log_softmax"].forward(pred)
            return float(-np.mean(np.take_along_axis(log_p, target[..., None], axis=-1)[..., 0]))
        return float(np.mean(np.logaddexp(0, pred) - target * pred))

    return Metric(compute, CLASSIFICATION)


def metric_name(settings) -> str:
    return normalize(settings)["type"]


def check_metrics(declared, target_kind: str) -> list[tuple[int, str]]:
    """(index, message) for each declared metric that does not fit the loss's kind of target."""
    words = {"real": "real values", "labels": "class labels", "probabilities": "0/1 targets"}
    return [
        (i, f"metric '{metric_name(m)}' does not apply to this loss, whose targets are {words[target_kind]}")
        for i, m in enumerate(declared)
        if target_kind not in METRICS.create(normalize(m)).targets
    ]


def evaluate(model, params: dict, fields: dict, metrics=(), state: dict | None = None) -> dict[str, float]:
    """The loss (as the spec defines it, over all of ``fields``) and each metric, for given parameter values
    and model state (default: its initial value), in eval mode (no dropout, batchnorm's running statistics)."""
    forward = model.eval
    plan = forward.plan([forward.loss, forward.prediction])
    loss, pred = plan(*forward.feed(fields, params, init_state(model) if state is None else state))
    target = fields[model.target]
    out = {"loss": float(loss)}
    for m in metrics:
        out[metric_name(m)] = METRICS.create(normalize(m)).compute(np.asarray(pred), target)
    return out
