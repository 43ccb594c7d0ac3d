"""``specgrad plot``: the panels drawn from metrics.jsonl — loss with validation loss, the gradient norm of
each parameter on a log scale, the lr, validation metrics — and a diverged run's huge values."""

import json

import pytest
from conftest import MODELS, run_cli

from specgrad.run.plot import figure
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def records(n=20, val_every=5):
    out = []
    for step in range(1, n + 1):
        r = {
            "step": step,
            "loss": 1.0 / step,
            "lr": 0.1,
            "grad_norm": 1.0,
            "grad_norms": {"l0.weight": 1e-6 / step, "l0.bias": 2e-6, "l1.weight": 0.5},
        }
        if step % val_every == 0:
            r["val"] = {"loss": 1.5 / step + 0.01 * step, "accuracy": 0.5 + step / 100}
        out.append(r)
    return out


def panels(fig):
    return {ax.get_ylabel(): ax for ax in fig.axes}


def test_gradient_norm_panel_has_one_log_curve_per_parameter_and_the_global_norm():
    fig = figure(plt, records(), "run")
    ax = panels(fig)["gradient norm"]
    assert ax.get_yscale() == "log"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["l0.weight", "l0.bias", "l1.weight", "global"]
    low, high = ax.get_ylim()
    assert low <= 1e-6 / 20 and high >= 0.5  # the faint first layer is on the chart
    plt.close(fig)


def test_validation_curves_are_drawn_when_the_run_has_them():
    fig = figure(plt, records(), "run")
    by_label = {line.get_label(): line for line in panels(fig)["loss"].get_lines()}
    assert list(by_label["val loss"].get_xdata()) == [5, 10, 15, 20]
    assert [line.get_label() for line in panels(fig)["validation"].get_lines()] == ["val accuracy"]
    plt.close(fig)
    fig = figure(plt, [{k: v for k, v in r.items() if k != "val"} for r in records()], "run")
    assert "validation" not in panels(fig)
    assert [line.get_label() for line in panels(fig)["loss"].get_lines()] == ["train loss"]
    plt.close(fig)


@pytest.mark.slow
def test_a_diverged_run_plots(tmp_path):
    Trainer(load_spec(MODELS / "poly.yaml", ["optimizer.lr=0.01", "train.steps=300"]), tmp_path).run()
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["loss"] > 1e300  # beyond what matplotlib's log axis can take
    result = run_cli("plot", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
