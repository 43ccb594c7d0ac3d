"""Layers in a run: train/eval modes, batchnorm's running statistics in checkpoints, bit-exact resume with
dropout, and layer specs checked with located errors."""

import os
import signal
import textwrap

import numpy as np
import pytest
from conftest import run_cli

from specgrad.base.diagnostics import Location, SpecError
from specgrad.base.rng import batch_key
from specgrad.model.build import build_model, init_state
from specgrad.model.metrics import evaluate
from specgrad.run.checkpoint import latest_checkpoint, param_key, state_key
from specgrad.run.trainer import Hooks, Trainer
from specgrad.spec import load_spec

SPEC = """\
specgrad: 1
name: bn_dropout
seed: 3
data: {source: synthetic, function: sin(3*x), n: 100, noise: 0.05}
model:
  inputs: {x: []}
  nodes:
    - phi: {layer: polynomial, degree: 3}
    - h: {layer: linear, units: 16, bias: false}   # batchnorm would cancel a bias (its gradient is 0)
    - bn: {layer: batchnorm}
    - a: tanh(bn)
    - d: {layer: dropout, rate: 0.3}
    - out: {layer: linear, units: 1, init: {weight: {type: normal, std: 0.1}}}
    - y_hat: {op: squeeze, args: [out], axis: -1}
  output: y_hat
loss: mse
optimizer: {type: adam, lr: 0.01}
train: {steps: 40, batch_size: 16, checkpoint: {every: 10}}
"""


@pytest.fixture
def spec_file(tmp_path):
    path = tmp_path / "bn.yaml"
    path.write_text(SPEC)
    return path


def test_running_statistics_are_state_saved_in_checkpoints(spec_file, tmp_path):
    trainer = Trainer(load_spec(spec_file), tmp_path / "run")
    summary = trainer.run()
    ckpt = latest_checkpoint(tmp_path / "run" / "checkpoints")
    model = trainer.model
    assert list(model.state) == ["bn.running_mean", "bn.running_var"]
    for name, first in init_state(model).items():
        saved = ckpt.arrays[state_key(name)]
        assert saved.tobytes() == trainer.train_step.state[name].tobytes()
        assert not np.allclose(saved, first)  # 40 steps moved them
    assert param_key("bn.scale") in ckpt.arrays and param_key("bn.running_mean") not in ckpt.arrays
    # the summary's loss is the eval-mode loss: running statistics, no dropout
    fields = trainer.splits["train"]
    assert summary["train"]["loss"] == evaluate(model, trainer.params, fields, (), trainer.train_step.state)["loss"]
    train_mode = model.plan([model.loss])(
        *model.feed(fields, trainer.params, trainer.train_step.state, batch_key(0, 0))
    )
    assert float(train_mode[0]) != summary["train"]["loss"]


def test_resumed_run_with_batchnorm_and_dropout_is_bitwise_equal(spec_file, tmp_path):
    Trainer(load_spec(spec_file), tmp_path / "a").run()

    def stop_at(step, loss):
        if step == 23:  # Ctrl-C between checkpoints: the run saves step 23 and stops
            os.kill(os.getpid(), signal.SIGINT)

    interrupted = Trainer(load_spec(spec_file), tmp_path / "b", Hooks(on_step=stop_at)).run()
    assert interrupted["status"] == "interrupted" and interrupted["steps"] == 23
    Trainer(load_spec(spec_file), tmp_path / "b").run(resume=True)
    a = latest_checkpoint(tmp_path / "a" / "checkpoints")
    b = latest_checkpoint(tmp_path / "b" / "checkpoints")
    assert a.step == b.step == 40
    assert a.arrays.keys() == b.arrays.keys() and state_key("bn.running_var") in a.arrays
    for key in a.arrays:
        assert a.arrays[key].tobytes() == b.arrays[key].tobytes(), key
    assert (tmp_path / "a" / "metrics.jsonl").read_text() == (tmp_path / "b" / "metrics.jsonl").read_text()


def test_dropout_changes_the_training_run(spec_file, tmp_path):
    # the trainer really feeds dropout a key: at rate 0 the run ends with other parameters
    a = Trainer(load_spec(spec_file), tmp_path / "a").run()
    b = Trainer(load_spec(spec_file, ["model.nodes.4.d.rate=0.0"]), tmp_path / "b").run()
    assert a["train"]["loss"] != b["train"]["loss"]


@pytest.mark.slow
def test_cli_trains_a_layer_spec(spec_file, tmp_path):
    result = run_cli("train", spec_file, "--run-dir", tmp_path / "run", "--quiet")
    assert result.returncode == 0, result.stderr


BAD = """\
specgrad: 1
name: bad
data: {{source: npz, path: d.npz}}
loss: mse
optimizer: {{type: sgd, lr: 0.1}}
train: {{steps: 1}}
model:
  inputs: {inputs}
  output: y_hat
  nodes:
{nodes}"""


