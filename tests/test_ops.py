"""Op conventions the finite-difference check cannot see: ties, kinks, extreme logits, the symbolic batch
dimension, forwards against naive numpy references, one BLAS call per convolution, seeded dropout."""

import numpy as np
import pytest

from specgrad.engine.autodiff import gradients
from specgrad.engine.ir import Graph
from specgrad.engine.ops import REGISTRY, ShapeError
from specgrad.engine.plan import Plan


def grad_of(build, *values):
    """(value, [d sum(build(*params)) / d param]) for float64 params holding ``values``."""
    g = Graph()
    params = [g.param(f"p{i}", np.shape(v)) for i, v in enumerate(values)]
    out = build(*params)
    loss = g.apply("sum", out) if out.shape != () else out
    value, *grads = Plan([out, *gradients(loss, params)], params)(*[np.asarray(v, float) for v in values])
    return value, grads


# ------------------------------------------------------------------------------------------------ ties
def test_maximum_and_minimum_split_ties_equally():
    for op in ("maximum", "minimum"):
        _, (gx, gy) = grad_of(lambda x, y, op=op: x.graph.apply(op, x, y), [1.0, 2.0, 3.0], [1.0, 0.0, 5.0])
        first_wins = [0.0, 1.0, 0.0] if op == "maximum" else [0.0, 0.0, 1.0]
        np.testing.assert_array_equal(gx, np.add([0.5, 0, 0], first_wins))
        np.testing.assert_array_equal(gy, np.subtract([1, 1, 1], gx))


@pytest.mark.parametrize(
    "op,row,share",
    [("max", [3.0, 1.0, 3.0, 3.0], [1 / 3, 0, 1 / 3, 1 / 3]), ("min", [2.0, 0.5, 0.5, 4.0], [0, 0.5, 0.5, 0])],
)
def test_max_and_min_reductions_split_ties_equally(op, row, share):
    x = np.array([row, [1.0, 2.0, 3.0, 4.0]])
    for kwargs in ({"axis": 1}, {"axis": -1, "keepdims": True}):
        _, (gx,) = grad_of(lambda p, kwargs=kwargs: p.graph.apply(op, p, **kwargs), x)
        np.testing.assert_allclose(gx[0], share, rtol=1e-15)
        assert gx[1].sum() == 1.0 and np.count_nonzero(gx[1]) == 1
    _, (gx,) = grad_of(lambda p: p.graph.apply("max", p), np.full((2, 2), 7.0))  # all tied: 1/4 each
    np.testing.assert_array_equal(gx, np.full((2, 2), 0.25))


def test_max_pool_splits_ties_within_a_window():
    x = np.array([[[[1.0, 1.0], [0.0, 1.0]]]])
    value, (gx,) = grad_of(lambda p: p.graph.apply("max_pool2d", p, kernel=2), x)
    assert value.item() == 1.0
    np.testing.assert_allclose(gx, [[[[1 / 3, 1 / 3], [0, 1 / 3]]]], rtol=1e-15)


def test_kinks_take_the_documented_side():
    x = [-1.0, 0.0, 2.0]
    assert grad_of(lambda p: p.graph.apply("relu", p), x)[1][0].tolist() == [0.0, 0.0, 1.0]
    assert grad_of(lambda p: p.graph.apply("abs", p), x)[1][0].tolist() == [-1.0, 0.0, 1.0]
    assert grad_of(lambda p: p.graph.apply("leaky_relu", p, alpha=0.1), x)[1][0].tolist() == [0.1, 0.1, 1.0]
    assert grad_of(lambda p: p.graph.apply("elu", p), x)[1][0].tolist() == [np.exp(-1.0), 1.0, 1.0]
    assert grad_of(lambda p: p.graph.apply("clip", p, lo=0.0, hi=2.0), [-1.0, 0.0, 1.0, 2.0, 3.0])[1][0].tolist() == [
        0.0,
        0.0,
        1.0,
        0.0,
        0.0,
    ]


