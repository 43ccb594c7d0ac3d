"""The lr sequence of each schedule, against closed forms written out here, and the lr actually logged."""

import json
import math

import numpy as np
import pytest
from conftest import MODELS

from specgrad.optim.schedules import SCHEDULES, make_schedule
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec

try:  # the test-only oracle: its tests skip where it is not installed
    import torch
except ImportError:
    torch = None

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
    np.testing.assert_allclose(
        seq({"type": "multistep", "milestones": [2, 5], "gamma": 0.1}, 7),
        [0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001],
        rtol=1e-12,
    )


def test_exponential():
    np.testing.assert_allclose(seq({"type": "exponential", "gamma": 0.9}, 4), [0.1, 0.09, 0.081, 0.0729], rtol=1e-12)


def test_cosine_with_a_floor():
    got = seq({"type": "cosine", "min_lr": 0.02}, 5)
    np.testing.assert_allclose(
        got,
        [
            0.1,
            0.02 + 0.04 * (1 + math.cos(math.pi / 5)),
            0.02 + 0.04 * (1 + math.cos(2 * math.pi / 5)),
            0.02 + 0.04 * (1 + math.cos(3 * math.pi / 5)),
            0.02 + 0.04 * (1 + math.cos(4 * math.pi / 5)),
        ],
        rtol=1e-12,
    )
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

    want = [
        anneal(initial, peak, s / up_end) if s <= up_end else anneal(peak, final, (s - up_end) / (down_end - up_end))
        for s in range(total)
    ]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == pytest.approx(initial) and got[2] == pytest.approx(peak) and got[-1] == pytest.approx(final)


def test_every_registered_schedule_is_checked_here():
    assert set(SCHEDULES.names()) == {"constant", "step", "multistep", "exponential", "cosine", "onecycle"}


def test_the_lr_of_every_step_is_logged(tmp_path):
    spec = load_spec(
        MODELS / "poly.yaml", ["train.steps=12", "schedule={type: multistep, milestones: [3, 7], warmup: {steps: 2}}"]
    )
    Trainer(spec, tmp_path).run()
    logged = [json.loads(line)["lr"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    f = make_schedule({"type": "multistep", "milestones": [3, 7], "warmup": {"steps": 2}}, 1e-3, 12)
    assert logged == [f(s) for s in range(12)]
    assert len(set(logged)) == 5  # two warmup values, then the three levels of the multistep


# ---------------------------------------------------------------- onecycle's momentum, against torch.optim

ONECYCLE_SPECS = {  # optimizer settings, and the torch optimizer a port would use
    "sgd": ("{type: sgd, lr: 0.5, momentum: 0.9}", lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9)),
    "sgd_nesterov": (
        "{type: sgd, lr: 0.5, momentum: 0.9, nesterov: true, weight_decay: 0.01}",
        lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9, nesterov=True, weight_decay=0.01),
    ),
    "sgd_without_momentum": ("{type: sgd, lr: 0.5}", lambda p: torch.optim.SGD(p, lr=0.5)),
    "adam": ("{type: adam, lr: 0.05}", lambda p: torch.optim.Adam(p, lr=0.05)),
    "adamw": ("{type: adamw, lr: 0.05, weight_decay: 0.1}", lambda p: torch.optim.AdamW(p, lr=0.05, weight_decay=0.1)),
    "rmsprop": ("{type: rmsprop, lr: 0.01, momentum: 0.5}", lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5)),
}


def _torch_onecycle(make_optimizer, x, y, steps, **onecycle):
    """The same fit ported to PyTorch: mse of powers(x, 5) @ k, full batch, OneCycleLR with its defaults."""
    if torch is None:
        pytest.skip("PyTorch (the test-only oracle) is not installed")
    phi = torch.from_numpy(np.stack([x**j for j in range(6)], axis=1))
    target = torch.from_numpy(y)
    k = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    optimizer = make_optimizer([k])
    max_lr = optimizer.param_groups[0]["lr"]
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=steps, **onecycle)
    losses, momenta = [], []
    for _ in range(steps):
        group = optimizer.param_groups[0]
        momenta.append(group["betas"][0] if "betas" in group else group["momentum"])
        optimizer.zero_grad()
        loss = torch.mean((phi @ k - target) ** 2)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return k.detach().numpy(), losses, momenta