def spec_errors(tmp_path, nodes: str, inputs="{x: [4]}") -> list[str]:
    """'line:col: message' of each error in a spec with these nodes (line 11 is the first node)."""
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 4)), y=np.zeros(10))
    path = tmp_path / "bad.yaml"
    path.write_text(BAD.format(inputs=inputs, nodes=textwrap.indent(textwrap.dedent(nodes), "    ")))
    try:
        load_spec(path)
    except SpecError as e:
        return [f"{d.location.line}:{d.location.col}: {d.message}" for d in e.diagnostics]
    return []


def test_layer_spec_errors_are_located(tmp_path):
    errors = spec_errors(
        tmp_path,
        """\
        - h: {layer: lineer, units: 8}
        - y_hat: {layer: linear, unit: 1}
        """,
    )
    assert errors == [
        "11:18: unknown layer 'lineer'; did you mean 'linear'?",
        "12:30: unknown key 'unit' in model.nodes[1].y_hat; did you mean 'units'?",
    ]


def test_layer_build_errors_are_located(tmp_path):
    errors = spec_errors(
        tmp_path,
        """\
        - h: {layer: linear, input: x, units: 8, init: {wieght: zeros}}
        - r:
            layer: residual
            input: x
            body:
              - a: {layer: linear, units: 5}
              - b: {layer: conv2d, filters: 2, kernel: 1}
        - y_hat: {layer: attention, heads: 3, input: x}
        """,
        inputs="{x: [2, 4]}",
    )
    assert errors == [
        "11:61: node 'h': init names 'wieght', which is not a parameter of this layer; did you mean 'weight'?",
        "17:16: node 'b': conv2d needs images [B, channels, height, width], got shape [B, 2, 5]",
        "18:14: node 'y_hat': 4 units do not split into 3 heads",
    ]


def test_embedding_needs_an_integer_input(tmp_path):
    errors = spec_errors(tmp_path, "- y_hat: {layer: embedding, vocab: 5, units: 1}\n")
    assert errors == [
        "11:14: node 'y_hat': embedding needs integer ids, got float64; declare the model input "
        "as {shape: [4], dtype: int64}"
    ]
    errors = spec_errors(
        tmp_path,
        "- e: {layer: embedding, vocab: 5, units: 1}\n- y_hat: squeeze(e, -1)\n",
        inputs="{x: {shape: [4], dtype: int64}}",
    )
    assert errors == []


def test_layer_inputs_are_checked(tmp_path):
    errors = spec_errors(
        tmp_path,
        """\
        - h: {layer: linear, inputs: [x, x], units: 2}
        - y_hat: {layer: linear, units: 1}
        """,
    )
    assert errors == ["11:10: node 'h': layer linear takes 1 input(s), got 2"]  # y_hat (fed h) is not re-reported
    errors = spec_errors(tmp_path, "- y_hat: {layer: linear, input: x, inputs: [x], units: 1}\n")
    assert errors == ["11:48: node 'y_hat': give either 'input' or 'inputs', not both"]


def test_a_layer_without_input_needs_a_single_model_input():
    spec = {
        "model": {"inputs": {"a": [2], "b": [2]}, "nodes": [{"out": {"layer": "linear", "units": 1}}], "output": "out"},
        "loss": "sse",
        "train": {"steps": 1},
    }
    with pytest.raises(SpecError) as info:
        build_model(spec, lambda path: Location(".".join(map(str, path)), 1, 1))
    assert [(d.location.file, d.message) for d in info.value.diagnostics] == [
        ("model.nodes.0.out", "node 'out': no input: name one with 'input: NAME'")
    ]


def test_train_step_state_round_trip_and_mismatch():
    from specgrad.model.build import TrainStep

    spec = {
        "model": {"inputs": {"x": [3]}, "nodes": [{"out": {"layer": "batchnorm", "input": "x"}}], "output": "out"},
        "loss": "sse",
        "train": {"steps": 1},
    }
    model = build_model(spec, lambda path: None)
    step = TrainStep(model, seed=0)
    x = np.random.default_rng(0).standard_normal((8, 3))
    params = [np.ones(3), np.zeros(3)]
    step([x, np.zeros((8, 3))], params, 0)
    saved = step.state_arrays()
    assert sorted(saved) == ["out.running_mean", "out.running_var"]  # plain names: the run layer keys them
    np.testing.assert_allclose(saved["out.running_mean"], 0.1 * x.mean(0), rtol=1e-14)
    fresh = TrainStep(model, seed=0)
    fresh.load_state(saved)
    assert all(fresh.state[k].tobytes() == step.state[k].tobytes() for k in step.state)
    with pytest.raises(KeyError):
        fresh.load_state({})
    with pytest.raises(ValueError, match="shape"):
        fresh.load_state({**saved, "out.running_var": np.ones(4)})


def test_gradcheck_feeds_model_state_and_the_dropout_key(spec_file):
    from specgrad.run.gradcheck import check_spec

    checks = check_spec(load_spec(spec_file))
    assert [c.name for c in checks] == ["h.weight", "bn.scale", "bn.bias", "out.weight", "out.bias"]
    assert max(c.error for c in checks) < 1e-6
