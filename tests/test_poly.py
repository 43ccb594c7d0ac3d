"""models/poly.yaml is the article's problem exactly, and poly_adam.yaml reaches the least-squares optimum."""

import json

import numpy as np
import pytest
from conftest import MODELS, run_cli

from specgrad.run.checkpoint import load_checkpoint, param_key
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec


def articles_loop(x, y, steps, lr):
    """The seed article's hand-written loop (as in reference.poly_numpy), returning k as well."""
    k = np.zeros(6)
    powers = np.vstack([x**j for j in range(6)])
    for _ in range(steps):
        r = y - (k[:, None] * powers).sum(axis=0)
        k -= lr * np.array([-2 * (r * x**j).sum() for j in range(6)])
    return k, float(((y - (k[:, None] * powers).sum(0)) ** 2).sum())


@pytest.mark.slow
def test_poly_reproduces_the_articles_loop(tmp_path, reference):
    x, y = reference.poly_data()
    k_ref, sse_ref = articles_loop(x, y, 2000, 1e-3)
    assert sse_ref == reference.poly_numpy(x, y, 2000, 1e-3)

    result = run_cli("train", MODELS / "poly.yaml", "--run-dir", tmp_path / "run", "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # --quiet
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["steps"] == 2000
    assert abs(summary["train"]["loss"] - sse_ref) <= 1e-9 * sse_ref
    k = load_checkpoint(tmp_path / "run" / "checkpoints" / "step-00002000").arrays[param_key("k")]
    np.testing.assert_allclose(k, k_ref, rtol=1e-9, atol=0)


def test_poly_data_is_the_articles_data(reference):
    x, y = reference.poly_data()
    trainer = Trainer(load_spec(MODELS / "poly.yaml"), "unused")
    assert np.array_equal(trainer.data["x"], x) and np.array_equal(trainer.data["y"], y)


def test_poly_adam_reaches_the_least_squares_optimum(tmp_path, reference):
    x, y = reference.poly_data()
    sse_opt = float(((np.polyval(np.polyfit(x, y, 5), x) - y) ** 2).sum())
    summary = Trainer(load_spec(MODELS / "poly_adam.yaml"), tmp_path).run()
    assert summary["train"]["loss"] <= 1.01 * sse_opt
