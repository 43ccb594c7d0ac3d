"""The engine: every registered op's VJP against finite differences (the test enumerates the registry),
the article's worked example, and the polynomial gradient against the hand-derived one."""
import numpy as np
import pytest

from specgrad.graph.autodiff import gradients
from specgrad.graph.gradcheck import directional_check
from specgrad.graph.ir import Graph
from specgrad.graph.plan import Plan
from specgrad.ops import REGISTRY

# op -> list of (input shapes, attrs). Broadcasting and size-1 axes included wherever the op allows them.
CASES = {
    "add": [([(3, 4), (4,)], {}), ([(2, 1, 3), (1, 4, 1)], {}), ([(), (3,)], {})],
    "sub": [([(3, 4), (3, 1)], {}), ([(5,), ()], {})],
    "mul": [([(3, 4), (4,)], {}), ([(2, 1), (1, 3)], {})],
    "div": [([(3, 4), (1, 4)], {}), ([(3,), ()], {})],
    "pow": [([(3, 4), (4,)], {}), ([(2, 3), ()], {})],
    "neg": [([(3, 2)], {})],
    "exp": [([(3, 2)], {})],
    "log": [([(3, 2)], {})],
    "square": [([(4,)], {})],
    "sin": [([(3, 2)], {})],
    "cos": [([(3, 2)], {})],
    "tanh": [([(3, 2)], {})],
    "sum": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": 1}), ([(3, 4)], {"axis": [0, 1], "keepdims": True}),
            ([(3, 1)], {"axis": -1})],
    "mean": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": [0, 2]}), ([(3, 4)], {"axis": 0, "keepdims": True})],
    "matmul": [([(3, 4), (4, 5)], {}), ([(4,), (4, 5)], {}), ([(3, 4), (4,)], {}), ([(4,), (4,)], {}),
               ([(2, 3, 4), (4, 5)], {}), ([(2, 3, 4), (1, 4, 5)], {}), ([(4,), (2, 4, 5)], {}),
               ([(2, 3, 4), (4,)], {})],
    "transpose": [([(3, 4)], {}), ([(2, 3, 4)], {"axes": [2, 0, 1]})],
    "expand_dims": [([(3, 4)], {"axis": 1}), ([(3,)], {"axis": [0, -1]})],
    "squeeze": [([(3, 1, 4)], {"axis": 1}), ([(1, 3, 1)], {"axis": [0, 2]})],
    "powers": [([(5,)], {"degree": 3}), ([(2, 3)], {"degree": 0})],
    "sum_to": [([(3, 4)], {"shape": (4,)}), ([(2, 3, 4)], {"shape": (3, 1)})],
    "broadcast_like": [([(4,), (3, 4)], {}), ([(3, 1), (3, 5)], {})],
}
NOT_DIFFERENTIABLE = {"count"}     # ops whose output does not depend smoothly on their input's values


def test_every_registered_op_is_checked():
    assert set(CASES) | NOT_DIFFERENTIABLE == set(REGISTRY)
    for name in NOT_DIFFERENTIABLE:
        assert all(v is None for v in REGISTRY[name].vjps)


def _values(name, shapes, rng):
    op = REGISTRY[name]
    vals = [rng.standard_normal(s) for s in shapes]
    if op.fd_domain == "positive":
        vals = [np.abs(v) + 0.5 for v in vals]
    return vals


@pytest.mark.parametrize("name,shapes,attrs", [(n, s, a) for n, cases in CASES.items() for s, a in cases])
def test_op_gradient_matches_finite_differences(name, shapes, attrs):
    rng = np.random.default_rng(0)
    values = _values(name, shapes, rng)
    diff = len(values) if name != "broadcast_like" else 1     # broadcast_like reads only its 2nd input's shape
    build = lambda ps: ps[0].graph.apply(name, *ps[:diff], *[ps[0].graph.const(v) for v in values[diff:]], **attrs)
    err = directional_check(build, values[:diff], rng)
    assert err < 1e-7, f"{name}{shapes}{attrs}: relative error {err:.2e}"


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
    assert (L, ga, gb, gd) == (16.0, -24.0, 16.0, 8.0)      # dL/dc = 2c = 8; dL/da = 8b; dL/db = 8a; dL/dd = 8


def test_gradients_are_summed_where_a_value_feeds_several_branches():
    g = Graph()
    x = g.param("x", ())
    loss = x * x + g.apply("exp", x) * x          # d/dx = 2x + e^x (x + 1)
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
    r = yv - sum(kv[j] * xv ** j for j in range(6))
    hand = np.array([-2 * (r * xv ** j).sum() for j in range(6)])
    np.testing.assert_allclose(got, hand, rtol=1e-12)


def test_no_gradient_work_for_data_inputs():
    g = Graph()
    x, k = g.input("x", ("B", 3)), g.param("k", (3,))
    h = g.apply("exp", x)                         # depends on data only
    loss = g.apply("sum", h @ k)
    before = len(g.nodes)
    gradients(loss, [k])
    emitted = {n.op for n in g.nodes[before:]}
    assert "exp" not in emitted and "mul" not in emitted   # d/dk = h^T g needs no derivative of exp
