"""`specgrad train --quiet` prints nothing but errors: numpy's own floating-point warnings included."""

import numpy as np
import pytest
from conftest import run_cli

SPEC = """specgrad: 1
name: huge_values
data: {source: npz, path: huge.npz, standardize: [x]}
model:
  inputs: {x: []}
  params: {k: {shape: [2], init: zeros}}
  nodes:
    - phi: powers(x, 1)
    - y_hat: phi @ k
  output: y_hat
loss: sse
optimizer: {type: sgd, lr: 1.0e-3}
train: {steps: 3}
"""


@pytest.mark.slow
def test_numpy_warnings_are_not_printed_under_quiet(tmp_path):
    x = np.linspace(-1, 1, 50)
    x[3], x[4] = 1e308, -1e308  # squaring them to standardize overflows: numpy warns
    np.savez(tmp_path / "huge.npz", x=x, y=np.sin(x))
    (tmp_path / "spec.yaml").write_text(SPEC)
    loud = run_cli("train", tmp_path / "spec.yaml", "--run-dir", tmp_path / "loud", cwd=tmp_path)
    assert loud.returncode == 0 and "RuntimeWarning: overflow" in loud.stderr  # the fault is real
    quiet = run_cli("train", tmp_path / "spec.yaml", "--run-dir", tmp_path / "quiet", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stdout == "" and quiet.stderr == "", quiet.stderr
