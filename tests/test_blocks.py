"""Large products in fixed row blocks on shared threads (specgrad/engine/blocks.py) and the thread policy that
turns them on (specgrad/run/threads.py): the same bits whichever thread computes which block, numpy's
product to rounding, only where they apply, and a run that uses them. Speed: benchmarks/row_blocks.py."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from specgrad.base.sharing import Sharing
from specgrad.engine.blocks import matmul, row_blocks, splittable
from specgrad.run import threads
from specgrad.run.trainer import Hooks, Trainer
from specgrad.spec import load_mapping

WIDE = [(1, 256, 784, 512), (1, 256, 512, 512), (1, 256, 512, 10), (1, 784, 256, 512), (1, 512, 256, 512)]
DIGITS = [(1, 64, 64, 128), (1, 64, 128, 128), (1, 64, 128, 10)]


def operands(m, k, n, dtype=np.float32, transposed=False):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((k, m) if transposed else (m, k)).astype(dtype)
    return (x.T if transposed else x), rng.standard_normal((k, n)).astype(dtype)


@pytest.mark.parametrize("transposed", [False, True])
def test_blocks_give_the_same_bits_whichever_thread_computes_them(transposed):
    x, y = operands(301, 200, 130, transposed=transposed)  # 301 rows: blocks of unequal size
    serial, helped = Sharing(0), Sharing(1)  # the caller alone computes every block / a helper claims some
    try:
        with row_blocks(serial, 3, 0):
            alone = matmul(x, y)
        for _ in range(20):  # the helper takes a different share of the blocks from call to call
            with row_blocks(helped, 3, 0):
                out = np.empty((301, 130), np.float32)
                assert matmul(x, y, out=out) is out
            assert np.array_equal(out, alone)
    finally:
        helped.close()
    # each block is numpy's product of those rows, and the whole is numpy's product to rounding
    bounds = [0, 100, 200, 301]
    for a, b in zip(bounds, bounds[1:]):
        assert np.array_equal(alone[a:b], np.matmul(x[a:b], y))
    # the bound of float32 rounding for each element, from its k = 200 terms (BLAS kernels and thread counts
    # round differently: a fixed 1e-5 failed with one OpenBLAS thread)
    bound = np.sqrt(x.shape[1]) * np.finfo(np.float32).eps * (np.abs(x) @ np.abs(y))
    assert np.all(np.abs(alone.astype(np.float64) - np.matmul(x.astype(np.float64), y.astype(np.float64))) <= bound)


@pytest.mark.parametrize("operand", ["x", "y"])
def test_an_out_buffer_that_is_an_operand_gives_the_blocks_result(operand):
    """A plan hands a dying operand's buffer over as ``out``: the blocks must not overwrite rows that other
    blocks still read (square operands, so ``out`` can be either)."""
    x, y = operands(300, 300, 300)
    sharing = Sharing(1)
    try:
        with row_blocks(sharing, 2, 0):
            want = matmul(x.copy(), y.copy())
            arrays = {"x": x, "y": y}
            got = matmul(x, y, out=arrays[operand])
        assert got is arrays[operand]
        assert np.array_equal(got, want)
    finally:
        sharing.close()


def test_only_large_2d_floating_point_products_are_split():
    calls = []

    class Recording(Sharing):
        def run(self, fn, items):
            calls.append(len(items))
            super().run(fn, items)

    sharing = Recording(0)
    with row_blocks(sharing, 2, 1e6):
        small_x, small_y = operands(10, 10, 10)
        assert np.array_equal(matmul(small_x, small_y), np.matmul(small_x, small_y))  # 2 kFLOP: whole
        ints = np.arange(200 * 200).reshape(200, 200)
        assert np.array_equal(matmul(ints, ints), np.matmul(ints, ints))  # integers: whole
        batched = np.ones((3, 200, 200), np.float32)
        assert np.array_equal(matmul(batched, batched), np.matmul(batched, batched))  # batched: whole
        vector = np.ones(200, np.float32)
        assert np.array_equal(matmul(batched[0], vector), np.matmul(batched[0], vector))  # matrix-vector
        assert calls == []
        big_x, big_y = operands(200, 200, 200)
        matmul(big_x, big_y)  # 16 MFLOP
        assert calls == [2]
    matmul(big_x, big_y)  # outside the block: numpy's own call
    assert calls == [2]


def test_the_policy_uses_blocks_where_every_product_can_and_several_threads_pay():
    d = threads.decide(WIDE, environ={}, cpus=2, blocked=True)
    assert (d.threads, d.row_blocks) == (2, True) and "row blocks" in d.reason
    assert d.record() == {"blas": 1, "row_blocks": 2, "why": d.reason}
    assert threads.decide(WIDE, environ={}, cpus=2, blocked=False).row_blocks is False  # a conv's tensordot
    assert threads.decide(DIGITS, environ={}, cpus=8, blocked=True).row_blocks is False  # one thread
    assert threads.decide(WIDE, 2, environ={}, cpus=4, blocked=True).row_blocks is True  # train.threads: 2
    assert threads.decide(WIDE, environ={"OMP_NUM_THREADS": "2"}, cpus=2, blocked=True).threads is None
    assert threads.decide(WIDE, environ={"PMI_SIZE": "2"}, cpus=2, blocked=True).row_blocks is False
    # train.threads: 2 on small products: nothing would be split, so BLAS keeps the two threads
    small = threads.decide(DIGITS, 2, environ={}, cpus=2, blocked=True)
    assert (small.threads, small.row_blocks) == (2, False)


def synthetic(nodes, output, n, train, params=None, optimizer=None):
    """A spec on sin(3x) with ``n`` points, float32, a model of ``nodes`` (and ``params``), mse."""
    return {
        "specgrad": 1,
        "name": "blocks",
        "seed": 0,
        "dtype": "float32",
        "data": {"source": "synthetic", "function": "sin(3*x)", "x": {"low": -1, "high": 1}, "n": n},
        "model": {"inputs": {"x": []}, **({"params": params} if params else {}), "nodes": nodes, "output": output},
        "loss": "mse",
        "optimizer": optimizer or {"type": "sgd", "lr": 0.01},
        "train": train,
    }


WIDE_MLP = synthetic(
    [
        {"phi": "powers(x, 7)"},
        {"h": {"layer": "linear", "input": "phi", "units": 512}},
        {"g": {"layer": "linear", "input": "h", "units": 512}},
        {"a": "tanh(g)"},
        {"y_hat": {"layer": "linear", "input": "a", "units": 1}},
        {"out": "reshape(y_hat, [-1])"},
    ],
    "out",
    512,
    {"steps": 6, "batch_size": 256, "threads": 2},
    optimizer={"type": "adam", "lr": 1e-3},
)


TWO_CPUS = pytest.mark.skipif(threads.usable_cpus() < 2, reason="row blocks need two usable CPUs")


@pytest.fixture
def default_threads(monkeypatch):
    """No thread variable in the environment: a user's OMP_NUM_THREADS would keep BLAS as it is, no blocks."""
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)


