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
            sk.top_k_accuracy_score(LABELS, LOGITS, k=k, labels=range(5)), abs=0
        )
    assert metric("log_loss")(LOGITS, LABELS) == pytest.approx(
        sk.log_loss(LABELS, softmax(LOGITS), labels=range(5)), rel=1e-12
    )


def test_top_k_accuracy_breaks_ties_as_scikit_learn():
    # tied logits: scikit-learn ranks the higher class first (a stable ascending sort, reversed)
    tied = np.array([[1.0, 1.0, 1.0, 0.0], [2.0, 5.0, 5.0, 5.0], [0.0, 0.0, 3.0, 3.0], [4.0, 4.0, 4.0, 4.0]])
    labels = np.array([0, 1, 2, 3])
    for k in (1, 2, 3, 4):
        assert metric("top_k_accuracy", k=k)(tied, labels) == sk.top_k_accuracy_score(
            labels, tied, k=k, labels=range(4)
        )


def test_a_binary_logit_of_zero_is_a_negative_prediction():
    """scikit-learn's rule for a decision function: positive where it is > 0."""
    logits, targets = np.array([0.0, 0.0, -1.0, 2.0]), np.array([0, 1, 0, 1])
    assert metric("accuracy")(logits, targets) == sk.accuracy_score(targets, logits > 0) == 0.75


def test_binary_metrics_read_one_logit_per_sample():
    assert metric("accuracy")(SCORES, BINARY) == pytest.approx(sk.accuracy_score(BINARY, SCORES > 0), abs=0)
    assert metric("log_loss")(SCORES, BINARY) == pytest.approx(
        sk.log_loss(BINARY, 1 / (1 + np.exp(-SCORES))), rel=1e-12
    )


def test_regression_metrics_match_scikit_learn():
    assert metric("mse")(PRED, TARGET) == pytest.approx(sk.mean_squared_error(TARGET, PRED), rel=1e-14)
    assert metric("mae")(PRED, TARGET) == pytest.approx(sk.mean_absolute_error(TARGET, PRED), rel=1e-14)
    assert metric("r2")(PRED, TARGET) == pytest.approx(sk.r2_score(TARGET, PRED), rel=1e-12)


def test_log_loss_is_finite_for_confident_logits():
    z = np.array([[1000.0, -1000.0], [-1000.0, 1000.0]])
    assert metric("log_loss")(z, np.array([0, 1])) == 0.0
    assert metric("log_loss")(z, np.array([1, 1])) == pytest.approx(1000.0)


# several outputs per sample: regression [N, 3], 0/1 multi-label [N, 4], multi-class per output [N, 3, 5]
Y3 = RNG.standard_normal((150, 3)) * [1.0, 10.0, 0.1] + [0.0, 100.0, -5.0]
P3 = Y3 + RNG.standard_normal((150, 3)) * [0.5, 3.0, 0.2]
MULTILABEL, MULTILABEL_SCORES = RNG.integers(0, 2, (150, 4)), RNG.standard_normal((150, 4))
SEQ_LABELS, SEQ_LOGITS = RNG.integers(0, 5, (150, 3)), 2 * RNG.standard_normal((150, 3, 5))
TEN_LABELS, TEN_LOGITS = RNG.integers(0, 10, 150), RNG.standard_normal((150, 10))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


# every registered metric, against scikit-learn on multi-output / multi-class data (prediction, target, oracle)
ORACLES = {
    "mse": [(P3, Y3, sk.mean_squared_error(Y3, P3))],
    "mae": [(P3, Y3, sk.mean_absolute_error(Y3, P3))],
    "r2": [
        (P3, Y3, sk.r2_score(Y3, P3)),
        (np.broadcast_to(Y3.mean(0), Y3.shape), Y3, sk.r2_score(Y3, np.broadcast_to(Y3.mean(0), Y3.shape))),
        (P3.reshape(150, 3, 1), Y3.reshape(150, 3, 1), sk.r2_score(Y3, P3)),
    ],
    "accuracy": [
        (MULTILABEL_SCORES, MULTILABEL, sk.accuracy_score(MULTILABEL, MULTILABEL_SCORES > 0)),
        (LOGITS, LABELS, sk.accuracy_score(LABELS, LOGITS.argmax(1))),
        (SEQ_LOGITS[:, :1], SEQ_LABELS[:, :1], sk.accuracy_score(SEQ_LABELS[:, 0], SEQ_LOGITS[:, 0].argmax(1))),
    ],
    "top_k_accuracy": [
        (
            TEN_LOGITS[:, None],
            TEN_LABELS[:, None],  # the default k = 5 of 10 classes
            sk.top_k_accuracy_score(TEN_LABELS, TEN_LOGITS, k=5, labels=range(10)),
        )
    ],
    "log_loss": [
        (
            MULTILABEL_SCORES,
            MULTILABEL,
            np.mean([sk.log_loss(MULTILABEL[:, j], sigmoid(MULTILABEL_SCORES[:, j])) for j in range(4)]),
        ),
        (
            SEQ_LOGITS,
            SEQ_LABELS,
            np.mean([sk.log_loss(SEQ_LABELS[:, t], softmax(SEQ_LOGITS[:, t]), labels=range(5)) for t in range(3)]),
        ),
    ],
}


def test_every_metric_has_a_multi_output_oracle():
    assert set(ORACLES) == set(METRICS.names())


@pytest.mark.parametrize(
    "name,pred,target,expected", [(n, p, t, e) for n, cases in ORACLES.items() for p, t, e in cases]
)
def test_metrics_on_several_outputs_match_scikit_learn(name, pred, target, expected):
    assert metric(name)(pred, target) == pytest.approx(expected, rel=1e-12, abs=1e-15)


def test_r2_of_each_columns_mean_is_zero():
    """The uniform average of per-output R^2, not one pooled mean: columns on different scales would
    otherwise make predicting each column's mean look nearly perfect."""
    assert metric("r2")(np.broadcast_to(Y3.mean(0), Y3.shape), Y3) == pytest.approx(0.0, abs=1e-12)


def test_r2_of_a_constant_output_follows_scikit_learn():
    y = np.stack([np.ones(10), np.arange(10.0)], axis=1)
    exact, off = y.copy(), y + [[0.5, 0.0]]
    assert metric("r2")(exact, y) == sk.r2_score(y, exact) == 1.0
    assert metric("r2")(off, y) == sk.r2_score(y, off) == 0.5


def test_multi_output_classification_counts_a_sample_when_every_output_is_right():
    guess = SEQ_LOGITS.argmax(-1)
    subset = np.mean(np.all(guess == SEQ_LABELS, axis=1))
    # scikit-learn does not score multiclass-multioutput; its multilabel rule (subset accuracy) applied to
    # "output t is right" indicators is the same definition
    assert (
        metric("accuracy")(SEQ_LOGITS, SEQ_LABELS)
        == sk.accuracy_score(np.ones_like(SEQ_LABELS), (guess == SEQ_LABELS).astype(int))
        == subset
    )
    assert metric("top_k_accuracy", k=1)(SEQ_LOGITS, SEQ_LABELS) == metric("accuracy")(SEQ_LOGITS, SEQ_LABELS)
    top2 = np.argsort(-SEQ_LOGITS, axis=-1)[..., :2]  # no ties in these logits
    assert metric("top_k_accuracy", k=2)(SEQ_LOGITS, SEQ_LABELS) == np.mean(
        np.all(np.any(top2 == SEQ_LABELS[..., None], -1), axis=1)
    )
