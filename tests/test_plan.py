"""The execution plan: results equal a naive evaluation, buffers are preallocated and reused across calls,
no op ever writes over a value that is still live (views included), dead values are freed, constants are
folded, and gradient contributions are accumulated in place."""

import dataclasses
import tracemalloc

import numpy as np
import pytest

from specgrad.engine.autodiff import gradients
from specgrad.engine.ir import Graph
from specgrad.engine.ops.registry import REGISTRY
from specgrad.engine.plan import Plan


def peak_bytes(fn, *args):
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def only_run(plan):
    (run,) = plan.specialized.values()
    return run


def test_a_view_keeps_its_buffer_alive():
    # a = 2x lives in a buffer; t = a^T is a view of it. a's last direct reader is the transpose, but the
    # buffer must stay unused until t is dead: e = exp(y) has a's shape and must get a buffer of its own.
    g = Graph()
    x, y = g.input("x", (4, 4)), g.input("y", (4, 4))
    a = x * 2.0
    t = g.apply("transpose", a)
    e = g.apply("exp", y)
    out = g.apply("sum", (t + e) * t)
    plan = Plan([out], [x, y])
    rng = np.random.default_rng(0)
    for _ in range(3):
        xv, yv = rng.standard_normal((4, 4)), rng.standard_normal((4, 4))
        expected = np.sum(((2 * xv).T + np.exp(yv)) * (2 * xv).T)
        (got,) = plan(xv, yv)
        assert got == pytest.approx(expected, rel=1e-14)
    assert len(only_run(plan).buffers) >= 2


def test_no_op_writes_over_an_input_that_a_live_view_still_shows():
    # a's last reader is the add, but t = a^T still shows a's buffer: the add must not write in place.
    g = Graph()
    x = g.input("x", (4, 4))
    a = x * 2.0
    t = g.apply("transpose", a)
    out = g.apply("sum", (a + 1.0) * t)
    plan = Plan([out], [x])
    xv = np.random.default_rng(5).standard_normal((4, 4))
    for _ in range(2):
        assert plan(xv)[0] == pytest.approx(np.sum((2 * xv + 1) * (2 * xv).T), rel=1e-14)


def test_feeds_are_never_written_and_results_survive_the_next_call():
    g = Graph()
    x, w = g.input("x", ("B", 5)), g.param("w", (5, 5))
    h = g.apply("tanh", x @ w)
    loss = g.apply("sum", g.apply("exp", h) * h)
    grads = gradients(loss, [w])
    plan = Plan([loss, h, *grads], [x, w])
    rng = np.random.default_rng(1)
    xv, wv = rng.standard_normal((8, 5)), rng.standard_normal((5, 5))
    x0, w0 = xv.copy(), wv.copy()
    first = [np.array(r, copy=True) for r in plan(xv, wv)]
    kept = plan(xv, wv)
    plan(rng.standard_normal((8, 5)), rng.standard_normal((5, 5)))  # must not touch ``kept``
    assert np.array_equal(xv, x0) and np.array_equal(wv, w0)
    for a, b in zip(first, kept):
        assert np.array_equal(a, b)


def test_buffers_are_preallocated_and_reused_across_calls():
    g = Graph()
    x = g.input("x", ("B", 200))
    h = x
    for i in range(20):
        h = g.apply("tanh", h * 1.5 + float(i))
    plan = Plan([g.apply("sum", h)], [x])
    xv = np.random.default_rng(2).standard_normal((500, 200))
    (first,) = plan(xv)
    buffers = only_run(plan).buffers
    assert len(buffers) <= 2  # 60 elementwise ops, written in place into one or two buffers
    ids = [id(b) for b in buffers]
    assert peak_bytes(plan, xv) < xv.nbytes / 4  # the second call allocates nothing of that size
    (second,) = plan(xv)
    assert second == first and [id(b) for b in only_run(plan).buffers] == ids


