"""The engine: every registered op's VJP against finite differences (the test enumerates the registry),
the article's worked example, and the polynomial gradient against the hand-derived one."""
import numpy as np
import pytest

from specgrad.graph.autodiff import gradients
from specgrad.graph.gradcheck import directional_check
from specgrad.graph.ir import Graph
from specgrad.graph.plan import Plan
from specgrad.ops import REGISTRY

LABELS = np.array([[0, 2, 1], [1, 1, 0]])             # integer inputs are constants: not differentiated
KEY = np.array(7)
# op -> list of (inputs, attrs); an input is a shape (random floats, differentiated) or an array (a constant).
# Broadcasting and size-1 axes included wherever the op allows them.
CASES = {
    "add": [([(3, 4), (4,)], {}), ([(2, 1, 3), (1, 4, 1)], {}), ([(), (3,)], {})],
    "sub": [([(3, 4), (3, 1)], {}), ([(5,), ()], {})],
    "mul": [([(3, 4), (4,)], {}), ([(2, 1), (1, 3)], {})],
    "div": [([(3, 4), (1, 4)], {}), ([(3,), ()], {})],
    "pow": [([(3, 4), (4,)], {}), ([(2, 3), ()], {})],
    "maximum": [([(3, 4), (4,)], {}), ([(2, 1), (1, 3)], {})],
    "minimum": [([(3, 4), (3, 1)], {}), ([(), (3,)], {})],
    "where": [([np.array([[1.0, 0, 1, 0]]), (3, 4), (3, 1)], {}), ([np.array([True, False]), (), (2, 1, 2)], {})],
    "clip": [([(3, 4)], {"lo": -0.5, "hi": 0.5}), ([(2, 1, 3)], {"lo": 0.0}), ([(5,)], {"hi": 0.2})],
    "neg": [([(3, 2)], {}), ([(1, 3, 1)], {})],
    "abs": [([(3, 2)], {}), ([(1, 4)], {})],
    "exp": [([(3, 2)], {}), ([(1,)], {})],
    "log": [([(3, 2)], {}), ([(1, 4)], {})],
    "log1p": [([(3, 2)], {})],
    "sqrt": [([(3, 2)], {}), ([(1,)], {})],
    "square": [([(4,)], {}), ([(2, 1, 3)], {})],
    "sin": [([(3, 2)], {})],
    "cos": [([(3, 2)], {})],
    "tanh": [([(3, 2)], {}), ([(1, 1)], {})],
    "sigmoid": [([(3, 2)], {}), ([(1, 5)], {})],
    "softplus": [([(3, 2)], {}), ([(4, 1)], {})],
    "relu": [([(3, 4)], {}), ([(1, 5)], {})],
    "leaky_relu": [([(3, 4)], {}), ([(1, 5)], {"alpha": 0.2})],
    "elu": [([(3, 4)], {}), ([(5, 1)], {"alpha": 0.5})],
    "gelu": [([(3, 4)], {}), ([(1, 5)], {})],
    "silu": [([(3, 4)], {}), ([(1, 5)], {})],
    "sum": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": 1}), ([(3, 4)], {"axis": [0, 1], "keepdims": True}),
            ([(3, 1)], {"axis": -1})],
    "mean": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": [0, 2]}), ([(3, 4)], {"axis": 0, "keepdims": True})],
    "max": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": 1}), ([(3, 1)], {"axis": [0, 1], "keepdims": True})],
    "min": [([(3, 4)], {}), ([(2, 4, 3)], {"axis": -1, "keepdims": True}), ([(1, 3)], {"axis": 0})],
    "var": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": [0, 2]}), ([(5, 1)], {"axis": 0, "keepdims": True, "ddof": 1})],
    "logsumexp": [([(3, 4)], {}), ([(3, 4, 2)], {"axis": 1}), ([(1, 4)], {"axis": -1, "keepdims": True})],
    "softmax": [([(3, 4)], {}), ([(2, 3, 1)], {"axis": 1}), ([(1, 5)], {"axis": 0})],
    "log_softmax": [([(3, 4)], {}), ([(2, 3, 1)], {"axis": 1}), ([(1, 5)], {})],
    "softmax_cross_entropy": [([(2, 3, 4), LABELS], {}), ([(1, 3), np.array([2])], {}), ([(5,), np.array(1)], {})],
    "sigmoid_binary_cross_entropy": [([(3, 4), (3, 4)], {}), ([(1, 2), (1, 2)], {})],
    "matmul": [([(3, 4), (4, 5)], {}), ([(4,), (4, 5)], {}), ([(3, 4), (4,)], {}), ([(4,), (4,)], {}),
               ([(2, 3, 4), (4, 5)], {}), ([(2, 3, 4), (1, 4, 5)], {}), ([(4,), (2, 4, 5)], {}),
               ([(2, 3, 4), (4,)], {}), ([(3, 1), (1, 4)], {})],
    "transpose": [([(3, 4)], {}), ([(2, 3, 4)], {"axes": [2, 0, 1]}), ([(1, 3, 1)], {})],
    "expand_dims": [([(3, 4)], {"axis": 1}), ([(3,)], {"axis": [0, -1]})],
    "squeeze": [([(3, 1, 4)], {"axis": 1}), ([(1, 3, 1)], {"axis": [0, 2]})],
    "reshape": [([(3, 4)], {"shape": [2, 6]}), ([(2, 3, 1)], {"shape": [-1]}), ([(1, 6)], {"shape": [3, 1, -1]})],
    "flatten": [([(2, 3, 4)], {}), ([(2, 1, 3, 1)], {"axis": 2}), ([(4,)], {"axis": 0})],
    "broadcast_to": [([(4,)], {"shape": [3, 4]}), ([(3, 1)], {"shape": [2, 3, 5]})],
    "slice": [([(3, 6)], {"axis": 1, "start": 1, "stop": 5, "step": 2}), ([(4, 1)], {"axis": 0, "start": -2}),
              ([(2, 5, 1)], {"axis": -2, "stop": 3})],
    "take": [([(5, 3), np.array([[0, 4], [4, 2]])], {}), ([(2, 4, 1), np.array([3, 0, 3])], {"axis": 1}),
             ([(3,), np.array(2)], {})],
    "concat": [([(2, 3), (2, 1), (2, 2)], {"axis": 1}), ([(1, 3), (2, 3)], {}), ([(4,)], {})],
    "stack": [([(2, 3), (2, 3)], {}), ([(3, 1), (3, 1), (3, 1)], {"axis": -1}), ([(), ()], {})],
    "conv2d": [([(2, 3, 5, 5), (4, 3, 3, 3)], {}), ([(1, 2, 6, 5), (3, 2, 3, 2)], {"stride": 2, "padding": 1}),
               ([(2, 1, 4, 4), (1, 1, 1, 1)], {"stride": [1, 2], "padding": [0, 1]})],
    "conv2d_input_grad": [([(2, 4, 3, 3), (4, 3, 3, 3)], {"stride": 1, "padding": 0, "size": [5, 5]}),
                          ([(1, 3, 3, 3), (3, 2, 3, 2)], {"stride": 2, "padding": 1, "size": [6, 5]})],
    "conv2d_weight_grad": [([(2, 3, 5, 5), (2, 4, 3, 3)], {"stride": 1, "padding": 0, "kernel": [3, 3]}),
                           ([(1, 2, 6, 5), (1, 3, 3, 3)], {"stride": 2, "padding": 1, "kernel": [3, 2]})],
    "max_pool2d": [([(2, 3, 4, 4)], {"kernel": 2}), ([(1, 2, 5, 5)], {"kernel": 3, "stride": 2, "padding": 1}),
                   ([(1, 1, 3, 4)], {"kernel": [1, 2], "stride": 1})],
    "avg_pool2d": [([(2, 3, 4, 4)], {"kernel": 2}), ([(1, 2, 5, 5)], {"kernel": 3, "stride": 2, "padding": 1})],
    "avg_pool2d_grad": [([(2, 3, 2, 2)], {"kernel": 2, "stride": None, "padding": 0, "size": [4, 4]}),
                        ([(1, 2, 3, 3)], {"kernel": 3, "stride": 2, "padding": 1, "size": [5, 5]})],
    "dropout": [([(3, 4), KEY], {"rate": 0.5}), ([(1, 6), KEY], {"rate": 0.1, "salt": 3})],
    "powers": [([(5,)], {"degree": 3}), ([(2, 3)], {"degree": 0})],
    "sum_to": [([(3, 4)], {"shape": (4,)}), ([(2, 3, 4)], {"shape": (3, 1)})],
    "broadcast_like": [([(4,), np.zeros((3, 4))], {}), ([(3, 1), np.zeros((3, 5))], {})],
    "slice_grad": [([(3, 2), np.zeros((3, 6))], {"axis": 1, "start": 1, "stop": 5, "step": 2})],
    "take_grad": [([(2, 2, 3), np.array([[0, 4], [4, 2]]), np.zeros((5, 3))], {})],
}
# op -> why it has no gradient check: every input's VJP is None.
NOT_DIFFERENTIABLE = {
    "count": "returns a size, which does not depend on the values",
    "one_hot": "its input is integer labels",
    "sign": "piecewise constant (abs's derivative): zero almost everywhere, needed only by first derivatives",
    "step": "piecewise constant (relu's derivative): zero almost everywhere",
    "win_share": "piecewise constant (maximum/minimum's tie shares): zero almost everywhere",
    "tie_share": "piecewise constant (max/min's tie shares): zero almost everywhere",
    "max_pool2d_grad": "backward-only helper of max_pool2d; second derivatives through max pooling are not supported",
}


