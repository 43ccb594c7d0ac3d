"""Each optimizer against PyTorch's documented update rule, written out by hand here for a few steps, one
coordinate at a time in plain Python floats (a different code path from the optimizers' numpy)."""

import math

import numpy as np
import pytest

from specgrad.optim.optimizers import CHUNK, OPTIMIZERS, make_optimizer

STEPS = 5


def grads_at(t, p):
    """A gradient that depends on the parameters (as a real one does) and changes with the step."""
    return [math.sin(1.3 * x + t) + 0.5 * x for x in p]


def run(settings, p0):
    params = {"w": np.array(p0, dtype=np.float64)}
    opt = make_optimizer(settings, params)
    lrs = [settings["lr"] * (1 - 0.1 * t) for t in range(STEPS)]  # a varying lr, as a schedule gives
    for t in range(STEPS):
        opt.step({"w": np.array(grads_at(t, list(params["w"])))}, lrs[t])
    return params["w"], lrs


def by_hand_sgd(p, lrs, momentum=0.0, dampening=0.0, nesterov=False, weight_decay=0.0):
    p, b = list(p), [0.0] * len(p)
    for t, lr in enumerate(lrs):
        g = grads_at(t, p)
        for i in range(len(p)):
            gi = g[i] + weight_decay * p[i]
            if momentum:
                b[i] = gi if t == 0 else momentum * b[i] + (1 - dampening) * gi
                gi = gi + momentum * b[i] if nesterov else b[i]
            p[i] -= lr * gi
    return p


def by_hand_adam(p, lrs, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False):
    p, m, v = list(p), [0.0] * len(p), [0.0] * len(p)
    for t, lr in enumerate(lrs, start=1):
        g = grads_at(t - 1, p)
        for i in range(len(p)):
            gi = g[i]
            if decoupled:
                p[i] *= 1 - lr * weight_decay
            else:
                gi += weight_decay * p[i]
            m[i] = beta1 * m[i] + (1 - beta1) * gi
            v[i] = beta2 * v[i] + (1 - beta2) * gi * gi
            m_hat, v_hat = m[i] / (1 - beta1**t), v[i] / (1 - beta2**t)
            p[i] -= lr * m_hat / (math.sqrt(v_hat) + eps)
    return p


def by_hand_adagrad(p, lrs, lr_decay=0.0, eps=1e-10, initial_accumulator_value=0.0, weight_decay=0.0):
    p, s = list(p), [initial_accumulator_value] * len(p)
    for t, lr in enumerate(lrs, start=1):
        g = grads_at(t - 1, p)
        clr = lr / (1 + (t - 1) * lr_decay)
        for i in range(len(p)):
            gi = g[i] + weight_decay * p[i]
            s[i] += gi * gi
            p[i] -= clr * gi / (math.sqrt(s[i]) + eps)
    return p


def by_hand_rmsprop(p, lrs, alpha=0.99, eps=1e-8, momentum=0.0, centered=False, weight_decay=0.0):
    p, v, ga, b = list(p), [0.0] * len(p), [0.0] * len(p), [0.0] * len(p)
    for t, lr in enumerate(lrs):
        g = grads_at(t, p)
        for i in range(len(p)):
            gi = g[i] + weight_decay * p[i]
            v[i] = alpha * v[i] + (1 - alpha) * gi * gi
            vt = v[i]
            if centered:
                ga[i] = alpha * ga[i] + (1 - alpha) * gi
                vt = vt - ga[i] ** 2
            if momentum:
                b[i] = momentum * b[i] + gi / (math.sqrt(vt) + eps)
                p[i] -= lr * b[i]
            else:
                p[i] -= lr * gi / (math.sqrt(vt) + eps)
    return p