def _specgrad_onecycle(tmp_path, optimizer, steps, schedule="{type: onecycle}"):
    spec = load_spec(
        MODELS / "poly_onecycle.yaml",
        [
            f"optimizer={optimizer}",
            f"schedule={schedule}",
            f"train.steps={steps}",
            "train.batch_size=full",
            "train.log_every=1",
        ],
    )
    trainer = Trainer(spec, tmp_path)
    trainer.run()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    return trainer, losses


@pytest.mark.slow
@pytest.mark.parametrize("name", ONECYCLE_SPECS)
def test_onecycle_cycles_momentum_as_torch_does(name, tmp_path):
    settings, torch_optimizer = ONECYCLE_SPECS[name]
    trainer, losses = _specgrad_onecycle(tmp_path, settings, 40)
    k, torch_losses, torch_momenta = _torch_onecycle(torch_optimizer, trainer.data["x"], trainer.data["y"], 40)
    momentum = trainer.schedule.momentum
    np.testing.assert_allclose([momentum(s) for s in range(40)], torch_momenta, rtol=1e-15, atol=0)
    assert torch_momenta[0] == pytest.approx(0.95) and min(torch_momenta) == pytest.approx(0.85)
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-12, atol=0)
    np.testing.assert_allclose(trainer.params["k"], k, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_cycle_momentum_false_keeps_the_optimizers_momentum(tmp_path):
    settings, torch_optimizer = ONECYCLE_SPECS["sgd"]
    trainer, losses = _specgrad_onecycle(tmp_path, settings, 30, "{type: onecycle, cycle_momentum: false}")
    assert trainer.schedule.momentum is None and trainer.optimizer.momentum == 0.9
    k, torch_losses, momenta = _torch_onecycle(
        torch_optimizer, trainer.data["x"], trainer.data["y"], 30, cycle_momentum=False
    )
    assert set(momenta) == {0.9}
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-12, atol=0)
    np.testing.assert_allclose(trainer.params["k"], k, rtol=1e-12, atol=1e-14)


@pytest.mark.slow
def test_onecycle_momentum_bounds_are_settings(tmp_path):
    settings, torch_optimizer = ONECYCLE_SPECS["adam"]
    trainer, losses = _specgrad_onecycle(
        tmp_path, settings, 30, "{type: onecycle, base_momentum: 0.6, max_momentum: 0.9, pct_start: 0.25}"
    )
    _, torch_losses, momenta = _torch_onecycle(
        torch_optimizer, trainer.data["x"], trainer.data["y"], 30, base_momentum=0.6, max_momentum=0.9, pct_start=0.25
    )
    np.testing.assert_allclose([trainer.schedule.momentum(s) for s in range(30)], momenta, rtol=1e-15)
    np.testing.assert_allclose(losses, torch_losses, rtol=1e-12, atol=0)


@pytest.mark.slow
def test_onecycle_with_an_optimizer_without_momentum_is_a_validate_error(tmp_path):
    from conftest import run_cli

    result = run_cli("validate", MODELS / "poly_onecycle.yaml", "--set", "optimizer={type: adagrad, lr: 0.1}")
    assert result.returncode == 1
    assert "schedule: onecycle cycles the optimizer's momentum" in result.stdout
    assert "set cycle_momentum: false" in result.stdout
    ok = run_cli(
        "validate",
        MODELS / "poly_onecycle.yaml",
        "--set",
        "optimizer={type: adagrad, lr: 0.1}",
        "--set",
        "schedule.cycle_momentum=false",
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["{type: sgd, lr: 0.5}", "{type: adam, lr: 0.05}"])
def test_a_run_resumed_inside_the_momentum_cycle_is_bitwise_the_same(optimizer, tmp_path):
    """The momentum is a closed form of the step and its buffers are in the checkpoint (allocated from the
    start, even for an SGD declared without momentum)."""
    import shutil

    overrides = [f"optimizer={optimizer}", "train.steps=20", "train.batch_size=40", "train.checkpoint={every: 7}"]
    spec = load_spec(MODELS / "poly_onecycle.yaml", overrides)
    whole = Trainer(spec, tmp_path / "whole")
    whole.run()
    shutil.copytree(tmp_path / "whole", tmp_path / "cut")
    for step in (14, 20):
        shutil.rmtree(tmp_path / "cut" / "checkpoints" / f"step-{step:08d}")
    resumed = Trainer(load_spec(MODELS / "poly_onecycle.yaml", overrides), tmp_path / "cut")
    resumed.run(resume=True)
    assert resumed.params["k"].tobytes() == whole.params["k"].tobytes()
