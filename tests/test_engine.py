"""The engine: every registered op's VJP against finite differences (the test enumerates the registry),
the article's worked example, and the polynomial gradient against the hand-derived one."""

import numpy as np
import pytest
from conftest import tiered

from specgrad.engine.autodiff import gradients
from specgrad.engine.ir import Graph
from specgrad.engine.ops import REGISTRY, ShapeError
from specgrad.engine.plan import Plan
from specgrad.run.gradcheck import directional_check

CASES = {name: op.examples for name, op in REGISTRY.items() if op.examples}


def _vjps(op, n_inputs):
    return [op.vjps[k] if op.vjps and k < len(op.vjps) else None for k in range(n_inputs)]


def test_every_registered_op_is_checked():
    """An op has examples, or says why not: every VJP is None, or it names the test that checks it instead."""
    for name, op in REGISTRY.items():
        assert bool(op.examples) != bool(op.no_examples), name
        if op.no_examples and not all(v is None for v in op.vjps):
            test = op.no_examples.split("(")[-1].rstrip(")")
            assert test.startswith("test_") and test in globals(), f"{name}: {op.no_examples}"


def test_an_op_must_give_examples_or_say_why_not():
    from specgrad.engine.ops.registry import register

    with pytest.raises(ValueError, match="needs either examples or the reason it has none"):
        register("unchecked", shape=lambda x: x, vjp=(lambda g, out, x: g,), arity=1)(lambda x: x)
    assert "unchecked" not in REGISTRY


@pytest.mark.parametrize("name", sorted(CASES))
def test_constant_inputs_are_exactly_the_non_differentiable_ones(name):
    """An input given as an array in CASES is integer-valued or read only for its shape; its VJP is None."""
    for inputs, _ in CASES[name]:
        vjps = _vjps(REGISTRY[name], len(inputs))
        for spec, vjp in zip(inputs, vjps):
            assert isinstance(spec, np.ndarray) == (vjp is None) or name == "where" and spec is inputs[0]


def _values(name, inputs, rng):
    op = REGISTRY[name]
    vals = [rng.standard_normal(s) if isinstance(s, tuple) else s for s in inputs]
    if op.fd_domain == "positive":
        vals = [np.abs(v) + 0.5 if isinstance(s, tuple) else v for v, s in zip(vals, inputs)]
    return vals


def _build(name, inputs, values, attrs):
    """(differentiated values, build(params) -> node) with constants bound in place."""
    diff = [v for v, s in zip(values, inputs) if isinstance(s, tuple)]

    def build(params):
        it = iter(params)
        graph = params[0].graph
        return graph.apply(
            name, *[next(it) if isinstance(s, tuple) else graph.const(v) for v, s in zip(values, inputs)], **attrs
        )

    return diff, build


ALL_CASES = [(n, inputs, a) for n, cases in CASES.items() for inputs, a in cases]


@pytest.mark.parametrize("name,inputs,attrs", tiered(ALL_CASES, group=lambda case: case[0]))
def test_op_gradient_matches_finite_differences(name, inputs, attrs):
    rng = np.random.default_rng(0)
    diff, build = _build(name, inputs, _values(name, inputs, rng), attrs)
    for _trial in range(2):  # two random directions, two random output weightings
        err = directional_check(build, diff, rng)
        assert err < 1e-7, f"{name}{inputs}{attrs}: relative error {err:.2e}"


@pytest.mark.parametrize("name,inputs,attrs", tiered(ALL_CASES, group=lambda case: case[0]))
def test_shape_and_dtype_rules_match_the_forward(name, inputs, attrs):
    """In float64 and float32, and for the integer inputs a spec may declare (int64, int32): the rule refuses
    them with a ShapeError, or says the dtype the forward gives."""
    for dtype in (np.float64, np.float32, np.int64, np.int32):
        raw = _values(name, inputs, np.random.default_rng(0))
        values = [
            ((v * 3).round() if np.dtype(dtype).kind == "i" else v).astype(dtype) if isinstance(s, tuple) else v
            for v, s in zip(raw, inputs)
        ]
        g = Graph(np.float64 if np.dtype(dtype).kind == "i" else dtype)
        nodes = [g.input(f"x{i}", v.shape, v.dtype) for i, v in enumerate(values)]
        try:
            out = g.apply(name, *nodes, **attrs)
        except ShapeError:
            assert np.dtype(dtype).kind == "i", f"{name} refuses {np.dtype(dtype)}"
            continue
        with np.errstate(all="ignore"):  # integer division by zero and the like: the dtype is the point
            (value,) = Plan([out], nodes)(*values)
        assert np.shape(value) == out.shape, name
        assert np.result_type(value) == out.dtype, (
            f"{name} on {np.dtype(dtype)}: rule says {out.dtype}, forward gives {np.result_type(value)}"
        )


