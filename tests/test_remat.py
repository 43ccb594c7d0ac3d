"""Gradient checkpointing: the same gradients, bit for bit, with much less memory held for the backward pass."""

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from specgrad.engine.autodiff import gradients
from specgrad.engine.ir import Graph
from specgrad.engine.plan import Plan

ROOT = Path(__file__).resolve().parents[1]


def deep_mlp(depth, width, remat):
    """tanh MLP of ``depth`` layers, loss = mean squared output; returns (plan, weights, biases)."""
    g = Graph()
    x = g.input("x", ("B", width))
    ws = [g.param(f"w{i}", (width, width)) for i in range(depth)]
    bs = [g.param(f"b{i}", (width,)) for i in range(depth)]
    h = x
    for w, b in zip(ws, bs):
        h = g.apply("tanh", h @ w + b)
    loss = g.apply("mean", g.apply("square", h))
    grads = gradients(loss, ws + bs, remat=remat)
    return Plan([loss, *grads], [x, *ws, *bs]), len(g.nodes)


def values(depth, width, batch, seed=0):
    rng = np.random.default_rng(seed)
    return [
        rng.standard_normal((batch, width)),
        *[rng.standard_normal((width, width)) / np.sqrt(width) for _ in range(depth)],
        *[rng.standard_normal(width) * 0.1 for _ in range(depth)],
    ]


def test_checkpointed_gradients_are_bitwise_the_plain_ones():
    vals = values(12, 16, 8)
    plain, n_plain = deep_mlp(12, 16, remat=False)
    remat, n_remat = deep_mlp(12, 16, remat=True)
    assert n_remat > n_plain  # the recomputation is really there
    for _ in range(2):  # interpreted first call, then the specialized plan
        for a, b in zip(plain(*vals), remat(*vals)):
            assert np.array_equal(a, b)


def test_checkpointed_gradients_match_autograd():
    autograd = pytest.importorskip("autograd")
    anp = autograd.numpy
    depth, vals = 6, values(6, 5, 4, seed=1)
    remat, _ = deep_mlp(depth, 5, remat=True)
    _, *got = remat(*vals)

    def loss(params):
        h = vals[0]
        for w, b in zip(params[:depth], params[depth:]):
            h = anp.tanh(anp.dot(h, w) + b)
        return anp.mean(h**2)

    expected = autograd.grad(loss)(vals[1:])
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-14)


def step_memory(plan, vals):
    """Bytes a training step needs: the plan's preallocated buffers plus the peak of a call on them."""
    plan(*vals)
    tracemalloc.start()
    try:
        plan(*vals)
        transient = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    (run,) = plan.specialized.values()
    return sum(b.nbytes for b in run.buffers) + transient


@pytest.mark.slow
def test_checkpointing_holds_fewer_activations():
    depth, width, batch = 36, 64, 512
    vals = values(depth, width, batch)
    activation = batch * width * 8
    plain = step_memory(deep_mlp(depth, width, False)[0], vals)
    remat = step_memory(deep_mlp(depth, width, True)[0], vals)
    assert plain > depth * activation  # plain keeps each layer's output for the backward pass
    assert remat < plain / 2  # about 2 sqrt(depth) of them with checkpointing


def test_remat_is_a_spec_option(tmp_path):
    from specgrad.run.trainer import Trainer
    from specgrad.spec import load_spec

    params = {}
    for remat in ("false", "true"):
        spec = load_spec(ROOT / "models" / "poly.yaml", ["train.steps=50", f"train.remat={remat}"])
        trainer = Trainer(spec, tmp_path / remat)
        trainer.run()
        params[remat] = trainer.params["k"]
    assert np.array_equal(params["false"], params["true"]) and np.any(params["true"] != 0)