@pytest.mark.parametrize("op", ["max_pool2d", "avg_pool2d"])
def test_pooling_padding_is_at_most_half_the_kernel(op):
    """As torch: a wider padding makes windows of padding alone (-inf for a max, 0 for an average)."""
    g = Graph()
    x = g.param("x", (1, 1, 5, 5))
    assert g.apply(op, x, kernel=3, stride=1, padding=1).shape == (1, 1, 5, 5)
    with pytest.raises(ShapeError, match="pooling padding 2 is more than half the kernel 2"):
        g.apply(op, x, kernel=2, stride=1, padding=2)
    with pytest.raises(ShapeError, match="more than half the kernel"):
        g.apply(op, x, kernel=[3, 2], stride=1, padding=[1, 2])


def test_pow_at_zero_base_has_torchs_gradients():
    """x ** y at x = 0, where the textbook formulas read 0 * inf: d/dx is 0 for y == 0 (x ** 0 is 1 everywhere),
    d/dy is 0 for y >= 0 (torch's convention: x ** y is 0 or 1 there), and both are the formulas elsewhere."""
    x = np.array([0.0, 0.0, 0.0, 0.0, 2.0, -2.0])
    y = np.array([0.0, 0.5, 2.0, -1.0, 0.0, 3.0])
    with np.errstate(divide="ignore", invalid="ignore"):
        _, (gx, gy) = grad_of(lambda a, b: a**b, x, y)
    np.testing.assert_array_equal(gx, [0.0, np.inf, 0.0, -np.inf, 0.0, 12.0])
    np.testing.assert_array_equal(gy[:3], [0.0, 0.0, 0.0])
    assert gy[3] == -np.inf  # 0 ** -1 = inf, times log 0: as torch
    assert gy[4] == pytest.approx(np.log(2.0), rel=1e-15)
    assert np.isnan(gy[5])  # log of a negative base: the documented domain is x > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        _, (g0,) = grad_of(lambda a: a**0.0, [0.0, 1.0, -2.0])  # a constant exponent of 0
    np.testing.assert_array_equal(g0, [0.0, 0.0, 0.0])


# ---------------------------------------------------------------------------------------- extreme logits
BIG = 1e4


