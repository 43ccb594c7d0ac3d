"""Every example spec in models/ trains, and the zoo reaches the results the README reports.

The examples train in-process with one BLAS thread: their matrices are small, and on a busy two-core
machine OpenBLAS threads cost far more in synchronisation than they gain (about 20x on mlp_digits).
"""

import json

import numpy as np
import pytest
from conftest import MODELS
from threadpoolctl import threadpool_limits

from specgrad.data.prepare import prepare_data
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec

# Overrides that shorten the long examples in this test; a spec not listed here trains in full.
SHORT = {
    "cnn_digits.yaml": ["train={epochs: 1, batch_size: 64}"],
    "lstm_adding.yaml": ["train={steps: 40, batch_size: 64}"],
    "attention_adding.yaml": ["train={steps: 40, batch_size: 64}"],
    "mlp_digits.yaml": ["train={epochs: 3, batch_size: 64}"],
    "residual_mlp.yaml": ["train={epochs: 5, batch_size: 64}"],
}


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(1):
        yield


def train(name, tmp_path, overrides=()):
    spec = load_spec(MODELS / name, overrides)
    return spec, Trainer(spec, tmp_path / "run").run()


@pytest.mark.parametrize("name", sorted(p.name for p in MODELS.glob("*.yaml")))
def test_every_example_trains_and_learns(name, tmp_path):
    text = (MODELS / name).read_text()
    assert text.startswith("# yaml-language-server: $schema=../schemas/specgrad.schema.json\n")
    _, summary = train(name, tmp_path, SHORT.get(name, ()))
    assert summary["status"] == "completed"
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])
    assert summary["train"]["loss"] < first["loss"]  # it learned something


def test_linear_regression_reaches_the_least_squares_fit(tmp_path):
    spec, summary = train("linear_regression.yaml", tmp_path)
    splits = prepare_data(spec).splits  # the run's split and standardization

    def with_intercept(x):
        return np.column_stack([x, np.ones(len(x))])

    coef = np.linalg.lstsq(with_intercept(splits["train"]["x"]), splits["train"]["y"], rcond=None)[0]
    pred, y = with_intercept(splits["test"]["x"]) @ coef, splits["test"]["y"]
    r2_closed_form = 1 - np.sum((pred - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert abs(summary["test"]["r2"] - r2_closed_form) < 1e-3


@pytest.mark.slow
def test_digits_mlp_reaches_97_percent_test_accuracy(tmp_path):
    _, summary = train("mlp_digits.yaml", tmp_path)  # the full run (1200 steps)
    assert summary["test"]["accuracy"] >= 0.97
