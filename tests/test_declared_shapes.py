"""Every parameter and state array has exactly its declared shape, 0-d (``shape: []``) included: when
created, after a training step, in the checkpoint, after a restore, and when a run is evaluated or predicts.
Shape rules never accept a 0-d operand that the forward would treat differently."""

import itertools
import re
import textwrap

import numpy as np
import pytest
from conftest import MODELS, ROOT, run_cli, tiered

from specgrad.engine.ops import REGISTRY
from specgrad.engine.ops.registry import ShapeError
from specgrad.model.build import init_params, init_state
from specgrad.run.checkpoint import (
    CheckpointError,
    TrainingArrays,
    expected_arrays,
    latest_checkpoint,
    param_key,
    save_checkpoint,
)
from specgrad.run.evaluate import load_run
from specgrad.run.trainer import Trainer
from specgrad.spec import check_spec, load_spec

SPECS = sorted(
    p
    for p in [*MODELS.glob("*.yaml"), *(ROOT / "tests" / "data").rglob("*.yaml")]
    if "hostile" not in p.parts and check_spec(p)[0]
)  # the hostile corpus is not for training


def declared(model) -> dict[str, tuple]:
    """Every parameter's and state array's shape as the compiled spec declares it."""
    return {key: e.shape for key, e in expected_arrays(model.params, model.state).items()}


def shapes(params: dict, state: dict) -> dict[str, tuple]:
    return {key: e.shape for key, e in expected_arrays(params, state).items()}


def test_the_walk_covers_the_examples_and_a_scalar():
    assert len(SPECS) >= 16 and MODELS / "logistic_regression.yaml" in SPECS
    model = load_spec(MODELS / "logistic_regression.yaml").model
    assert model.params["b"].shape == ()  # declared `shape: []`: a 0-d bias, not a vector of one


@pytest.mark.slow
@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_declared_shape_is_the_shape_everywhere(path, tmp_path):
    spec = load_spec(path)
    want = declared(spec.model)
    assert shapes(init_params(spec.model, np.random.default_rng(0)), init_state(spec.model)) == want

    trainer = Trainer(spec, tmp_path / "run")
    trainer.total_steps = 1  # one step, one checkpoint, the summary's evaluation
    assert trainer.run()["status"] == "completed"
    assert shapes(trainer.params, trainer.train_step.state) == want
    slots = trainer.optimizer.slots()
    for slot, arrays in slots.items():
        assert {n: a.shape for n, a in arrays.items()} == {n: want[param_key(n)] for n in arrays}, slot

    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    saved = TrainingArrays.unpack(ckpt.arrays)
    assert {k: v.shape for k, v in TrainingArrays(saved.params, {}, saved.state).pack().items()} == want

    resumed = Trainer(spec, tmp_path / "run")
    resumed._restore()
    assert shapes(resumed.params, resumed.train_step.state) == want
    assert all(np.array_equal(resumed.params[n], trainer.params[n]) for n in trainer.params)

    run = load_run(tmp_path / "run")  # what eval and predict use
    assert shapes(run.params, run.state) == want


@pytest.mark.slow
def test_a_checkpoint_with_another_shape_is_refused_by_eval(tmp_path):
    """A checkpoint made when a 0-d bias was created as [1] is not silently fed to the model."""
    spec = load_spec(MODELS / "logistic_regression.yaml")
    trainer = Trainer(spec, tmp_path / "run")
    trainer.total_steps = 1
    trainer.run()
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    arrays = {**ckpt.arrays, param_key("b"): ckpt.arrays[param_key("b")].reshape(1)}
    save_checkpoint(tmp_path / "run" / "checkpoints", 2, arrays, {**ckpt.state, "step": 2})
    # refused from its header before its data is read: eval says so and falls back to the last good one,
    # and asking for that checkpoint by its step is an error
    refusal = rf"'{param_key('b')}.npy' is float64\[1\]; this model expects float64\[\]"
    warned = []
    run = load_run(tmp_path / "run", warned.append)
    assert run.step == 1 and run.params["b"].shape == ()
    assert any(re.search(refusal, w) and "step-00000002" in w for w in warned), warned
    with pytest.raises(CheckpointError, match=refusal):
        load_run(tmp_path / "run", step=2)


STACKED = """\
    specgrad: 1
    name: stacked_scalars
    data: {source: synthetic, function: 2 + 3*x, x: {low: -1, high: 1}, n: 16, noise: 0.0}
    model:
      inputs: {x: []}
      params:
        a: {shape: [], init: {type: constant, value: 1.5}}
        b: {shape: [], init: {type: constant, value: 2.5}}
      nodes:
        - k: stack(a, b)              # [2]: two scalars side by side
        - y_hat: powers(x, 1) @ k     # a + b x
      output: y_hat
    loss: sse
    optimizer: {type: sgd, lr: 0.01}
    train: {steps: 2, batch_size: full, shuffle: false}
    """