def test_each_feed_signature_gets_its_own_specialization():
    g = Graph()
    x, w = g.input("x", ("B", 3)), g.param("w", (3,))
    out = g.apply("exp", x @ w) * 2.0
    plan = Plan([out], [x, w])
    rng = np.random.default_rng(3)
    wv = rng.standard_normal(3)
    for n in (7, 5, 7, 5):
        xv = rng.standard_normal((n, 3))
        (got,) = plan(xv, wv)
        np.testing.assert_array_equal(got, np.exp(xv @ wv) * 2.0)
    assert len(plan.specialized) == 2


def test_liveness_frees_what_the_backward_pass_does_not_need():
    # h_{i+1} = h_i * 1.01 + i: the VJPs of these ops read no activation, so nothing needs to be kept.
    g = Graph()
    x = g.input("x", ("B", 100))
    w = g.param("w", (100,))
    h = x * w
    for i in range(30):
        h = h * 1.01 + float(i)
    loss = g.apply("sum", h)
    (gw,) = gradients(loss, [w])
    plan = Plan([loss, gw], [x, w])
    xv, wv = np.ones((1000, 100)), np.ones(100)
    first_call = peak_bytes(plan, xv, wv)  # the interpreter: drops each value after its last use
    assert first_call < 5 * xv.nbytes  # 60 intermediates, never more than a few alive at once
    assert sum(b.nbytes for b in only_run(plan).buffers) <= 3 * xv.nbytes


def test_constant_subgraphs_are_folded_once():
    g = Graph()
    x = g.input("x", (3,))
    c = g.apply("exp", g.const(np.array([0.0, 1.0, 2.0])))
    out = g.apply("sin", x * c)
    plan = Plan([out], [x])
    assert [st.op for st in plan.steps] == ["mul", "sin"]
    xv = np.array([1.0, -2.0, 0.5])
    np.testing.assert_array_equal(plan(xv)[0], np.sin(xv * np.exp([0.0, 1.0, 2.0])))
    assert not plan.constants[c.id].flags.writeable


