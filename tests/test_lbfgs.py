"""L-BFGS against torch.optim.LBFGS (the test-only oracle) step for step: on Rosenbrock's function through
the optimizer alone (every branch of the line search is exercised there), and on models/poly.yaml through
the trainer; models/poly_lbfgs.yaml reaches numpy.polyfit's optimum; checkpoints carry the whole state; and
the settings L-BFGS cannot take are located errors."""

import json

import numpy as np
import pytest
from conftest import MODELS, run_cli
from faults import assert_same_run, killed_run, run_state

from specgrad.data.prepare import prepare_data
from specgrad.optim.lbfgs import LBFGS
from specgrad.optim.optimizers import make_optimizer
from specgrad.run.checkpoint import Expected, latest_checkpoint, optim_key
from specgrad.run.trainer import Hooks, Trainer
from specgrad.spec import load_spec

POLY_LBFGS = MODELS / "poly_lbfgs.yaml"


def rosenbrock(w):
    x, y = w[:-1], w[1:]
    return (100 * (y - x * x) ** 2 + (1 - x) ** 2).sum()


def rosenbrock_grad(w):
    x, y = w[:-1], w[1:]
    g = np.zeros_like(w)
    g[:-1] += -400 * x * (y - x * x) - 2 * (1 - x)
    g[1:] += 200 * (y - x * x)
    return g


def ours(settings, w0, steps):
    """Trajectory (parameters after each step) and evaluations per step; two parameters, as a model has."""
    params = {"a": w0[:2].copy(), "b": w0[2:].copy()}
    opt = make_optimizer({"type": "lbfgs", **settings}, params)

    def flat():
        return np.concatenate([params["a"], params["b"]])

    def closure():
        g = rosenbrock_grad(flat())
        opt.grads["a"][...], opt.grads["b"][...] = g[:2], g[2:]
        return float(rosenbrock(flat()))

    path, evals = [], []
    for _ in range(steps):
        g = rosenbrock_grad(flat())
        evals.append(
            opt.step({"a": g[:2], "b": g[2:]}, settings.get("lr", 1.0), loss=float(rosenbrock(flat())), closure=closure)
        )
        path.append(flat())
    return np.array(path), evals


def theirs(settings, w0, steps):
    torch = pytest.importorskip("torch")  # the test-only oracle
    a, b = (torch.tensor(v.copy(), requires_grad=True) for v in (w0[:2], w0[2:]))
    kwargs = dict(settings)
    kwargs["line_search_fn"] = None if kwargs.get("line_search_fn") == "none" else "strong_wolfe"
    opt = torch.optim.LBFGS([a, b], **kwargs)

    def closure():
        opt.zero_grad()
        loss = rosenbrock(torch.cat([a, b]))
        loss.backward()
        return loss

    path, evals = [], []
    for _ in range(steps):
        before = opt.state[a].get("func_evals", 0)
        opt.step(closure)
        path.append(torch.cat([a, b]).detach().numpy().copy())
        evals.append(opt.state[a]["func_evals"] - before)
    return np.array(path), evals


@pytest.mark.parametrize(
    "settings",
    [
        {},  # torch's defaults: 20 iterations a step
        {"max_iter": 5, "history_size": 3},  # the history shifts
        {"max_iter": 1, "max_eval": 10},  # one iteration a step: state carried across steps
        {"max_iter": 4, "max_eval": 5, "lr": 0.7},  # the evaluation budget cuts line searches short
        {"max_iter": 3, "lr": 0.5, "line_search_fn": "none"},  # fixed steps
        {"tolerance_grad": 1e-3, "tolerance_change": 1e-4},  # stops early
    ],
)
def test_trajectory_equals_torch_on_rosenbrock(settings):
    w0 = np.array([-1.2, 1.0, -0.5, 0.8, 1.5])
    (path, evals), (expected, expected_evals) = ours(settings, w0, 12), theirs(settings, w0, 12)
    assert evals == expected_evals
    np.testing.assert_allclose(path, expected, rtol=1e-9, atol=0)