@pytest.mark.parametrize("name,inputs,attrs", tiered(ALL_CASES, group=lambda case: case[0]))
def test_out_buffers_and_views_are_declared(name, inputs, attrs):
    """The plan relies on these flags: ``writes_out`` ops fill the buffer they are given, and only ``view``
    ops return memory shared with an input."""
    op = REGISTRY[name]
    values = _values(name, inputs, np.random.default_rng(0))
    result = op.forward(*values, **attrs)
    if any(isinstance(v, np.ndarray) and np.shares_memory(result, v) for v in values):
        assert op.view, f"{name} returns a view of an input but is not declared view=True"
    if op.writes_out:
        buffer = np.full(np.shape(result), np.nan, np.result_type(result))
        assert op.forward(*values, **attrs, out=buffer) is buffer
        np.testing.assert_array_equal(buffer, result)


def test_stop_gradient_passes_values_and_blocks_gradients():
    g = Graph()
    x = g.param("x", (3,))
    loss = g.apply("sum", g.apply("stop_gradient", x) * x)  # d/dx = stop_gradient(x) = x, not 2x
    (gx,) = gradients(loss, [x])
    xv = np.array([1.0, -2.0, 3.0])
    value, grad = Plan([loss, gx], [x])(xv)
    assert value == 14.0 and np.array_equal(grad, xv)


def test_op_forward_matches_numpy():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, 4)), rng.standard_normal(4)
    assert np.array_equal(REGISTRY["matmul"](x, y), x @ y)
    assert np.array_equal(REGISTRY["powers"](y, 2), np.stack([np.ones(4), y, y * y], axis=-1))
    assert np.array_equal(REGISTRY["sum_to"](np.ones((2, 3, 4)), (3, 1)), np.full((3, 1), 8.0))


def test_articles_worked_example():
    # z = a * b, c = z + d, L = c^2 at a=2, b=-3, d=10: z=-6, c=4, L=16
    g = Graph()
    a, b, d = g.param("a", ()), g.param("b", ()), g.param("d", ())
    c = a * b + d
    loss = g.apply("square", c)
    grads = gradients(loss, [a, b, d])
    L, ga, gb, gd = Plan([loss, *grads], [a, b, d])(np.float64(2), np.float64(-3), np.float64(10))
    assert (L, ga, gb, gd) == (16.0, -24.0, 16.0, 8.0)  # dL/dc = 2c = 8; dL/da = 8b; dL/db = 8a; dL/dd = 8


def test_gradients_are_summed_where_a_value_feeds_several_branches():
    g = Graph()
    x = g.param("x", ())
    loss = x * x + g.apply("exp", x) * x  # d/dx = 2x + e^x (x + 1)
    (gx,) = gradients(loss, [x])
    (v,) = Plan([gx], [x])(np.float64(0.7))
    assert v == pytest.approx(2 * 0.7 + np.exp(0.7) * 1.7, rel=1e-15)


def test_polynomial_gradient_is_the_hand_derived_one():
    rng = np.random.default_rng(0)
    xv, yv, kv = rng.uniform(-1, 1, 50), rng.standard_normal(50), rng.standard_normal(6)
    g = Graph()
    x, y, k = g.input("x", ("B",)), g.input("y", ("B",)), g.param("k", (6,))
    loss = g.apply("sum", g.apply("square", y - g.apply("powers", x, degree=5) @ k))
    (gk,) = gradients(loss, [k])
    (got,) = Plan([gk], [x, y, k])(xv, yv, kv)
    r = yv - sum(kv[j] * xv**j for j in range(6))
    hand = np.array([-2 * (r * xv**j).sum() for j in range(6)])
    np.testing.assert_allclose(got, hand, rtol=1e-12)


def test_no_gradient_work_for_data_inputs():
    g = Graph()
    x, k = g.input("x", ("B", 3)), g.param("k", (3,))
    h = g.apply("exp", x)  # depends on data only
    loss = g.apply("sum", h @ k)
    before = len(g.nodes)
    gradients(loss, [k])
    emitted = {n.op for n in g.nodes[before:]}
    assert "exp" not in emitted and "mul" not in emitted  # d/dk = h^T g needs no derivative of exp
