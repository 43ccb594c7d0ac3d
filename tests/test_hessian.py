"""Hessian-vector products through the engine (the backward pass differentiated again): every op against
finite differences of its gradient, composed models against torch.autograd.functional.hvp (a test-only
oracle) and a closed form, and a clear error for the op whose second derivative is not implemented."""

from pathlib import Path

import numpy as np
import pytest
from conftest import tiered
from test_engine import ALL_CASES, _build, _values

from specgrad.engine.ops.registry import REGISTRY
from specgrad.model.build import init_params
from specgrad.model.hessian import SecondDerivativeMissing, hvp
from specgrad.run.gradcheck import directional_hvp_check
from specgrad.spec import load_spec

# op -> why its second derivative (a Hessian-vector product through it) is not implemented; every other op
# with finite-difference examples is checked against finite differences of its gradient
NO_SECOND_DERIVATIVE = {
    "max_pool2d": "its backward op max_pool2d_grad has no VJP (a gradient routed to each window's maxima)"
}


def test_ops_without_second_derivative_are_examples():
    assert all(REGISTRY[name].examples for name in NO_SECOND_DERIVATIVE)


@pytest.mark.parametrize("name,inputs,attrs", tiered(ALL_CASES, group=lambda case: case[0]))
def test_op_hvp_matches_finite_differences_of_its_gradient(name, inputs, attrs):
    rng = np.random.default_rng(1)
    diff, build = _build(name, inputs, _values(name, inputs, rng), attrs)
    if name in NO_SECOND_DERIVATIVE:
        with pytest.raises(SecondDerivativeMissing, match=f"second derivative of {name} is not implemented"):
            directional_hvp_check(build, diff, rng)
        return
    for _ in range(2):  # two pairs of random directions, two random output weightings
        err = directional_hvp_check(build, diff, rng)
        assert err < 1e-6, f"{name}{inputs}{attrs}: relative error {err:.2e}"


# ---------------------------------------------------------------------------------------- composed models
HEADER = (
    "specgrad: 1\nname: m\ndata: {source: npz, path: data.npz}\n"  # the test's own data (model_and_point)
    "optimizer: {type: sgd, lr: 0.1}\ntrain: {steps: 1}\n"
)

MLP = (
    HEADER
    + """
model:
  inputs: {x: [3]}
  params:
    W1: {shape: [3, 8], init: normal}
    b1: {shape: [8], init: normal}
    W2: {shape: [8, 8], init: normal}
    b2: {shape: [8], init: normal}
    v: {shape: [8], init: normal}
  nodes:
    - h1: tanh(x @ W1 + b1)
    - h2: tanh(h1 @ W2 + b2)
    - y_hat: h2 @ v
  output: y_hat
loss: mse
"""
)


def mlp_torch(x, y):
    import torch

    def loss(W1, b1, W2, b2, v):
        h2 = torch.tanh(torch.tanh(x @ W1 + b1) @ W2 + b2)
        return ((h2 @ v - y) ** 2).mean()

    return loss


SOFTMAX = (
    HEADER.replace("source: npz, path: data.npz", "source: blobs, n: 20, classes: 3, features: 4")
    + """
model:
  inputs: {x: [4]}
  params:
    W: {shape: [4, 3], init: normal}
    b: {shape: [3], init: normal}
  nodes:
    - logits: x @ W + b
  output: logits
loss: {type: cross_entropy, label_smoothing: 0.1}
"""
)


def softmax_torch(x, y):
    import torch

    def loss(W, b):
        return torch.nn.functional.cross_entropy(x @ W + b, y, label_smoothing=0.1)

    return loss


POLY = (
    HEADER
    + """
model:
  inputs: {x: []}
  params: {k: {shape: [6], init: normal}}
  nodes:
    - y_hat: powers(x, 5) @ k
  output: y_hat
loss: sse
"""
)


def poly_torch(x, y):
    import torch

    def loss(k):
        return ((x[:, None] ** torch.arange(6) @ k - y) ** 2).sum()

    return loss


def model_and_point(tmp_path, text, fields, seed=0):
    """The model of spec ``text`` whose data is ``fields``, parameters and a direction drawn from ``seed``."""
    np.savez(tmp_path / "data.npz", **fields)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    model = load_spec(path).model
    rng = np.random.default_rng(seed)
    params = init_params(model, rng)
    vector = {name: rng.standard_normal(p.shape) for name, p in params.items()}
    return model, params, vector


@pytest.mark.parametrize(
    "text, oracle, fields",
    [
        (MLP, mlp_torch, lambda rng: {"x": rng.standard_normal((16, 3)), "y": rng.standard_normal(16)}),
        (SOFTMAX, softmax_torch, lambda rng: {"x": rng.standard_normal((16, 4)), "y": rng.integers(0, 3, 16)}),
        (POLY, poly_torch, lambda rng: {"x": rng.uniform(-1, 1, 16), "y": rng.standard_normal(16)}),
    ],
    ids=["mlp_tanh", "softmax_cross_entropy", "poly"],
)
def test_model_hvp_equals_torch(tmp_path, text, oracle, fields):
    torch = pytest.importorskip("torch")  # the test-only oracle
    data = fields(np.random.default_rng(5))
    model, params, vector = model_and_point(tmp_path, text, data)
    ours = hvp(model, data, params, vector)
    f = oracle(*(torch.tensor(data[k]) for k in ("x", "y")))
    _, theirs = torch.autograd.functional.hvp(
        f, tuple(torch.tensor(p) for p in params.values()), tuple(torch.tensor(v) for v in vector.values())
    )
    for name, expected in zip(params, theirs):
        np.testing.assert_allclose(ours[name], expected.numpy(), rtol=1e-10, atol=1e-12)