CASES = [
    ({"type": "sgd", "lr": 0.1}, by_hand_sgd, {}),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.9}, by_hand_sgd, {"momentum": 0.9}),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.8, "dampening": 0.3}, by_hand_sgd, {"momentum": 0.8, "dampening": 0.3}),
    ({"type": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True}, by_hand_sgd, {"momentum": 0.9, "nesterov": True}),
    (
        {"type": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 0.05},
        by_hand_sgd,
        {"momentum": 0.9, "weight_decay": 0.05},
    ),
    ({"type": "adam", "lr": 0.01}, by_hand_adam, {}),
    (
        {"type": "adam", "lr": 0.01, "beta1": 0.5, "beta2": 0.9, "eps": 1e-6, "weight_decay": 0.1},
        by_hand_adam,
        {"beta1": 0.5, "beta2": 0.9, "eps": 1e-6, "weight_decay": 0.1},
    ),
    ({"type": "adamw", "lr": 0.01}, by_hand_adam, {"weight_decay": 0.01, "decoupled": True}),
    ({"type": "adamw", "lr": 0.01, "weight_decay": 0.3}, by_hand_adam, {"weight_decay": 0.3, "decoupled": True}),
    ({"type": "adagrad", "lr": 0.1}, by_hand_adagrad, {}),
    (
        {"type": "adagrad", "lr": 0.1, "lr_decay": 0.2, "initial_accumulator_value": 0.5, "weight_decay": 0.1},
        by_hand_adagrad,
        {"lr_decay": 0.2, "initial_accumulator_value": 0.5, "weight_decay": 0.1},
    ),
    ({"type": "rmsprop", "lr": 0.01}, by_hand_rmsprop, {}),
    (
        {"type": "rmsprop", "lr": 0.01, "momentum": 0.9, "centered": True, "alpha": 0.9, "weight_decay": 0.01},
        by_hand_rmsprop,
        {"momentum": 0.9, "centered": True, "alpha": 0.9, "weight_decay": 0.01},
    ),
]


@pytest.mark.parametrize("settings, by_hand, kwargs", CASES, ids=lambda c: str(c) if isinstance(c, dict) else "")
def test_update_equals_the_documented_formula(settings, by_hand, kwargs):
    p0 = [0.3, -1.2, 2.0, 0.0]
    got, lrs = run(settings, p0)
    want = by_hand(p0, lrs, **kwargs)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-15)
    assert not np.allclose(got, p0)  # it moved


# optimizers that need a closure are checked step for step against torch in a file of their own
CHECKED_ELSEWHERE = {"lbfgs": "tests/test_lbfgs.py"}


def test_every_registered_optimizer_is_checked_here():
    assert {c[0]["type"] for c in CASES} | set(CHECKED_ELSEWHERE) == set(OPTIMIZERS.names())


def test_parameters_are_updated_in_place():
    w = np.ones(3)
    opt = make_optimizer({"type": "adam", "lr": 0.1}, {"w": w})
    opt.step({"w": np.ones(3)}, 0.1)
    assert opt.params["w"] is w and not np.array_equal(w, np.ones(3))


def test_parameter_groups_give_their_own_lr_and_weight_decay():
    params = {"w1": np.ones(2), "w2": np.ones(2), "b": np.ones(2)}
    opt = make_optimizer(
        {
            "type": "sgd",
            "lr": 0.1,
            "weight_decay": 0.5,
            "groups": [{"match": "b*", "lr": 0.01, "weight_decay": 0.0}, {"match": ["w2", "b"], "lr": 1.0}],
        },
        params,
    )
    grads = {k: np.full(2, 2.0) for k in params}
    opt.step(grads, 0.2)  # the schedule gives twice the base lr this step: groups scale with it
    np.testing.assert_allclose(params["w1"], 1 - 0.2 * (2 + 0.5 * 1))
    np.testing.assert_allclose(params["b"], 1 - 0.02 * 2)  # first match wins: b is in group 1 only
    np.testing.assert_allclose(params["w2"], 1 - 2.0 * (2 + 0.5 * 1))