def test_branch_contributions_accumulate_in_place():
    autograd = pytest.importorskip("autograd")
    anp = autograd.numpy
    g = Graph()
    x = g.param("x", (50, 40))
    branches = [g.apply("sin", x), g.apply("exp", x) * x, g.apply("tanh", x), x * x, g.apply("cos", x)]
    total = branches[0]
    for b in branches[1:]:
        total = total * b + b
    loss = g.apply("sum", total)
    (gx,) = gradients(loss, [x])
    plan = Plan([gx], [x])
    xv = np.random.default_rng(4).standard_normal((50, 40)) * 0.5

    def f(v):
        bs = [anp.sin(v), anp.exp(v) * v, anp.tanh(v), v * v, anp.cos(v)]
        t = bs[0]
        for b in bs[1:]:
            t = t * b + b
        return anp.sum(t)

    expected = autograd.grad(f)(xv)
    np.testing.assert_allclose(plan(xv)[0], expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(plan(xv)[0], expected, rtol=1e-12, atol=1e-12)
    run = only_run(plan)
    in_place = [
        st
        for st in plan.steps
        if st.op == "add"
        and st.out in run.buffer_of
        and any(run.buffer_of.get(a) == run.buffer_of[st.out] for a in st.args)
    ]
    assert in_place  # a partial sum that dies at the add is overwritten by the new sum
    # x feeds eleven VJPs; their contributions are summed into a few shared buffers, not one each
    assert len(run.buffers) < 11


def test_dead_branches_are_not_run():
    g = Graph()
    x = g.input("x", (3,))
    used = g.apply("exp", x)
    g.apply("sin", x)  # not an ancestor of the output
    plan = Plan([used], [x])
    assert [st.op for st in plan.steps] == ["exp"]


def test_values_of_the_data_alone_are_computed_once_while_the_same_read_only_data_comes_back(monkeypatch):
    calls = []
    real = REGISTRY["powers"]
    monkeypatch.setitem(
        REGISTRY,
        "powers",
        dataclasses.replace(real, forward=lambda x, degree: calls.append(1) or real.forward(x, degree)),
    )
    g = Graph()
    x, k = g.input("x", ("B",)), g.param("k", (4,))
    loss = g.apply("sum", g.apply("square", g.apply("powers", x, degree=3) @ k))
    (gk,) = gradients(loss, [k])
    plan = Plan([loss, gk], [x, k], data=[x])
    rng = np.random.default_rng(0)

    def naive(xv, kv):
        phi = np.stack([xv**j for j in range(4)], axis=-1)
        return np.concatenate([[np.sum((phi @ kv) ** 2)], 2 * (phi @ kv) @ phi])

    def flat(results):
        return np.concatenate([[results[0]], results[1]])

    xv = rng.standard_normal(16)
    frozen = xv.view()
    frozen.flags.writeable = False
    for _step in range(4):  # the same read-only array: powers runs on the first two calls
        kv = rng.standard_normal(4)  # (interpreted, then specialized) and never again
        got = plan(frozen, kv)
        np.testing.assert_allclose(flat(got), naive(xv, kv), rtol=1e-12)
    assert len(calls) == 2
    other = rng.standard_normal(16)  # other data, read-only too: computed again
    other.flags.writeable = False
    np.testing.assert_allclose(flat(plan(other, kv)), naive(other, kv), rtol=1e-12)
    assert len(calls) == 3
    writable = rng.standard_normal(16)  # writable data may change between calls: never reused
    for _ in range(2):
        writable *= 1.5
        np.testing.assert_allclose(flat(plan(writable, kv)), naive(writable, kv), rtol=1e-12)
    assert len(calls) == 5


def test_an_output_of_the_data_alone_is_fresh_on_every_call():
    """An output computed from data alone (a loss no parameter reaches; the gradient of a loss linear in a
    parameter) comes back on every call as a fresh array (or the caller's own, written again): the third
    call of full-batch training returned None for it."""
    g = Graph()
    x, k = g.input("x", ("B",)), g.param("k", (3,))
    total = g.apply("sum", g.apply("sin", x))  # no parameter reaches it
    (gk,) = gradients(g.apply("sum", g.apply("expand_dims", x, axis=-1) * k), [k])  # linear in k: data alone
    shown = g.apply("expand_dims", g.apply("cos", x), axis=-1)  # a view of a value of the data alone
    xv = np.linspace(0.5, 2, 8)
    xv.flags.writeable = False
    for into in (None, np.empty(3)):
        plan = Plan([total, gk, shown], [x, k], data=[x])
        if into is not None:
            plan.write_outputs_into({1: into})
        seen: list = []
        for _ in range(4):  # interpreted, specialized, then the data steps are skipped
            got = plan(xv, np.ones(3))
            assert got[0] == np.sum(np.sin(xv)) and np.array_equal(got[1], np.full(3, np.sum(xv)))
            assert np.array_equal(got[2], np.cos(xv)[:, None])
            assert not any(a is b for a in got for b in seen if b is not into)
            seen += got
            for a in got:
                if isinstance(a, np.ndarray):
                    a[...] = 99.0  # the caller owns what it got: changing it changes no later result


def test_outputs_written_into_the_callers_arrays_are_the_same_bits():
    g = Graph()
    x, w1, w2 = g.input("x", ("B", 5)), g.param("w1", (5, 4)), g.param("w2", (4, 3))
    loss = g.apply("sum", g.apply("tanh", x @ w1) @ w2)
    grads = gradients(loss, [w1, w2])
    plain = Plan([loss, *grads], [x, w1, w2])
    into = Plan([loss, *grads], [x, w1, w2])
    arrays = {1: np.empty((5, 4)), 2: np.empty((4, 3))}
    into.write_outputs_into(arrays)
    rng = np.random.default_rng(2)
    for _ in range(3):  # interpreted, then specialized: written into the arrays
        feeds = [rng.standard_normal((6, 5)), rng.standard_normal((5, 4)), rng.standard_normal((4, 3))]
        want, got = plain(*feeds), into(*feeds)
        for a, b in zip(want, got):
            np.testing.assert_array_equal(a, b)
    assert got[1] is arrays[1] and got[2] is arrays[2]
    other = Plan([loss, *grads], [x, w1, w2])
    other.write_outputs_into({1: np.empty((5, 4), np.float32)})  # another dtype: a fresh array as before
    for _ in range(2):
        result = other(*feeds)
    assert result[1] is not arrays[1] and result[1].dtype == np.float64
