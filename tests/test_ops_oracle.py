"""Composed random graphs against HIPS autograd, an independent engine: values and gradients agree to 1e-10
in float64. And float32 against float64, op by op, to the tolerances documented in docs/ops.md."""

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from conftest import tiered
from hypothesis import given, settings
from hypothesis import strategies as st

from specgrad.engine.autodiff import gradients
from specgrad.engine.ir import Graph
from specgrad.engine.plan import Plan

# Each step of a random graph is written once against a namespace F of primitives, then run twice: with F
# building specgrad graph nodes, and with F calling autograd.numpy (the math written out independently).
COND = np.array([[True, False, True, True], [False, False, True, False], [True, True, False, True]])
LABELS = np.array([3, 0, 2])
INDICES = np.array([3, 0, 1, 1])
FULL = (3, 4)  # every value in a random graph broadcasts to this shape

STEPS = {
    "add": lambda F, x, y: x + y,
    "sub": lambda F, x, y: x - y,
    "mul": lambda F, x, y: x * y,
    "div": lambda F, x, y: x / (1 + F.square(y)),
    "pow": lambda F, x, y: F.pow(F.softplus(x) + 0.5, F.tanh(y)),
    "maximum": lambda F, x, y: F.maximum(x, y),
    "minimum": lambda F, x, y: F.minimum(x, y),
    "where": lambda F, x, y: F.where(COND, x, y),
    "clip": lambda F, x, y: F.clip(x, -0.5, 0.7),
    "neg": lambda F, x, y: -x,
    "abs": lambda F, x, y: F.abs(x),
    "exp": lambda F, x, y: F.exp(F.tanh(x)),
    "log": lambda F, x, y: F.log(F.softplus(x) + 0.1),
    "log1p": lambda F, x, y: F.log1p(F.square(x)),
    "sqrt": lambda F, x, y: F.sqrt(F.square(x) + 0.1),
    "trig": lambda F, x, y: F.sin(x) * F.cos(y),
    "sigmoid": lambda F, x, y: F.sigmoid(x),
    "relu": lambda F, x, y: F.relu(x),
    "leaky_relu": lambda F, x, y: F.leaky_relu(x),
    "elu": lambda F, x, y: F.elu(x),
    "gelu": lambda F, x, y: F.gelu(x),
    "silu": lambda F, x, y: F.silu(x),
    "sum": lambda F, x, y: F.sum(F.broadcast_to(x, FULL), axis=-1, keepdims=True) + F.sum(y),
    "mean": lambda F, x, y: F.mean(F.broadcast_to(x, FULL), axis=0, keepdims=True),
    "max": lambda F, x, y: F.max(F.broadcast_to(x, FULL), axis=-1, keepdims=True),
    "min": lambda F, x, y: F.min(x),
    "var": lambda F, x, y: F.var(F.broadcast_to(x, FULL), axis=0, keepdims=True),
    "logsumexp": lambda F, x, y: F.logsumexp(F.broadcast_to(x, FULL), axis=-1, keepdims=True),
    "softmax": lambda F, x, y: F.softmax(F.broadcast_to(x, FULL)),
    "log_softmax": lambda F, x, y: F.log_softmax(F.broadcast_to(x, FULL)),
    "cross_entropy": lambda F, x, y: F.softmax_cross_entropy(F.broadcast_to(x, FULL), LABELS),
    "binary_cross_entropy": lambda F, x, y: F.sigmoid_binary_cross_entropy(
        F.broadcast_to(x, FULL), F.sigmoid(F.broadcast_to(y, FULL))
    ),
    "matmul": lambda F, x, y: F.broadcast_to(x, FULL) @ F.W,
    "reshape": lambda F, x, y: F.transpose(F.reshape(F.reshape(F.broadcast_to(x, FULL), [12]), [4, 3])),
    "take": lambda F, x, y: F.take(F.broadcast_to(x, FULL), INDICES, axis=1),
    "stack": lambda F, x, y: F.max(F.stack(F.broadcast_to(x, FULL), F.broadcast_to(y, FULL)), axis=0),
    "concat": lambda F, x, y: F.slice(
        F.concat(F.broadcast_to(x, FULL), F.broadcast_to(y, FULL), axis=1), axis=1, start=2, stop=6
    ),
}


