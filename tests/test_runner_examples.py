"""Every optimizer/schedule example in models/ trains to completion, fast, and fits the data: within 0.5%
of the least-squares optimum's mse where the model can reach it."""

import json

import numpy as np
import pytest
from conftest import MODELS, run_cli

from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec


def least_squares_mse() -> float:
    """numpy.polyfit's mean squared error on poly.yaml's data: the optimum every example aims at."""
    data = Trainer(load_spec(MODELS / "poly.yaml"), "unused").data
    x, y = data["x"], data["y"]
    return float(np.mean((np.polyval(np.polyfit(x, y, 5), x) - y) ** 2))


OPTIMUM_MSE = least_squares_mse()


@pytest.mark.parametrize(
    "name, tolerance",
    [
        ("poly_momentum", 1.005),
        ("poly_onecycle", 1.005),
        ("poly_rmsprop", 1.005),
        ("poly_adamw", 1.005),
        ("poly_adagrad", 2.0),
    ],
)
def test_example_reaches_the_optimum(tmp_path, name, tolerance):
    summary = Trainer(load_spec(MODELS / f"{name}.yaml"), tmp_path).run()
    assert summary["status"] == "completed"
    assert summary["train"]["loss"] <= tolerance * OPTIMUM_MSE


@pytest.mark.slow
def test_early_stopping_example_stops_and_keeps_its_best(tmp_path):
    result = run_cli("train", MODELS / "poly_early_stop.yaml", "--run-dir", tmp_path)
    assert result.returncode == 0 and "early stop at step" in result.stderr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["stopped_early"] and summary["steps"] < 2000 * 5
    assert (tmp_path / "checkpoints" / f"step-{summary['best']['step']:08d}").is_dir()
    assert summary["val"]["r2"] > 0.85


def test_every_optimizer_and_schedule_has_an_example():
    from specgrad.optim.optimizers import OPTIMIZERS
    from specgrad.optim.schedules import SCHEDULES

    specs = [load_spec(p).data for p in sorted(MODELS.glob("*.yaml"))]
    used_opt = {s["optimizer"]["type"] for s in specs}
    used_sched = {
        s.get("schedule", "constant") if isinstance(s.get("schedule", "constant"), str) else s["schedule"]["type"]
        for s in specs
    }
    assert set(OPTIMIZERS.names()) <= used_opt, set(OPTIMIZERS.names()) - used_opt
    assert set(SCHEDULES.names()) <= used_sched, set(SCHEDULES.names()) - used_sched
    assert any("warmup" in (s.get("schedule") or {}) for s in specs if isinstance(s.get("schedule"), dict))
