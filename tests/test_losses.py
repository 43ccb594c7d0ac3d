"""Losses: values and gradients against HIPS autograd on the textbook formulas, target declarations, penalties."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import logsumexp

from specgrad.engine.autodiff import gradients
from specgrad.engine.ir import Graph
from specgrad.engine.plan import Plan
from specgrad.model.losses import LOSSES, LossError, make_loss
from specgrad.spec import SpecError, load_spec

RNG = np.random.default_rng(0)
PRED, TARGET = RNG.standard_normal((7, 3)), RNG.standard_normal((7, 3))
LOGITS, LABELS = 3 * RNG.standard_normal((7, 4)), RNG.integers(0, 4, 7)
BINARY = RNG.integers(0, 2, (7, 3)).astype(float)


def engine(settings, pred, target, params=None):
    """The loss and its gradient with respect to the prediction (and extra params), through the engine."""
    graph = Graph()
    p = graph.param("pred", pred.shape)
    extra = {name: graph.param(name, v.shape) for name, v in (params or {}).items()}
    loss_fn = make_loss(settings)
    declared = loss_fn.target_of(p)
    t = graph.input("y", declared.shape, declared.dtype)
    loss = loss_fn(p, t)
    wrt = [p, *extra.values()]
    value, *grads = Plan([loss, *gradients(loss, wrt)], [t, *wrt])(target, pred, *(params or {}).values())
    return float(value), grads


def huber(r, delta):
    a = anp.abs(r)
    return anp.mean(anp.where(a <= delta, 0.5 * r**2, delta * (a - 0.5 * delta)))


def cross_entropy(z, labels, eps=0.0):
    log_p = z - logsumexp(z, axis=-1, keepdims=True)
    smoothed = (1 - eps) * np.eye(z.shape[-1])[labels] + eps / z.shape[-1]
    return -anp.mean(anp.sum(smoothed * log_p, axis=-1))


def bce(z, y):
    p = 1 / (1 + anp.exp(-z))
    return -anp.mean(y * anp.log(p) + (1 - y) * anp.log(1 - p))


CASES = [
    ("sse", PRED, TARGET, lambda p, t: anp.sum((p - t) ** 2)),
    ("mse", PRED, TARGET, lambda p, t: anp.mean((p - t) ** 2)),
    ("mae", PRED, TARGET, lambda p, t: anp.mean(anp.abs(p - t))),
    ({"type": "huber", "delta": 0.5}, PRED, TARGET, lambda p, t: huber(p - t, 0.5)),
    ("huber", PRED, TARGET, lambda p, t: huber(p - t, 1.0)),
    ("cross_entropy", LOGITS, LABELS, cross_entropy),
    ({"type": "cross_entropy", "label_smoothing": 0.1}, LOGITS, LABELS, lambda z, y: cross_entropy(z, y, 0.1)),
    ("binary_cross_entropy", PRED, BINARY, bce),
]


@pytest.mark.parametrize("settings, pred, target, reference", CASES, ids=lambda c: str(c)[:40])
def test_loss_value_and_gradient_match_autograd(settings, pred, target, reference):
    value, (grad,) = engine(settings, pred, target)
    assert value == pytest.approx(float(reference(pred, target)), rel=1e-12)
    np.testing.assert_allclose(grad, autograd.grad(reference)(pred, target), rtol=1e-10, atol=1e-14)


def test_classification_losses_declare_their_targets():
    graph = Graph()
    logits = graph.input("z", ("B", 10))
    labels = make_loss("cross_entropy").target_of(logits)
    assert (labels.shape, labels.dtype, labels.kind, labels.classes) == (("B",), np.int64, "labels", 10)
    assert LOSSES["cross_entropy"].meta["target"]["dtype"] == "int"  # what validation reads, without a graph
    probs = make_loss("binary_cross_entropy").target_of(logits)
    assert (probs.shape, probs.dtype, probs.kind) == (("B", 10), np.float64, "probabilities")
    assert make_loss("mse").target_of(logits).kind == "real"
    with pytest.raises(LossError, match="class axis"):
        make_loss("cross_entropy").target_of(graph.input("s", ("B",)))


def test_penalties_add_weight_decay_on_matched_params():
    w = {
        "h.weight": RNG.standard_normal((3, 3)),
        "h.bias": RNG.standard_normal(3),
        "out.weight": RNG.standard_normal(3),
    }
    settings = {
        "type": "mse",
        "penalties": [
            {"type": "l2", "params": ["*.weight"], "weight": 0.01},
            {"type": "l1", "params": ["h.bias"], "weight": 0.1},
        ],
    }

    def reference(p, hw, hb, ow):
        return anp.mean((p - TARGET) ** 2) + 0.01 * (anp.sum(hw**2) + anp.sum(ow**2)) + 0.1 * anp.sum(anp.abs(hb))

    value, grads = engine(settings, PRED, TARGET, w)
    assert value == pytest.approx(float(reference(PRED, *w.values())), rel=1e-12)
    for i, g in enumerate(grads):
        np.testing.assert_allclose(g, autograd.grad(reference, i)(PRED, *w.values()), rtol=1e-10, atol=1e-14)


def test_a_penalty_matching_nothing_is_a_located_error(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("""\
specgrad: 1
name: s
data: {source: synthetic, function: x, n: 10}
model: {inputs: {x: []}, params: {k: {shape: []}}, nodes: [{y_hat: k * x}], output: y_hat}
loss: {type: mse, penalties: [{type: l2, params: ["*.weight"], weight: 0.1}]}
optimizer: {type: sgd, lr: 0.1}
train: {steps: 1}
""")
    with pytest.raises(SpecError) as e:
        load_spec(spec)
    assert str(e.value) == (f"{spec}:5:7: error: loss: l2 penalty: no parameter matches *.weight (parameters: k)")
