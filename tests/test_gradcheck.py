"""``specgrad gradcheck``: finite differences against the compiled model's gradient, per parameter."""

import dataclasses

import pytest
from conftest import MODELS, run_cli

from specgrad.engine.ops import REGISTRY
from specgrad.run.gradcheck import check_spec
from specgrad.spec import load_spec

MLP = """\
specgrad: 1
name: mlp
seed: 3
data: {source: synthetic, function: sin(3*x), x: {low: -1, high: 1}, n: 50, noise: 0.05}
model:
  inputs: {x: []}
  params:
    W: {shape: [4, 5], init: normal}
    b: {shape: [5], init: normal}
    v: {shape: [5], init: normal}
  nodes:
    - h: tanh(powers(x, 3) @ W + b)
    - y_hat: h @ v
  output: y_hat
loss: mse
optimizer: {type: sgd, lr: 0.1}
train: {steps: 10}
"""


@pytest.mark.slow
@pytest.mark.parametrize("spec", sorted(MODELS.glob("*.yaml")), ids=lambda p: p.name)
def test_gradcheck_passes_on_every_example_spec(spec):
    result = run_cli("gradcheck", spec)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1].endswith(": ok")


@pytest.mark.slow
def test_each_parameter_is_checked_and_reported(tmp_path):
    spec = tmp_path / "mlp.yaml"
    spec.write_text(MLP)
    checks = check_spec(load_spec(spec))
    assert [(c.name, c.shape, c.entries) for c in checks] == [("W", (4, 5), 20), ("b", (5,), 5), ("v", (5,), 5)]
    assert max(c.error for c in checks) < 1e-8
    lines = run_cli("gradcheck", spec, "--batch-size", "4").stdout.splitlines()
    assert [line.split()[0] for line in lines[1:4]] == ["W", "b", "v"]


def test_a_wrong_gradient_fails_the_check(tmp_path, monkeypatch):
    spec = tmp_path / "mlp.yaml"
    spec.write_text(MLP)
    tanh = REGISTRY["tanh"]
    wrong = (lambda g, out, x: g * (1 - out),)  # forgot to square
    monkeypatch.setitem(REGISTRY, "tanh", dataclasses.replace(tanh, vjps=wrong))
    checks = {c.name: c.error for c in check_spec(load_spec(spec))}
    assert checks["W"] > 1e-3 and checks["b"] > 1e-3
    assert checks["v"] < 1e-8  # v's gradient does not pass through tanh's VJP


@pytest.mark.slow
def test_a_float32_spec_is_checked_in_float64(tmp_path):
    spec = tmp_path / "mlp.yaml"
    spec.write_text(MLP + "dtype: float32\n")
    result = run_cli("gradcheck", spec, "--tolerance", "1e-7")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_api_checks_the_spec_it_is_given_in_float64(monkeypatch):
    """The float64 model of the spec as composed: its --set overrides kept, and a mapping works too."""
    import yaml

    import specgrad

    monkeypatch.chdir(MODELS.parent)
    overrides = ["dtype=float32", "model.nodes.0.phi=powers(x, 3)", "model.params.k.shape=[4]"]
    (check,) = specgrad.gradcheck(specgrad.load("models/poly.yaml", overrides))
    assert check.shape == (4,) and check.error < 1e-6
    values = yaml.safe_load((MODELS / "poly.yaml").read_text())
    values["dtype"] = "float32"
    (check,) = specgrad.gradcheck(specgrad.load(values))
    assert check.shape == (6,) and check.error < 1e-6


@pytest.mark.slow
def test_the_command_exits_1_above_tolerance_and_on_a_bad_spec(tmp_path):
    result = run_cli("gradcheck", MODELS / "poly.yaml", "--tolerance", "1e-14")
    assert result.returncode == 1 and "FAILED" in result.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(MLP.replace("tanh(", "tanhh("))
    result = run_cli("gradcheck", bad)
    assert result.returncode == 1 and "unknown op 'tanhh'; did you mean 'tanh'?" in result.stderr
    assert "Traceback" not in result.stderr
