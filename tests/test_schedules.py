"""The lr sequence of each schedule, against closed forms written out here, and the lr actually logged."""
import json
import math

import numpy as np
import pytest

from conftest import MODELS
from specgrad.optim.schedules import SCHEDULES, make_schedule
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec

LR = 0.1


def seq(settings, total):
    f = make_schedule(settings, LR, total)
    return [f(s) for s in range(total)]


def test_constant():
    assert seq("constant", 4) == [LR] * 4
    assert seq(None, 2) == [LR] * 2


def test_step():
    assert seq({"type": "step", "step_size": 2, "gamma": 0.5}, 6) == [0.1, 0.1, 0.05, 0.05, 0.025, 0.025]


def test_multistep():
    np.testing.assert_allclose(seq({"type": "multistep", "milestones": [2, 5], "gamma": 0.1}, 7),
                               [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001], rtol=1e-12)


def test_exponential():
    np.testing.assert_allclose(seq({"type": "exponential", "gamma": 0.9}, 4), [0.1, 0.09, 0.081, 0.0729], rtol=1e-12)


def test_cosine_with_a_floor():
    got = seq({"type": "cosine", "min_lr": 0.02}, 5)
    np.testing.assert_allclose(got, [0.1, 0.02 + 0.04 * (1 + math.cos(math.pi / 5)), 0.02 + 0.04 * (1 + math.cos(2 * math.pi / 5)),
                                     0.02 + 0.04 * (1 + math.cos(3 * math.pi / 5)), 0.02 + 0.04 * (1 + math.cos(4 * math.pi / 5))],
                               rtol=1e-12)
    assert min(got) > 0.02 and make_schedule({"type": "cosine", "min_lr": 0.02}, LR, 5)(5) == pytest.approx(0.02)


def test_linear_warmup_then_the_schedule_over_the_rest():
    got = seq({"type": "step", "step_size": 2, "gamma": 0.5, "warmup": {"steps": 4}}, 8)
    np.testing.assert_allclose(got, [0.0, 0.025, 0.05, 0.075, 0.1, 0.1, 0.05, 0.05], rtol=1e-12)
    got = seq({"type": "cosine", "warmup": {"steps": 2, "start_factor": 0.5}}, 6)
    np.testing.assert_allclose(got[:3], [0.05, 0.075, 0.1], rtol=1e-12)
    np.testing.assert_allclose(got[3:], [0.05 * (1 + math.cos(math.pi * s / 4)) for s in (1, 2, 3)], rtol=1e-12)


def test_onecycle_matches_torch_onecycle_closed_form():
    total, peak = 10, 1.0
    got = [make_schedule({"type": "onecycle", "max_lr": peak}, LR, total)(s) for s in range(total)]
    initial, final = peak / 25, peak / 25 / 1e4
    up_end, down_end = 0.3 * total - 1, total - 1

    def anneal(a, b, pct):
        return b + (a - b) / 2 * (math.cos(math.pi * pct) + 1)
    want = [anneal(initial, peak, s / up_end) if s <= up_end else anneal(peak, final, (s - up_end) / (down_end - up_end))
            for s in range(total)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == pytest.approx(initial) and got[2] == pytest.approx(peak) and got[-1] == pytest.approx(final)


def test_every_registered_schedule_is_checked_here():
    assert set(SCHEDULES.names()) == {"constant", "step", "multistep", "exponential", "cosine", "onecycle"}


def test_the_lr_of_every_step_is_logged(tmp_path):
    spec = load_spec(MODELS / "poly.yaml", ["train.steps=12", "schedule={type: multistep, milestones: [3, 7], "
                                            "warmup: {steps: 2}}"])
    Trainer(spec, tmp_path).run()
    logged = [json.loads(l)["lr"] for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    f = make_schedule({"type": "multistep", "milestones": [3, 7], "warmup": {"steps": 2}}, 1e-3, 12)
    assert logged == [f(s) for s in range(12)]
    assert len(set(logged)) == 5      # two warmup values, then the three levels of the multistep