class Ours:
    """F for specgrad: each primitive appends a registered op."""

    def __init__(self, graph, W):
        self.graph, self.W = graph, W

    def __getattr__(self, name):
        apply = self.graph.apply
        return lambda *args, **attrs: apply(name, *args, **attrs)

    def broadcast_to(self, x, shape):
        return self.graph.apply("broadcast_to", x, shape=list(shape))

    def reshape(self, x, shape):
        return self.graph.apply("reshape", x, shape=shape)

    def clip(self, x, lo, hi):
        return self.graph.apply("clip", x, lo=lo, hi=hi)


class Autograd:
    """F for autograd: the same primitives written out with autograd.numpy."""

    def __init__(self, W):
        self.W = W
        for name in (
            "square",
            "sqrt",
            "exp",
            "log",
            "log1p",
            "sin",
            "cos",
            "tanh",
            "abs",
            "maximum",
            "minimum",
            "transpose",
            "reshape",
            "sum",
            "mean",
            "max",
            "min",
            "var",
            "clip",
        ):
            setattr(self, name, getattr(anp, name))

    pow = staticmethod(lambda x, y: x**y)
    softplus = staticmethod(lambda x: anp.logaddexp(0.0, x))
    sigmoid = staticmethod(lambda x: 1 / (1 + anp.exp(-x)))
    relu = staticmethod(lambda x: anp.where(x > 0, x, 0.0))
    leaky_relu = staticmethod(lambda x: anp.where(x > 0, x, 0.01 * x))
    elu = staticmethod(lambda x: anp.where(x > 0, x, anp.exp(anp.minimum(x, 0.0)) - 1))
    gelu = staticmethod(lambda x: 0.5 * x * (1 + anp.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))))
    silu = staticmethod(lambda x: x / (1 + anp.exp(-x)))
    broadcast_to = staticmethod(lambda x, shape: x + np.zeros(shape))
    where = staticmethod(lambda c, x, y: anp.where(c, x + np.zeros(c.shape), y + np.zeros(c.shape)))
    stack = staticmethod(lambda *xs: anp.stack(xs))
    concat = staticmethod(lambda *xs, axis: anp.concatenate(xs, axis=axis))
    take = staticmethod(lambda x, idx, axis: x[:, idx])
    slice = staticmethod(lambda x, axis, start, stop: x[:, start:stop])

    @staticmethod
    def logsumexp(x, axis=None, keepdims=False):
        m = np.max(getattr(x, "_value", x), axis=axis, keepdims=True)  # a constant shift
        out = anp.log(anp.sum(anp.exp(x - m), axis=axis, keepdims=True)) + m
        return out if keepdims else anp.squeeze(out, axis)

    def softmax(self, x):
        e = anp.exp(x - anp.max(x, axis=-1, keepdims=True))
        return e / anp.sum(e, axis=-1, keepdims=True)

    def log_softmax(self, x):
        return x - self.logsumexp(x, axis=-1, keepdims=True)

    def softmax_cross_entropy(self, x, labels):
        return anp.mean(self.logsumexp(x, axis=-1) - x[np.arange(len(labels)), labels])

    @staticmethod
    def sigmoid_binary_cross_entropy(x, t):
        return anp.mean(anp.maximum(x, 0.0) - x * t + anp.log1p(anp.exp(-anp.abs(x))))


SHAPES = [(3, 4), (4,), (3, 1), ()]
NAMES = sorted(STEPS)


def run_graph(program, F, leaves, weights):
    pool = list(leaves)
    for step, i, j in program:
        pool.append(STEPS[NAMES[step]](F, pool[i % len(pool)], pool[j % len(pool)]))
    return sum(F.sum(node * w) for node, w in zip(pool, weights))


def ours(program, values, W, weights):
    g = Graph()
    leaves = [g.param(f"p{k}", v.shape) for k, v in enumerate(values)]
    w = g.param("W", W.shape)
    loss = run_graph(program, Ours(g, w), leaves, [g.const(r) for r in weights])
    loss_value, *grads = Plan([loss, *gradients(loss, [*leaves, w])], [*leaves, w])(*values, W)
    return loss_value, grads