def blas_threads() -> int:
    return min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


@TWO_CPUS
def test_a_run_with_two_threads_splits_its_products_and_repeats_its_bits(tmp_path, monkeypatch, default_threads):
    split = []  # the blocks of every product split in row blocks
    real_run = Sharing.run

    def run(self, fn, items):
        if fn.__name__ == "block":
            split.append(len(items))
        return real_run(self, fn, items)

    monkeypatch.setattr(Sharing, "run", run)
    seen = []
    runs = []
    for name in ("a", "b"):
        trainer = Trainer(
            load_mapping(WIDE_MLP), tmp_path / name, Hooks(on_step=lambda step, loss: seen.append(blas_threads()))
        )
        assert trainer.train_step.plan.blocked
        summary = trainer.run()
        runs.append({k: v.copy() for k, v in trainer.params.items()})
    assert summary["threads"]["row_blocks"] == 2 and summary["threads"]["blas"] == 1
    assert set(seen) == {1}  # BLAS ran one thread in the loop; the blocks used the two
    # each step splits its three 256x512x512 products (forward, weight and input gradients) and the two
    # 512x256x512 weight gradient of h's layer: 6 steps, 2 runs, evaluation aside
    assert set(split) == {2} and len(split) >= 2 * 6 * 3
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    one = Trainer(load_mapping({**WIDE_MLP, "train": {**WIDE_MLP["train"], "threads": 1}}), tmp_path / "one")
    one.run()
    for k, v in one.params.items():  # one thread, whole products: the same model to float32 rounding
        np.testing.assert_allclose(runs[0][k], v, rtol=1e-4, atol=1e-5)


@TWO_CPUS
def test_a_run_whose_plan_reuses_an_operand_buffer_matches_one_thread(tmp_path, default_threads):
    """``v @ t`` where ``t`` (a transposed tanh) dies there: the plan hands its buffer over as ``out``. Row
    blocks must give one thread's model to float32 rounding, and the same bits every time."""
    f = 512
    mapping = synthetic(
        [
            {"phi": f"powers(x, {f - 1})"},
            {"t": "tanh(transpose(phi @ w))"},
            {"u": "v @ t"},
            {"out": "mean(u, axis=0)"},
        ],
        "out",
        f,
        {"steps": 3, "batch_size": f, "threads": 2},
        params={"w": {"shape": [f, f], "init": "glorot_uniform"}, "v": {"shape": [f, f], "init": "glorot_uniform"}},
        optimizer={"type": "sgd", "lr": 0.1},
    )
    runs = []
    for threads_ in (2, 2, 1):
        trainer = Trainer(
            load_mapping({**mapping, "train": {**mapping["train"], "threads": threads_}}), tmp_path / str(len(runs))
        )
        assert trainer.run()["threads"].get("row_blocks") == (2 if threads_ == 2 else None)
        runs.append({k: v.copy() for k, v in trainer.params.items()})
    for k in runs[0]:
        assert np.array_equal(runs[0][k], runs[1][k]), k
        np.testing.assert_allclose(runs[0][k], runs[2][k], rtol=1e-5, atol=1e-6)


def test_a_plan_with_batched_products_keeps_blas_threads():
    """A dense layer on [B, 4, 2] rows makes batched products, which run whole: BLAS keeps the threads."""
    batched = load_mapping(
        synthetic(
            [
                {"seq": "reshape(powers(x, 7), [-1, 4, 2])"},
                {"h": {"layer": "linear", "input": "seq", "units": 3}},
                {"y_hat": "sum(h, axis=[1, 2])"},
            ],
            "y_hat",
            64,
            {"steps": 1},
        )
    )
    plan = batched.model.plan([batched.model.loss, *batched.model.grads])
    assert plan.products({"B": 64}) and plan.blocked is False
    assert splittable((3, 4), (4, 5)) and not splittable((2, 3, 4), (4, 5)) and not splittable((3, 4), (4,))


def test_a_plan_with_a_convolution_keeps_blas_threads():
    conv = load_mapping(
        synthetic(
            [{"img": "reshape(x, [-1, 1, 1, 1])"}, {"c": "conv2d(img, w)"}, {"y_hat": "reshape(c, [-1])"}],
            "y_hat",
            64,
            {"steps": 1},
            params={"w": {"shape": [1, 1, 1, 1], "init": "ones"}},
        )
    )
    assert conv.model.plan([conv.model.loss]).blocked is False
