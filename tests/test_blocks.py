"""Large products in fixed row blocks on shared threads (specgrad/engine/blocks.py) and the thread policy that
turns them on (specgrad/run/threads.py): the same bits whichever thread computes which block, numpy's
product to rounding, only where they apply, and a run that uses them. Speed: benchmarks/row_blocks.py."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from specgrad.base.sharing import Sharing
from specgrad.engine.blocks import matmul, row_blocks
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
    np.testing.assert_allclose(alone, np.matmul(x, y), rtol=1e-5, atol=1e-5)


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


def spec(layers):
    return {
        "specgrad": 1,
        "name": "blocks",
        "seed": 0,
        "dtype": "float32",
        "data": {"source": "synthetic", "function": "sin(3*x)", "x": {"low": -1, "high": 1}, "n": 512},
        "model": {
            "inputs": {"x": []},
            "nodes": [
                {"phi": "powers(x, 7)"},
                {"h": {"layer": "linear", "input": "phi", "units": 512}},
                *layers,
                {"y_hat": {"layer": "linear", "input": "a", "units": 1}},
                {"out": "reshape(y_hat, [-1])"},
            ],
            "output": "out",
        },
        "loss": "mse",
        "optimizer": {"type": "adam", "lr": 1e-3},
        "train": {"steps": 6, "batch_size": 256, "threads": 2},
    }


WIDE_MLP = spec([{"g": {"layer": "linear", "input": "h", "units": 512}}, {"a": "tanh(g)"}])


def blas_threads() -> int:
    return min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_a_run_with_two_threads_splits_its_products_and_repeats_its_bits(tmp_path, monkeypatch):
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
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
    assert all(np.array_equal(runs[0][k], runs[1][k]) for k in runs[0])
    one = Trainer(load_mapping({**WIDE_MLP, "train": {**WIDE_MLP["train"], "threads": 1}}), tmp_path / "one")
    one.run()
    for k, v in one.params.items():  # one thread, whole products: the same model to float32 rounding
        np.testing.assert_allclose(runs[0][k], v, rtol=1e-4, atol=1e-5)


def test_a_plan_with_a_convolution_keeps_blas_threads():
    conv = load_mapping(
        {
            "specgrad": 1,
            "name": "conv",
            "data": {"source": "synthetic", "function": "sin(3*x)", "x": {"low": -1, "high": 1}, "n": 64},
            "model": {
                "inputs": {"x": []},
                "params": {"w": {"shape": [1, 1, 1, 1], "init": "ones"}},
                "nodes": [
                    {"img": "reshape(x, [-1, 1, 1, 1])"},
                    {"c": "conv2d(img, w)"},
                    {"y_hat": "reshape(c, [-1])"},
                ],
                "output": "y_hat",
            },
            "loss": "mse",
            "optimizer": {"type": "sgd", "lr": 0.01},
            "train": {"steps": 1},
        }
    )
    assert conv.model.plan([conv.model.loss]).blocked is False