# op -> why finite differences do not apply, and the test that checks it instead
BY_DEFINITION = {"stop_gradient": "the identity forward, with a zero gradient by definition "
                                  "(test_stop_gradient_passes_values_and_blocks_gradients)"}


def _vjps(op, n_inputs):
    return [op.vjps[k] if op.vjps and k < len(op.vjps) else None for k in range(n_inputs)]


def test_every_registered_op_is_checked():
    assert set(CASES) | set(NOT_DIFFERENTIABLE) | set(BY_DEFINITION) == set(REGISTRY)
    assert len(CASES) + len(NOT_DIFFERENTIABLE) + len(BY_DEFINITION) == len(REGISTRY)
    for name in NOT_DIFFERENTIABLE:
        assert all(v is None for v in REGISTRY[name].vjps)


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
        return graph.apply(name, *[next(it) if isinstance(s, tuple) else graph.const(v)
                                   for v, s in zip(values, inputs)], **attrs)
    return diff, build


ALL_CASES = [(n, inputs, a) for n, cases in CASES.items() for inputs, a in cases]


@pytest.mark.parametrize("name,inputs,attrs", ALL_CASES)
def test_op_gradient_matches_finite_differences(name, inputs, attrs):
    rng = np.random.default_rng(0)
    diff, build = _build(name, inputs, _values(name, inputs, rng), attrs)
    for trial in range(2):          # two random directions, two random output weightings
        err = directional_check(build, diff, rng)
        assert err < 1e-7, f"{name}{inputs}{attrs}: relative error {err:.2e}"


@pytest.mark.parametrize("name,inputs,attrs", ALL_CASES)
def test_shape_and_dtype_rules_match_the_forward(name, inputs, attrs):
    rng = np.random.default_rng(0)
    for dtype in (np.float64, np.float32):
        values = [v.astype(dtype) if isinstance(s, tuple) else v
                  for v, s in zip(_values(name, inputs, rng), inputs)]
        g = Graph(dtype)
        nodes = [g.input(f"x{i}", v.shape, v.dtype) for i, v in enumerate(values)]
        out = g.apply(name, *nodes, **attrs)
        (value,) = Plan([out], nodes)(*values)
        assert np.shape(value) == out.shape, name
        assert np.result_type(value) == out.dtype, f"{name}: rule says {out.dtype}, forward gives {value.dtype}"


def test_stop_gradient_passes_values_and_blocks_gradients():
    g = Graph()
    x = g.param("x", (3,))
    loss = g.apply("sum", g.apply("stop_gradient", x) * x)      # d/dx = stop_gradient(x) = x, not 2x
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