def test_trajectory_equals_torch_on_poly_through_the_trainer(tmp_path):
    """The trainer's steps are torch's step(closure) calls: the same losses, evaluations and parameters."""
    spec = load_spec(POLY_LBFGS, ["optimizer.max_iter=3", "optimizer.max_eval=6", "train.steps=6"])
    trainer = Trainer(spec, tmp_path)
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]

    data = prepare_data(spec).splits["train"]
    torch = pytest.importorskip("torch")
    x, y = (torch.tensor(data[k]) for k in ("x", "y"))
    k = torch.zeros(6, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([k], lr=1.0, max_iter=3, max_eval=6, line_search_fn="strong_wolfe")
    phi = x[:, None] ** torch.arange(6)

    def closure():
        opt.zero_grad()
        loss = ((phi @ k - y) ** 2).sum()
        loss.backward()
        return loss

    for record in records:
        before = opt.state[k].get("func_evals", 0)
        loss = float(opt.step(closure).detach())
        assert record["loss"] == pytest.approx(loss, rel=1e-9, abs=0)
        assert record["evals"] == opt.state[k]["func_evals"] - before
    np.testing.assert_allclose(trainer.params["k"], k.detach().numpy(), rtol=1e-9, atol=0)


@pytest.mark.parametrize("line_search", ["strong_wolfe", "none"])
def test_a_learning_rate_of_zero_moves_nothing(tmp_path, line_search):
    """A warmup from 0 gives L-BFGS lr = 0 on the first step: that step evaluates once and moves nothing (the
    line search divided by the zero-length bracket: a ZeroDivisionError after validate said valid); the
    next steps train as usual."""
    warm = ["schedule={type: constant, warmup: {steps: 2}}", f"optimizer.line_search_fn={line_search}"]
    first = Trainer(load_spec(POLY_LBFGS, [*warm, "train.steps=1"]), tmp_path / "one")
    first.run()
    assert not first.params["k"].any()  # still the zeros it started from
    trainer = Trainer(load_spec(POLY_LBFGS, [*warm, "train.steps=4"]), tmp_path / "four")
    trainer.run()
    records = [json.loads(line) for line in (tmp_path / "four" / "metrics.jsonl").read_text().splitlines()]
    assert records[0]["evals"] == 1 and records[1]["loss"] == records[0]["loss"]
    assert records[-1]["loss"] < records[1]["loss"]


def test_poly_lbfgs_reaches_polyfit_within_50_iterations(tmp_path):
    spec = load_spec(POLY_LBFGS)
    settings = spec.data["optimizer"]
    assert spec.data["train"]["steps"] * settings["max_iter"] <= 50  # iterations, at most
    trainer = Trainer(spec, tmp_path)
    summary = trainer.run()
    assert int(trainer.optimizer.n_iter) <= 50
    data = prepare_data(spec).splits["train"]
    coefficients = np.polyfit(data["x"], data["y"], 5)
    optimum = float(np.sum((np.polyval(coefficients, data["x"]) - data["y"]) ** 2))
    assert summary["train"]["loss"] == pytest.approx(optimum, rel=1e-6)
    # each logged step is one iteration (max_iter: 1): the loss at its start is within 1e-6 from step 21 on
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first = next(i for i, loss in enumerate(losses, start=1) if abs(loss / optimum - 1) <= 1e-6)
    assert first <= 25


def test_state_round_trips_through_a_checkpoint_and_resume_is_bitwise(tmp_path, no_fsync):
    overrides = ["optimizer.max_iter=2", "optimizer.history_size=3", "train.steps=12", "train.checkpoint={every: 3}"]
    Trainer(load_spec(POLY_LBFGS, overrides), tmp_path / "whole").run()
    whole = run_state(tmp_path / "whole")
    ckpt = latest_checkpoint(tmp_path / "whole" / "checkpoints")
    assert ckpt.arrays[optim_key("old_dirs")].shape == (3, 6)  # a full history, saved
    # killed in the middle of a line search (evaluation 17 of the run), resumed from step 3's checkpoint
    killed_run(POLY_LBFGS, overrides, tmp_path / "killed", batch=17)
    Trainer(load_spec(POLY_LBFGS, overrides), tmp_path / "killed").run(resume=True)
    assert_same_run(run_state(tmp_path / "killed"), whole)


def test_a_checkpoint_with_a_damaged_history_is_a_clear_error(tmp_path):
    optimizer = LBFGS({"k": np.zeros(6)}, history_size=3)
    arrays = optimizer.state_arrays()
    arrays["old_dirs"], arrays["old_steps"], arrays["ro"] = np.zeros((4, 6)), np.zeros((4, 6)), np.zeros(4)
    with pytest.raises(ValueError, match="k <= 3"):
        optimizer.load_state_arrays(arrays)
    arrays["old_dirs"], arrays["old_steps"], arrays["ro"] = np.zeros((2, 5)), np.zeros((2, 6)), np.zeros(2)
    with pytest.raises(ValueError, match="old_dirs"):
        optimizer.load_state_arrays(arrays)


@pytest.mark.slow
@pytest.mark.parametrize(
    "setting, place, message",
    [
        ("train.batch_size=32", "batch_size", "needs full-batch training"),
        ("train.accumulate=2", "accumulate", "whole-data steps"),
        ("train.clip={max_norm: 1.0}", "clip", "needs the true gradient"),
        ("optimizer.groups=[{match: k, lr: 0.1}]", "groups", "no parameter groups"),
    ],
)
def test_settings_lbfgs_cannot_take_are_located_errors(tmp_path, setting, place, message):
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        (MODELS / "poly_lbfgs.yaml").read_text().replace("extends: poly.yaml", f"extends: {MODELS / 'poly.yaml'}")
    )
    result = run_cli("validate", spec, "--set", setting, "--format", "json")
    assert result.returncode == 1
    errors = [json.loads(line) for line in result.stdout.splitlines()]
    assert any(message in e["message"] for e in errors), errors
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_train_refuses_minibatch_lbfgs_before_running(tmp_path):
    result = run_cli("train", POLY_LBFGS, "--set", "train.batch_size=32", "--run-dir", tmp_path / "run")
    assert result.returncode == 1
    assert "--set train.batch_size=32:1:" in result.stderr  # located at the value that is wrong
    assert "needs full-batch training" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_history_longer_than_history_size_is_refused_and_resume_falls_back(tmp_path):
    overrides = ["train.steps=4", "train.checkpoint={every: 2}"]
    Trainer(load_spec(POLY_LBFGS, overrides), tmp_path).run()
    # step 4 holds 3 curvature pairs, step 2 one: with history_size 1 the loader refuses step 4 from its
    # header (never read, never truncated) and the run goes on from step 2, whose history fits
    warned = []
    shorter = Trainer(
        load_spec(POLY_LBFGS, overrides + ["optimizer.history_size=1", "train.steps=6"]),
        tmp_path,
        Hooks(on_warning=warned.append),
        allow_spec_change=True,
    )
    assert shorter.run(resume=True)["steps"] == 6
    refusal = f"'{optim_key('old_dirs')}.npy' is float64[3, 6]; this model expects float64[up to 1, 6]"
    assert any(
        "step-00000004" in w and refusal in w and "falling back to" in w and w.endswith("step-00000002") for w in warned
    ), warned
    assert latest_checkpoint(tmp_path / "checkpoints").arrays[optim_key("old_dirs")].shape == (1, 6)
    # an empty history (a checkpoint before the first pair) fits any history_size
    assert Expected((1, 6), np.dtype(np.float64), grows=True).admits((0, 6))