def test_stacked_scalar_parameters_train_the_declared_model(tmp_path):
    path = tmp_path / "stacked.yaml"
    path.write_text(textwrap.dedent(STACKED))
    spec = load_spec(path)
    trainer = Trainer(spec, tmp_path / "run")
    x, y = trainer.data["x"], trainer.data["y"]
    assert np.allclose(y, 2 + 3 * x)
    # by hand: the residual r = a + b x - y; sse = sum r^2; dsse/da = 2 sum r, dsse/db = 2 sum r x
    a, b = 1.5, 2.5
    r = a + b * x - y
    first_loss = np.sum(r**2)
    a1, b1 = a - 0.01 * 2 * np.sum(r), b - 0.01 * 2 * np.sum(r * x)
    second_loss = np.sum((a1 + b1 * x - y) ** 2)
    trainer.run()
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    import json

    losses = [json.loads(line)["loss"] for line in lines]
    assert losses[0] == pytest.approx(first_loss, rel=1e-12)
    assert losses[1] == pytest.approx(second_loss, rel=1e-12)
    assert trainer.params["a"].shape == () and trainer.params["b"].shape == ()
    assert float(trainer.params["a"]) == pytest.approx(a1 - 0.01 * 2 * np.sum(a1 + b1 * x - y), rel=1e-12)


@pytest.mark.parametrize(
    "optimizer",
    [
        "{type: adam, lr: 0.1}",
        "{type: sgd, lr: 0.01, momentum: 0.9}",
        "{type: rmsprop, lr: 0.01, centered: true, momentum: 0.5}",
        "{type: adagrad, lr: 0.1}",
    ],
)
def test_every_optimizer_keeps_a_scalar_scalar(optimizer, tmp_path):
    path = tmp_path / "stacked.yaml"
    path.write_text(textwrap.dedent(STACKED).replace("{type: sgd, lr: 0.01}", optimizer))
    trainer = Trainer(load_spec(path), tmp_path / "run")
    trainer.run()
    assert trainer.params["a"].shape == ()
    assert all(a.shape == () for arrays in trainer.optimizer.slots().values() for a in arrays.values())


@pytest.mark.slow
def test_matmul_by_a_scalar_parameter_is_a_located_validate_error(tmp_path):
    path = tmp_path / "mm.yaml"
    path.write_text(textwrap.dedent(STACKED).replace("powers(x, 1) @ k", "x @ a"))
    result = run_cli("validate", path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"{path}:11:14: error: node 'y_hat': matmul needs values of rank >= 1, got [B] and []" in result.stdout


def _example_calls() -> dict:
    """Each op's example calls (inputs, attrs), as its register() call declares them."""
    return {name: list(op.examples) for name, op in REGISTRY.items() if op.examples}


def _zero_d_variants():
    """Each example call of each op with some of its float inputs replaced by 0-d values."""
    for name, cases in _example_calls().items():
        for inputs, attrs in cases:
            floats = [i for i, a in enumerate(inputs) if isinstance(a, tuple) and a != ()]
            for k in range(1, len(floats) + 1):
                for chosen in itertools.combinations(floats, k):
                    yield name, [() if i in chosen else a for i, a in enumerate(inputs)], attrs


@pytest.mark.parametrize("name,inputs,attrs", tiered(list(_zero_d_variants()), group=lambda case: case[0]))
def test_shape_rules_on_zero_d_operands(name, inputs, attrs):
    """The rule refuses a 0-d operand with a ShapeError (a located validate error), or accepts it with the
    shape the forward then computes: never another exception, never a shape the run will not have."""
    op = REGISTRY[name]
    shapes_in = [a if isinstance(a, tuple) else np.shape(a) for a in inputs]
    try:
        rule = op.infer_shape(*shapes_in, **attrs)
    except ShapeError:
        return
    rng = np.random.default_rng(0)
    values = [rng.random(a) + 0.5 if isinstance(a, tuple) else a for a in inputs]
    assert np.shape(op.forward(*values, **attrs)) == tuple(rule)


def test_gradcheck_of_scalar_parameters(tmp_path):
    from specgrad.run.gradcheck import check_spec as gradcheck

    path = tmp_path / "stacked.yaml"
    path.write_text(textwrap.dedent(STACKED))
    checks = gradcheck(load_spec(path))
    assert [(c.name, c.shape) for c in checks] == [("a", ()), ("b", ())]
    assert max(c.error for c in checks) < 1e-6