def test_log_softmax_is_exact_on_huge_and_equal_logits():
    x = np.array([[BIG, -BIG, 0.0], [-BIG, -BIG, -BIG], [BIG, BIG, BIG]])
    value, (gx,) = grad_of(lambda p: p.graph.apply("log_softmax", p), x)
    np.testing.assert_array_equal(value[0], [0.0, -2 * BIG, -BIG])
    np.testing.assert_allclose(value[1:], -np.log(3), rtol=1e-15)
    # d sum(log_softmax) / dx = 1 - C softmax(x)
    np.testing.assert_array_equal(gx[0], [1 - 3.0, 1.0, 1.0])
    np.testing.assert_allclose(gx[1:], 0.0, atol=1e-15)
    softmax = REGISTRY["softmax"](x)
    np.testing.assert_array_equal(softmax[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(softmax[1:], 1 / 3, rtol=1e-15)


def test_softmax_cross_entropy_is_exact_on_huge_and_equal_logits():
    x = np.array([[BIG, -BIG, 0.0], [BIG, -BIG, 0.0], [5.0, 5.0, 5.0], [-BIG, -BIG, -BIG]])
    labels = np.array([0, 1, 2, 1])
    g = Graph()
    p = g.param("x", x.shape)
    loss = g.apply("softmax_cross_entropy", p, g.const(labels))
    (gx,) = gradients(loss, [p])
    value, grad = Plan([loss, gx], [p])(x)
    per_sample = [0.0, 2 * BIG, np.log(3), np.log(3)]
    assert value == pytest.approx(np.mean(per_sample), rel=1e-15)
    expected = (REGISTRY["softmax"](x) - np.eye(3)[labels]) / 4
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, expected, rtol=1e-15, atol=1e-17)
    np.testing.assert_array_equal(grad[1], [0.25, -0.25, 0.0])


def test_sigmoid_binary_cross_entropy_is_exact_on_huge_and_equal_logits():
    x = np.array([BIG, -BIG, BIG, -BIG, 0.0, 0.0])
    t = np.array([1.0, 0.0, 0.0, 1.0, 1.0, 0.0])
    value, (gx, gt) = grad_of(lambda a, b: a.graph.apply("sigmoid_binary_cross_entropy", a, b), x, t)
    assert value == pytest.approx((0 + 0 + BIG + BIG + 2 * np.log(2)) / 6, rel=1e-15)
    np.testing.assert_array_equal(gx, np.array([0.0, 0.0, 1.0, -1.0, -0.5, 0.5]) / 6)
    np.testing.assert_allclose(gt, -x / 6, rtol=1e-15)


def test_sigmoid_softplus_logsumexp_do_not_overflow():
    x = np.array([-BIG, -50.0, 0.0, 50.0, BIG])
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        np.testing.assert_allclose(REGISTRY["sigmoid"](x), [0.0, 1 / (1 + np.exp(50.0)), 0.5, 1.0, 1.0], rtol=1e-15)
        np.testing.assert_array_equal(REGISTRY["softplus"](x)[[0, 4]], [0.0, BIG])
        assert REGISTRY["logsumexp"](np.array([BIG, BIG])) == BIG + np.log(2)
        assert REGISTRY["logsumexp"](np.array([-BIG, -BIG])) == -BIG + np.log(2)


# ------------------------------------------------------------------------------- symbolic batch dimension
B = "B"
BATCHED = [  # (op, input shapes with the batch dim, attrs, expected output shape)
    ("add", [(B, 3), (3,)], {}, (B, 3)),
    ("matmul", [(B, 4), (4, 5)], {}, (B, 5)),
    ("matmul", [(B, 2, 4), (B, 4, 3)], {}, (B, 2, 3)),
    ("sum", [(B, 3)], {"axis": 0}, (3,)),
    ("mean", [(B, 3, 4)], {"axis": -1, "keepdims": True}, (B, 3, 1)),
    ("max", [(B, 3)], {"axis": 1}, (B,)),
    ("var", [(B, 3)], {"axis": 0}, (3,)),
    ("logsumexp", [(B, 3)], {"axis": -1}, (B,)),
    ("softmax", [(B, 10)], {}, (B, 10)),
    ("softmax_cross_entropy", [(B, 10), (B,)], {}, ()),
    ("reshape", [(B, 4, 4)], {"shape": [B, 16]}, (B, 16)),
    ("reshape", [(B, 4, 4)], {"shape": [-1, 2, 8]}, (B, 2, 8)),
    ("reshape", [(B, 16)], {"shape": [B, 4, 4]}, (B, 4, 4)),
    ("flatten", [(B, 3, 4, 4)], {}, (B, 48)),
    ("broadcast_to", [(B, 1)], {"shape": [B, 5]}, (B, 5)),
    ("transpose", [(B, 3, 4)], {"axes": [0, 2, 1]}, (B, 4, 3)),
    ("slice", [(B, 8)], {"axis": 1, "start": 2, "stop": 6}, (B, 4)),
    ("take", [(10, 4), (B, 7)], {}, (B, 7, 4)),
    ("concat", [(B, 3), (B, 2)], {"axis": 1}, (B, 5)),
    ("stack", [(B, 3), (B, 3)], {"axis": 1}, (B, 2, 3)),
    ("one_hot", [(B,)], {"depth": 4}, (B, 4)),
    ("conv2d", [(B, 3, 8, 8), (6, 3, 3, 3)], {"padding": 1}, (B, 6, 8, 8)),
    ("max_pool2d", [(B, 6, 8, 8)], {"kernel": 2}, (B, 6, 4, 4)),
    ("avg_pool2d", [(B, 6, 8, 8)], {"kernel": 3, "stride": 2}, (B, 6, 3, 3)),
    ("dropout", [(B, 5), ()], {"rate": 0.5}, (B, 5)),
]


@pytest.mark.parametrize("name,shapes,attrs,expected", BATCHED)
def test_the_batch_dimension_flows_through_shape_rules_and_gradients(name, shapes, attrs, expected):
    g = Graph()
    integer = name in ("take", "one_hot", "softmax_cross_entropy", "dropout")
    nodes = [g.input(f"x{i}", s, "int64" if integer and i == len(shapes) - 1 else None) for i, s in enumerate(shapes)]
    if name == "take":
        nodes[0] = g.param("table", shapes[0])
    out = g.apply(name, *nodes, **attrs)
    assert out.shape == expected
    rng = np.random.default_rng(0)
    values = [
        rng.integers(0, 3, [5 if d == B else d for d in s])
        if n.dtype.kind == "i"
        else rng.standard_normal([5 if d == B else d for d in s])
        for n, s in zip(nodes, shapes)
    ]
    (value,) = Plan([out], nodes)(*values)
    assert np.shape(value) == tuple(5 if d == B else d for d in expected)
    float_nodes = [n for n in nodes if n.dtype.kind == "f"]
    loss = out if out.shape == () else g.apply("sum", out)
    grads = gradients(loss, float_nodes)  # the backward pass builds with the symbolic dim
    for node, grad in zip(float_nodes, Plan(grads, nodes)(*values)):
        assert grad.shape == values[nodes.index(node)].shape


@pytest.mark.parametrize(
    "shape,attrs,message",
    [
        ((B, 4, 4), {"shape": [B, -1]}, "write ['B', 16], or flatten"),
        ((B, 4, 4), {"shape": [-1, 4]}, "merge the batch dimension"),
        ((B, 4), {"shape": [4, 2, 2]}, "drops the batch dimension"),
        ((3, 4), {"shape": [5, -1]}, "cannot reshape"),
    ],
)
def test_reshape_explains_what_it_cannot_do(shape, attrs, message):
    g = Graph()
    with pytest.raises(ShapeError, match=message.replace("[", r"\[").replace("]", r"\]")):
        g.apply("reshape", g.input("x", shape), **attrs)


# ------------------------------------------------------------------------ forwards against naive numpy
def naive_conv2d(x, w, stride, padding):
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _, hp, wp = xp.shape
    o, _, kh, kw = w.shape
    out = np.zeros((n, o, (hp - kh) // sh + 1, (wp - kw) // sw + 1))
    for i in range(out.shape[2]):
        for j in range(out.shape[3]):
            patch = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out


def test_conv2d_and_pooling_match_naive_loops():
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 2))
    got = REGISTRY["conv2d"](x, w, stride=[2, 1], padding=[1, 0])
    np.testing.assert_allclose(got, naive_conv2d(x, w, (2, 1), (1, 0)), rtol=1e-12, atol=1e-12)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    windows = np.stack([xp[:, :, i : i + 3, j : j + 3] for i in range(0, 7, 2) for j in range(0, 6, 2)], axis=2)
    np.testing.assert_array_equal(
        REGISTRY["max_pool2d"](x, kernel=3, stride=2, padding=1), windows.max(axis=(-2, -1)).reshape(2, 3, 4, 3)
    )
    np.testing.assert_allclose(REGISTRY["avg_pool2d"](x, kernel=2)[..., 1, 2], x[..., 2:4, 4:6].mean(axis=(-2, -1)))


def test_each_convolution_pass_is_one_blas_call(monkeypatch):
    calls = []
    real_dot = np.dot  # tensordot's one BLAS call, looked up in its module's globals
    namespace = np.tensordot.__wrapped__.__globals__
    monkeypatch.setitem(namespace, "dot", lambda *a, **k: calls.append(1) or real_dot(*a, **k))
    rng = np.random.default_rng(0)
    x, w, g = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal((2, 4, 8, 8))
    for name, args, attrs in [
        ("conv2d", (x, w), {}),
        ("conv2d_input_grad", (g, w), {"size": [8, 8]}),
        ("conv2d_weight_grad", (x, g), {"kernel": [3, 3]}),
    ]:
        calls.clear()
        REGISTRY[name](*args, stride=1, padding=1, **attrs)
        assert len(calls) == 1, name


def test_take_gradient_accumulates_repeated_indices():
    table = np.arange(12.0).reshape(4, 3)
    _, (gt,) = grad_of(lambda t: t.graph.apply("take", t, t.graph.const(np.array([[1, 3], [1, 1]]))), table)
    np.testing.assert_array_equal(gt[:, 0], [0, 3, 0, 1])


def test_one_hot_and_concat_stack_slices():
    np.testing.assert_array_equal(REGISTRY["one_hot"](np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])
    _, grads = grad_of(
        lambda a, b: a.graph.apply("concat", a, b, a, axis=0) * a.graph.const(np.arange(5.0)[:, None]),
        np.ones((2, 1)),
        np.ones((1, 1)),
    )
    np.testing.assert_array_equal(grads[0][:, 0], [0 + 3, 1 + 4])  # a feeds rows 0-1 and 3-4
    np.testing.assert_array_equal(grads[1][:, 0], [2])


# ------------------------------------------------------------------------------------------------ dropout
def test_dropout_is_seeded_by_its_key_and_salt_and_keeps_the_expectation():
    x = np.ones((200, 100))
    a, b = REGISTRY["dropout"](x, np.int64(1), 0.3), REGISTRY["dropout"](x, np.int64(1), 0.3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, REGISTRY["dropout"](x, np.int64(2), 0.3))
    assert not np.array_equal(a, REGISTRY["dropout"](x, np.int64(1), 0.3, salt=1))
    assert set(np.unique(a)) == {0.0, 1 / 0.7}
    assert abs(np.mean(a == 0) - 0.3) < 0.01 and abs(a.mean() - 1) < 0.02
    assert np.array_equal(REGISTRY["dropout"](x, np.int64(1), 0.0), x)


def test_dropout_backward_uses_the_forward_mask():
    x = np.random.default_rng(0).standard_normal((4, 6))
    g = Graph()
    p, key = g.param("x", x.shape), g.input("key", (), "int64")
    out = g.apply("dropout", p, key, rate=0.5)
    (gx,) = gradients(g.apply("sum", out), [p])
    value, grad = Plan([out, gx], [p, key])(x, np.int64(3))
    np.testing.assert_array_equal(grad, (value != 0) * 2.0)


# ------------------------------------------------------------------------------------------ docs/ops.md
def test_docs_reference_every_op_as_the_registry_defines_it():
    from conftest import ROOT

    from specgrad.engine.ops.reference import SHAPE_RULES, render, signature

    assert set(SHAPE_RULES) == set(REGISTRY), "every op needs a shape-rule line in specgrad/engine/ops/reference.py"
    text = (ROOT / "docs" / "ops.md").read_text()
    assert render() in text, "regenerate with: python -m specgrad.engine.ops.reference docs/ops.md"
    for op in REGISTRY.values():
        assert f"`{signature(op)}`" in text


@pytest.mark.parametrize(
    "op,shapes,attrs,message",
    [
        ("take", [(5, 3), (2,)], {}, "take's indices must be integers"),
        ("one_hot", [(4,)], {"depth": 3}, "one_hot's labels must be integers"),
        ("softmax_cross_entropy", [(4, 3), (4,)], {}, "softmax_cross_entropy's labels must be integers"),
        ("dropout", [(4, 3), ()], {"rate": 0.5}, "dropout's key must be integers"),
    ],
)
def test_labels_indices_and_keys_must_be_integers(op, shapes, attrs, message):
    g = Graph()
    with pytest.raises(ShapeError, match=message):
        g.apply(op, *[g.input(f"x{i}", s) for i, s in enumerate(shapes)], **attrs)


# ------------------------------------------------------------------- layers need only these primitives
def test_attention_layernorm_and_lstm_blocks_compose_from_ops_with_a_symbolic_batch():
    """A multi-head self-attention with a residual and layer norm, then one LSTM step, on x [B, T, D]:
    shapes infer with B, and the compiled gradient of every parameter matches central differences."""
    T, D, H = 3, 4, 2
    g = Graph()
    x = g.input("x", ("B", T, D))
    P = {
        name: g.param(name, shape)
        for name, shape in [
            ("Wq", (D, D)),
            ("Wk", (D, D)),
            ("Wv", (D, D)),
            ("gain", (D,)),
            ("Wl", (2 * D, 4 * D)),
            ("bl", (4 * D,)),
        ]
    }
    a = g.apply

    def heads(t):  # [B, T, D] -> [B, H, T, D/H]
        return a("transpose", a("reshape", t, shape=["B", T, H, D // H]), axes=[0, 2, 1, 3])

    q, k, v = heads(x @ P["Wq"]), heads(x @ P["Wk"]), heads(x @ P["Wv"])
    att = a("softmax", q @ a("transpose", k) / np.sqrt(D // H)) @ v
    h = x + a("reshape", a("transpose", att, axes=[0, 2, 1, 3]), shape=[-1, T, D])
    h = (h - a("mean", h, axis=-1, keepdims=True)) / a("sqrt", a("var", h, axis=-1, keepdims=True) + 1e-5) * P["gain"]
    assert h.shape == ("B", T, D)
    c = a("squeeze", a("slice", h, axis=1, start=0, stop=1), axis=1)
    gates = a("concat", a("squeeze", a("slice", h, axis=1, start=-1), axis=1), c, axis=-1) @ P["Wl"] + P["bl"]
    i, f, o, u = (a("slice", gates, axis=-1, start=j * D, stop=(j + 1) * D) for j in range(4))
    c = a("sigmoid", f) * c + a("sigmoid", i) * a("tanh", u)
    out = a("sigmoid", o) * a("tanh", c)
    assert out.shape == ("B", D)
    loss = a("sum", a("square", out))
    params = list(P.values())
    grads = gradients(loss, params)

    rng = np.random.default_rng(0)
    xv = rng.standard_normal((5, T, D))
    pv = [rng.standard_normal(p.shape) * 0.5 for p in params]
    got = Plan(grads, [x, *params])(xv, *pv)
    loss_at = Plan([loss], [x, *params])
    for k_, (p, grad) in enumerate(zip(pv, got)):
        d = rng.standard_normal(p.shape)
        shifted = lambda s, k_=k_, p=p, d=d: float(loss_at(xv, *pv[:k_], p + s * 1e-6 * d, *pv[k_ + 1 :])[0])
        numeric = (shifted(1) - shifted(-1)) / 2e-6
        assert np.sum(grad * d) == pytest.approx(numeric, rel=1e-6), params[k_].name


def test_what_each_backward_pass_keeps_is_read_off_the_built_vjps():
    from specgrad.engine.ops.reference import _example

    keeps = {
        name: _example(REGISTRY[name])[1]
        for name in ("add", "exp", "relu", "tanh", "max_pool2d", "dropout", "matmul", "reshape", "count")
    }
    assert keeps == {
        "add": "nothing",
        "exp": "out",
        "relu": "x",
        "tanh": "out",
        "max_pool2d": "x",
        "dropout": "key",
        "matmul": "x, y",
        "reshape": "nothing",
        "count": "—",
    }