def test_poly_hessian_is_twice_the_gram_matrix(tmp_path):
    """SSE of a linear model: H = 2 Phi^T Phi whatever the parameters (a closed form)."""
    rng = np.random.default_rng(2)
    data = {"x": rng.uniform(-1, 1, 30), "y": rng.standard_normal(30)}
    model, params, vector = model_and_point(tmp_path, POLY, data)
    phi = data["x"][:, None] ** np.arange(6)
    np.testing.assert_allclose(hvp(model, data, params, vector)["k"], 2 * phi.T @ phi @ vector["k"], rtol=1e-12)


def test_model_hvp_matches_finite_differences_of_the_compiled_gradient(tmp_path):
    rng = np.random.default_rng(3)
    data = {"x": rng.standard_normal((16, 3)), "y": rng.standard_normal(16)}
    model, params, vector = model_and_point(tmp_path, MLP, data)
    grads = model.plan(model.grads)
    eps = 1e-5

    def grad_at(sign):
        moved = {n: p + sign * eps * vector[n] for n, p in params.items()}
        return grads(*model.feed(data, moved))

    numeric = [(a - b) / (2 * eps) for a, b in zip(grad_at(1), grad_at(-1))]
    for name, expected in zip(params, numeric):
        np.testing.assert_allclose(hvp(model, data, params, vector)[name], expected, rtol=1e-6, atol=1e-8)


def test_model_hvp_of_a_model_with_dropout_and_batchnorm(monkeypatch):
    """mlp_moons (batchnorm, dropout): H v through the API, against finite differences of the gradient the
    training step computes with the same key and state (the key a step feeds: [key, first row])."""
    import specgrad
    from specgrad.base.rng import batch_key
    from specgrad.model.build import init_state

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    compiled = specgrad.compile(specgrad.load("models/mlp_moons.yaml"))
    model = compiled.spec.model
    params = compiled.init_params()
    rng = np.random.default_rng(0)
    params = {n: p + 0.1 * rng.standard_normal(p.shape) for n, p in params.items()}
    vector = {n: rng.standard_normal(p.shape) for n, p in params.items()}
    data = {"x": rng.standard_normal((16, 2)), "y": rng.integers(0, 2, 16)}
    got = compiled.hvp(params, data, vector)
    grads, state, key, eps = model.plan(model.grads), init_state(model), batch_key(0, 0), 1e-5

    def grad_at(sign):
        return grads(*model.feed(data, {n: p + sign * eps * vector[n] for n, p in params.items()}, state, key))

    for name, a, b in zip(params, grad_at(1), grad_at(-1)):
        np.testing.assert_allclose(got[name], (a - b) / (2 * eps), rtol=1e-5, atol=1e-7)


def test_a_model_with_max_pooling_names_the_op(tmp_path):
    text = (
        HEADER
        + """
model:
  inputs: {x: [1, 4, 4]}
  params: {w: {shape: [2, 1, 3, 3], init: normal}}
  nodes:
    - c: {op: conv2d, args: [x, w], padding: 1}
    - p: {op: max_pool2d, args: [c], kernel: 2}
    - y_hat: {op: sum, args: [p], axis: [1, 2, 3]}
  output: y_hat
loss: mse
"""
    )
    data = {"x": np.random.default_rng(0).standard_normal((2, 1, 4, 4)), "y": np.zeros(2)}
    model, params, vector = model_and_point(tmp_path, text, data)
    with pytest.raises(
        SecondDerivativeMissing,
        match=r"second derivative of max_pool2d is not implemented.*"
        r"used at .*spec\.yaml:\d+:\d+",
    ):
        hvp(model, data, params, vector)


def test_relu_model_has_a_piecewise_hessian(tmp_path):
    """relu's derivative is a step: its second derivative is zero, so a one-layer relu model with a squared
    loss has the Gauss-Newton Hessian 2/n J^T J exactly (J the Jacobian of the predictions)."""
    text = (
        HEADER
        + """
model:
  inputs: {x: [3]}
  params: {w: {shape: [3], init: normal}}
  nodes:
    - y_hat: relu(x @ w)
  output: y_hat
loss: mse
"""
    )
    rng = np.random.default_rng(4)
    data = {"x": rng.standard_normal((20, 3)), "y": rng.standard_normal(20)}
    model, params, vector = model_and_point(tmp_path, text, data)
    active = (data["x"] @ params["w"] > 0)[:, None]
    jac = data["x"] * active
    np.testing.assert_allclose(
        hvp(model, data, params, vector)["w"], 2 / 20 * jac.T @ jac @ vector["w"], rtol=1e-12, atol=1e-14
    )
