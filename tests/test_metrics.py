"""Metrics against scikit-learn's implementations (an independent reference)."""
import numpy as np
import pytest
from sklearn import metrics as sk

from specgrad.model.metrics import METRICS

RNG = np.random.default_rng(1)
LOGITS, LABELS = 2 * RNG.standard_normal((200, 5)), RNG.integers(0, 5, 200)
SCORES, BINARY = RNG.standard_normal(200), RNG.integers(0, 2, 200)
PRED, TARGET = RNG.standard_normal(200), RNG.standard_normal(200)


def metric(name, **settings):
    return METRICS.create({"type": name, **settings}).compute


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_classification_metrics_match_scikit_learn():
    assert metric("accuracy")(LOGITS, LABELS) == pytest.approx(sk.accuracy_score(LABELS, LOGITS.argmax(1)), abs=0)
    for k in (1, 2, 3):
        assert metric("top_k_accuracy", k=k)(LOGITS, LABELS) == pytest.approx(
            sk.top_k_accuracy_score(LABELS, LOGITS, k=k, labels=range(5)), abs=0)
    assert metric("log_loss")(LOGITS, LABELS) == pytest.approx(sk.log_loss(LABELS, softmax(LOGITS), labels=range(5)),
                                                               rel=1e-12)


def test_binary_metrics_read_one_logit_per_sample():
    assert metric("accuracy")(SCORES, BINARY) == pytest.approx(sk.accuracy_score(BINARY, SCORES > 0), abs=0)
    assert metric("log_loss")(SCORES, BINARY) == pytest.approx(sk.log_loss(BINARY, 1 / (1 + np.exp(-SCORES))),
                                                               rel=1e-12)


def test_regression_metrics_match_scikit_learn():
    assert metric("mse")(PRED, TARGET) == pytest.approx(sk.mean_squared_error(TARGET, PRED), rel=1e-14)
    assert metric("mae")(PRED, TARGET) == pytest.approx(sk.mean_absolute_error(TARGET, PRED), rel=1e-14)
    assert metric("r2")(PRED, TARGET) == pytest.approx(sk.r2_score(TARGET, PRED), rel=1e-12)


def test_log_loss_is_finite_for_confident_logits():
    z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    assert metric("log_loss")(z, np.array([0, 1])) == 0.0
    assert metric("log_loss")(z, np.array([1, 1])) == pytest.approx(1000.0)