def reference(program, values, W, weights):
    def f(args):
        *leaves, w = args
        return run_graph(program, Autograd(w), leaves, weights)

    return f([*values, W]), autograd.grad(f)([*values, W])


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    program=st.lists(
        st.tuples(st.integers(0, len(NAMES) - 1), st.integers(0, 99), st.integers(0, 99)), min_size=1, max_size=8
    ),
    seed=st.integers(0, 2**16),
)
@pytest.mark.slow
def test_random_graphs_agree_with_autograd(program, seed):
    rng = np.random.default_rng(seed)
    values = [rng.standard_normal(s) for s in SHAPES]
    W = rng.standard_normal((4, 4)) / 2
    weights = [rng.standard_normal(FULL) for _ in range(len(SHAPES) + len(program))]
    value, grads = ours(program, values, W, weights)
    ref_value, ref_grads = reference(program, values, W, weights)
    assert value == pytest.approx(ref_value, rel=1e-10, abs=1e-10)
    for got, want in zip(grads, ref_grads):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * max(1.0, np.max(np.abs(want))))


def test_every_public_op_of_these_families_is_exercised_by_the_random_graphs():
    g = Graph()
    x, y = g.param("x", FULL), g.param("y", FULL)
    F = Ours(g, g.param("W", (4, 4)))
    for step in STEPS.values():
        step(F, x, y)
    used = {n.op for n in g.nodes}
    assert used >= {
        "add",
        "sub",
        "mul",
        "div",
        "neg",
        "pow",
        "maximum",
        "minimum",
        "where",
        "clip",
        "abs",
        "exp",
        "log",
        "log1p",
        "sqrt",
        "square",
        "tanh",
        "sigmoid",
        "softplus",
        "sin",
        "cos",
        "relu",
        "leaky_relu",
        "elu",
        "gelu",
        "silu",
        "sum",
        "mean",
        "max",
        "min",
        "var",
        "logsumexp",
        "softmax",
        "log_softmax",
        "softmax_cross_entropy",
        "sigmoid_binary_cross_entropy",
        "matmul",
        "transpose",
        "reshape",
        "broadcast_to",
        "take",
        "stack",
        "concat",
        "slice",
    }


# --------------------------------------------------------------------------------- float32 vs float64
# docs/ops.md: |f32 - f64| <= FLOAT32_RTOL * max(1, max |f64|), per output (measured worst: 2.0e-7)
FLOAT32_RTOL = 1e-6


def _value_and_vjp(name, inputs, values, attrs, cotangent_seed, dtype):
    g = Graph(dtype)
    nodes = [
        g.param(f"p{i}", v.shape, dtype) if isinstance(s, tuple) else g.const(v)
        for i, (v, s) in enumerate(zip(values, inputs))
    ]
    params = [n for n in nodes if n.op == "param"]
    out = g.apply(name, *nodes, **attrs)
    (shape,) = [
        np.shape(v)
        for v in Plan([out], params)(*[v.astype(dtype) for v, s in zip(values, inputs) if isinstance(s, tuple)])
    ]
    weights = np.random.default_rng(cotangent_seed).standard_normal(shape).astype(dtype)
    loss = g.apply("sum", out * g.const(weights))
    return Plan([out, *gradients(loss, params)], params)(
        *[v.astype(dtype) for v, s in zip(values, inputs) if isinstance(s, tuple)]
    )


def _float32_cases():
    from test_engine import CASES, _values

    rng = np.random.default_rng(0)
    return [(n, inputs, _values(n, inputs, rng), a) for n, cases in CASES.items() for inputs, a in cases]


@pytest.mark.parametrize("name,inputs,values,attrs", tiered(_float32_cases(), group=lambda case: case[0]))
def test_float32_agrees_with_float64(name, inputs, values, attrs):
    lo = _value_and_vjp(name, inputs, values, attrs, 1, np.float32)
    hi = _value_and_vjp(name, inputs, values, attrs, 1, np.float64)
    for a, b in zip(lo, hi):
        assert np.result_type(a) == np.float32, f"{name}: float32 inputs gave {np.result_type(a)}"
        assert np.max(np.abs(a - b), initial=0.0) <= FLOAT32_RTOL * max(1.0, np.max(np.abs(b), initial=0.0)), name