def test_state_round_trips_through_state_arrays():
    p = {"w": np.array([1.0, -2.0])}
    a = make_optimizer({"type": "rmsprop", "lr": 0.01, "momentum": 0.9, "centered": True}, p)
    for t in range(3):
        a.step({"w": np.array([0.5, t - 1.0])}, 0.01)
    q = {"w": p["w"].copy()}
    b = make_optimizer({"type": "rmsprop", "lr": 0.01, "momentum": 0.9, "centered": True}, q)
    b.load_state_arrays({k: v.copy() for k, v in a.state_arrays().items()})
    for opt in (a, b):
        opt.step({"w": np.array([0.25, 3.0])}, 0.01)
    assert p["w"].tobytes() == q["w"].tobytes()
    assert set(a.state_arrays()) == {"t", "square_avg/w", "grad_avg/w", "momentum/w"}


@pytest.mark.slow
def test_nesterov_without_momentum_is_a_located_error(tmp_path):
    from conftest import MODELS, run_cli

    result = run_cli("train", MODELS / "poly.yaml", "--set", "optimizer.nesterov=true", "--run-dir", tmp_path)
    assert result.returncode == 1
    assert "error: optimizer: nesterov momentum needs momentum > 0" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_a_group_that_matches_no_parameter_is_a_located_error(tmp_path):
    from conftest import MODELS, run_cli

    result = run_cli(
        "train", MODELS / "poly.yaml", "--set", "optimizer.groups=[{match: 'bias*', lr: 0.1}]", "--run-dir", tmp_path
    )
    assert result.returncode == 1
    assert "error: optimizer: groups[0] matches no parameter (bias*; the parameters are k)" in result.stderr


@pytest.mark.parametrize("kind", ["adam", "adamw"])
@pytest.mark.parametrize("group_lr", [0.05, None])
@pytest.mark.parametrize("workers", [1, 2])
def test_adam_over_all_parameters_at_once_equals_one_parameter_at_a_time_bitwise(kind, group_lr, workers):
    """Adam updates every parameter in one pass over flat buffers, chunk by chunk, on one thread or several;
    the result must be the bits of PyTorch's formula applied to each parameter on its own, with numpy,
    whatever the shapes, dtypes, groups and threads (w3 spans several chunks)."""
    rng = np.random.default_rng(0)
    shapes = {
        "w1": ((5, 4), np.float32),
        "b1": ((4,), np.float32),
        "w2": ((4, 3), np.float64),
        "s": ((), np.float32),
        "w3": ((3, CHUNK + 7), np.float32),
    }
    p0 = {k: rng.standard_normal(s).astype(dt) for k, (s, dt) in shapes.items()}
    settings = {"type": kind, "lr": 0.01, "weight_decay": 0.1}
    if group_lr:
        settings["groups"] = [{"match": "b*", "lr": group_lr}]
    params = {k: v.copy() for k, v in p0.items()}
    opt = make_optimizer(settings, params)
    want = {k: v.copy() for k, v in p0.items()}
    m = {k: np.zeros_like(v) for k, v in p0.items()}
    v = {k: np.zeros_like(x) for k, x in p0.items()}
    for t in range(1, 6):
        grads = {k: rng.standard_normal(s).astype(dt) for k, (s, dt) in shapes.items()}
        lr = 0.01 * (1 - 0.1 * t)
        with opt.parallel(workers):
            opt.step({k: g.copy() for k, g in grads.items()}, lr)
        for k, p in want.items():
            lr_p = lr * (group_lr / 0.01) if k == "b1" and group_lr else lr
            g = grads[k]
            if kind == "adamw":
                p *= 1 - lr_p * 0.1
            else:
                g = g + 0.1 * p
            m[k] = m[k] * 0.9 + (1 - 0.9) * g
            v[k] = v[k] * 0.999 + (1 - 0.999) * (g * g)
            p -= lr_p * (m[k] / (1 - 0.9**t)) / (np.sqrt(v[k] / (1 - 0.999**t)) + 1e-8)
    for k in p0:
        assert params[k].dtype == p0[k].dtype
        np.testing.assert_array_equal(params[k], want[k])
        np.testing.assert_array_equal(opt.m[k], m[k])
