"""The thread policy (specgrad/run/threads.py): its decisions from a plan's products, the user's environment
variables, the spec's train.threads, limit() and MPI; and that a run applies it. Speed is not asserted here:
benchmarks/run.py measures it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from specgrad.base.diagnostics import SpecError
from specgrad.engine.ops.registry import REGISTRY
from specgrad.engine.plan import Plan
from specgrad.run import threads
from specgrad.run.trainer import Hooks, Trainer
from specgrad.spec import load_mapping, load_spec

ROOT = Path(__file__).resolve().parent.parent
CLEAN = {}  # an environment without thread variables
DIGITS = [(1, 64, 64, 128), (1, 64, 128, 128), (1, 64, 128, 10)] * 2
WIDE = [(1, 256, 784, 512), (1, 256, 512, 512), (1, 256, 512, 10), (1, 784, 256, 512), (1, 512, 256, 512)]


def blas_threads() -> int:
    return min(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")


def test_small_products_get_one_thread_large_ones_every_cpu():
    assert threads.decide(DIGITS, environ=CLEAN, cpus=8).threads == 1
    assert threads.decide(WIDE, environ=CLEAN, cpus=2).threads == 2
    assert threads.decide(WIDE, environ=CLEAN, cpus=64).threads == 12  # 205 MFLOP / 16 MFLOP a thread
    assert threads.decide([], environ=CLEAN, cpus=4).threads is None  # no products: nothing to limit
    assert threads.decide([], 2, environ=CLEAN, cpus=4).threads == 2  # unless the spec asks


def test_typical_product_is_the_flop_weighted_median():
    # one huge product outweighs many tiny ones; a tiny output layer does not drag a wide net down
    assert threads.typical_flops([(100, 2, 2, 2), (1, 1000, 1000, 1000)]) == 2e9
    assert threads.typical_flops([(1, 10, 10, 10), (3, 100, 100, 100)]) == 2e6
    assert threads.typical_flops([]) == 0.0


@pytest.mark.parametrize("var", threads.ENV_VARS)
def test_user_environment_wins_over_everything(var):
    for setting in ("auto", 1, 3):
        d = threads.decide(WIDE, setting, environ={var: "3"}, cpus=2)
        assert d.threads is None and var in d.reason
    assert threads.decide(WIDE, environ={var: " "}, cpus=2).threads == 2  # blank: not set


def test_spec_setting_is_capped_by_the_cpus():
    assert threads.decide(DIGITS, 2, environ=CLEAN, cpus=4).threads == 2
    d = threads.decide(DIGITS, 16, environ=CLEAN, cpus=4)
    assert d.threads == 4 and "capped" in d.reason


def test_mpi_ranks_get_one_thread_each():
    for var in threads.MPI_SIZE_VARS:
        assert threads.decide(WIDE, environ={var: "4"}, cpus=8).threads == 1
        assert threads.decide(WIDE, 4, environ={var: "4"}, cpus=8).threads == 1
        assert threads.decide(WIDE, environ={var: "1"}, cpus=2).threads == 2


def test_limit_caps_decisions_and_blas_and_restores_both(monkeypatch):
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    with threadpool_limits(2, user_api="blas"):
        with threads.limit(1):
            assert blas_threads() == 1
            assert threads.decide(WIDE, environ=CLEAN, cpus=2).threads == 1
            assert threads.decide(WIDE, 2, environ=CLEAN, cpus=2).threads == 1
            with threads.limit(4):  # an inner limit never raises an outer one
                assert threads.decide(WIDE, environ=CLEAN, cpus=8).threads == 1
        assert blas_threads() == 2
        assert threads.decide(WIDE, environ=CLEAN, cpus=2).threads == 2
    with pytest.raises(ValueError):
        threads.limit(0)


def test_applied_sets_and_restores_blas_threads():
    with threadpool_limits(2, user_api="blas"):
        with threads.applied(threads.Decision(1, "test")):
            assert blas_threads() == 1
        assert blas_threads() == 2
        with threads.applied(threads.Decision(None, "test")):
            assert blas_threads() == 2


def test_the_plan_declares_its_products(monkeypatch, tmp_path):
    data = tmp_path / "wide.npz"  # validate checks that the data file is there (never read here)
    np.savez(data, x=np.zeros((4, 784), np.float32), y=np.zeros(4, np.int64))
    spec = load_spec(ROOT / "benchmarks/specs/wide.yaml", [f"data.path={data}"], roots=[tmp_path])
    plan = spec.model.plan([spec.model.loss, *spec.model.grads])
    got = sorted(plan.products({"B": 32}))
    # forward x@w1, h1@w2, h2@w3; weight gradients x.T@g (3); input gradients g@w.T for layers 3 and 2
    want = sorted(
        [
            (1, 32, 784, 512),
            (1, 32, 512, 512),
            (1, 32, 512, 10),
            (1, 784, 32, 512),
            (1, 512, 32, 512),
            (1, 512, 32, 10),
            (1, 32, 10, 512),
            (1, 32, 512, 512),
        ]
    )
    assert got == want
    # each declared product is a matmul the plan runs: record them while the plan runs
    calls = []

    def spy(a, b, out=None):
        calls.append((a.shape, b.shape))
        return np.matmul(a, b, out=out)

    monkeypatch.setitem(REGISTRY, "matmul", dataclasses.replace(REGISTRY["matmul"], forward=spy))
    plan = Plan([spec.model.loss, *spec.model.grads], spec.model.feeds)
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((32, 784)).astype(np.float32), rng.integers(0, 10, 32)]
    feeds += [rng.standard_normal(n.shape).astype(np.float32) for n in spec.model.params.values()]
    plan(*feeds)
    assert sorted((a[0], a[1], b[1]) for a, b in calls) == [(m, k, n) for _, m, k, n in want]


def test_conv_products_count_the_flops_of_its_tensordots():
    spec = load_spec(ROOT / "models/cnn_digits.yaml")
    products = spec.model.plan([spec.model.loss, *spec.model.grads]).products({"B": 8})
    assert all(calls == 1 and min(m, k, n) >= 1 for calls, m, k, n in products)
    assert len(products) >= 6


def _spec(threads_setting=None, width=8):
    train = {"steps": 3, "batch_size": 16}
    if threads_setting is not None:
        train["threads"] = threads_setting
    return {
        "specgrad": 1,
        "name": "t",
        "seed": 0,
        "data": {"source": "synthetic", "function": "sin(3*x)", "x": {"low": -1, "high": 1}, "n": 32},
        "model": {
            "inputs": {"x": []},
            "params": {"w": {"shape": [width], "init": "zeros"}},
            "nodes": [{"y_hat": "powers(x, 7) @ w"}],
            "output": "y_hat",
        },
        "loss": "sse",
        "optimizer": {"type": "sgd", "lr": 1e-3},
        "train": train,
    }


def test_trainer_applies_its_decision_during_the_loop_only(tmp_path, monkeypatch):
    for var in threads.ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    seen = []
    with threadpool_limits(2, user_api="blas"):
        trainer = Trainer(
            load_mapping(_spec(1)), tmp_path / "a", hooks=Hooks(on_step=lambda step, loss: seen.append(blas_threads()))
        )
        summary = trainer.run()
        assert blas_threads() == 2
    assert seen == [1, 1, 1]
    assert summary["threads"] == {"blas": 1, "why": "train.threads: 1"}


def test_train_threads_is_validated():
    bad = load_mapping_errors(_spec(0)) + load_mapping_errors(_spec("many"))
    assert len(bad) == 2 and all("threads" in e for e in bad)
    assert load_mapping_errors(_spec("auto")) == [] and load_mapping_errors(_spec(3)) == []


def load_mapping_errors(mapping) -> list[str]:
    try:
        load_mapping(mapping)
    except SpecError as e:
        return [str(e)]
    return []


@pytest.mark.slow
def test_cli_train_respects_an_environment_variable(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in threads.ENV_VARS}
    env["OPENBLAS_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(ROOT)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "specgrad.cli",
            "train",
            str(ROOT / "models/poly.yaml"),
            "--run-dir",
            str(tmp_path / "run"),
            "--quiet",
            "--set",
            "train.steps=5",
            "--set",
            "train.threads=2",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["threads"] == {"blas": None, "why": "OPENBLAS_NUM_THREADS=1 is set: BLAS keeps it"}
