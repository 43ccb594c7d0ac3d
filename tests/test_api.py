"""The public API: its names are pinned, and every example in docs/api.md runs as written."""

import re
from pathlib import Path

import pytest

import specgrad
from specgrad import api

ROOT = Path(__file__).resolve().parents[1]

PUBLIC = [
    "Diagnostic",
    "ERRORS",
    "Model",
    "ParamCheck",
    "Run",
    "Spec",
    "SpecError",
    "UnsupportedOpset",
    "check",
    "compare_runs",
    "compile",
    "config_text",
    "connect",
    "diagnose",
    "diagnosis_text",
    "evaluate",
    "export",
    "find_runs",
    "find_specs",
    "flag_errors",
    "gradcheck",
    "graph",
    "launched_rank",
    "load",
    "load_sweep",
    "open_run",
    "plot",
    "plot_runs",
    "predict",
    "run_sweep",
    "runs_table",
    "schema",
    "split_specs",
    "train",
    "train_run_dir",
    "validate_file",
]


def test_public_names_are_pinned():
    """Adding or removing a public name is a decision: this list changes with it (and docs/api.md)."""
    assert sorted(api.__all__) == PUBLIC
    assert sorted(n for n in specgrad.__all__ if n != "__version__") == PUBLIC
    for name in PUBLIC:
        assert getattr(specgrad, name) is getattr(api, name)
        assert f"`{name}" in (ROOT / "docs" / "api.md").read_text(), f"{name} is not documented in docs/api.md"
    with pytest.raises(AttributeError):
        _ = specgrad.not_a_name


@pytest.mark.slow
def test_docs_examples_run(tmp_path, monkeypatch):
    """Each ```python block of docs/api.md, in order, in one namespace (with `tmp` a fresh folder)."""
    monkeypatch.chdir(ROOT)
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "docs" / "api.md").read_text(), re.S)
    assert len(blocks) >= 6
    namespace = {"tmp": tmp_path}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/api.md block {i + 1}", "exec"), namespace)  # the doc's own code


def test_load_mapping_reports_located_errors(monkeypatch):
    """A mapping is checked as a file's text is: the same diagnostics, located in '<mapping>'."""
    monkeypatch.chdir(ROOT)
    import yaml

    values = yaml.safe_load((ROOT / "models" / "poly.yaml").read_text())
    values["optimizer"]["lr"] = "fast"
    with pytest.raises(specgrad.SpecError) as e:
        specgrad.load(values)
    (diag,) = e.value.diagnostics
    assert diag.location.file == "<mapping>" and "optimizer.lr must be a number" in diag.message


def test_load_mapping_refuses_values_yaml_cannot_hold():
    with pytest.raises(specgrad.SpecError, match="plain values"):
        specgrad.load({"specgrad": 1, "name": "x", "seed": object()})


def test_errors_are_what_the_cli_prints(tmp_path, monkeypatch):
    """A folder that is no run: api.evaluate raises one of api.ERRORS, and `specgrad eval` prints its message."""
    import subprocess
    import sys

    with pytest.raises(api.ERRORS) as e:
        api.evaluate(tmp_path)
    cli = subprocess.run(
        [sys.executable, "-m", "specgrad.cli", "eval", str(tmp_path)], capture_output=True, text=True, cwd=ROOT
    )
    assert cli.returncode == 1 and cli.stderr.strip() == f"error: {e.value}"


def test_train_run_dir(tmp_path, monkeypatch):
    """--run-dir wins; --resume with no run of the name is a RunError naming it; else a new runs/NAME/STAMP."""
    monkeypatch.chdir(tmp_path)
    assert api.train_run_dir("poly.yaml", "poly", run_dir="here") == Path("here")
    with pytest.raises(api.ERRORS, match="nothing to resume: no run of 'poly' under runs/poly"):
        api.train_run_dir("poly.yaml", "poly", resume=True)
    fresh = api.train_run_dir("poly.yaml", "poly")
    assert fresh.parent == Path("runs/poly") and not fresh.exists()


def test_config_text_and_flag_errors(monkeypatch):
    monkeypatch.chdir(ROOT)
    import yaml

    text = api.config_text("models/poly.yaml", ["optimizer.lr=0.5"])
    assert yaml.safe_load(text)["optimizer"]["lr"] == 0.5
    assert api.flag_errors(["models/poly.yaml"], ["optimizer.lr=0.5"]) == []
    (error,) = api.flag_errors(["models/poly.yaml"], ["optimizer.lr"])
    assert "expected --set KEY=VALUE" in error.message


def test_a_batch_of_other_shapes_than_declared_is_refused_not_broadcast(tmp_path, monkeypatch):
    """A [5] target against a [5, 1] prediction would broadcast into [5, 5]: a wrong loss, silently. Every
    way of feeding a compiled model checks the declared shapes (the batch dim one size across fields)."""
    import numpy as np

    from specgrad.engine.ops import ShapeError

    monkeypatch.chdir(tmp_path)
    np.savez("d.npz", x=np.ones((8, 3)), y=np.ones((8, 1)))  # the data the spec declares, though unused here
    spec = specgrad.load(
        {
            "specgrad": 1,
            "name": "shapes",
            "data": {"source": "npz", "path": "d.npz"},
            "model": {
                "inputs": {"x": [3]},
                "nodes": [{"o": {"layer": "linear", "input": "x", "units": 1}}],
                "output": "o",
            },
            "loss": "mse",
            "optimizer": {"type": "sgd", "lr": 0.1},
            "train": {"steps": 1},
        }
    )
    model = specgrad.compile(spec)
    params = model.init_params()
    x = np.ones((5, 3))
    good = {"x": x, "y": np.ones((5, 1))}
    assert np.isfinite(model.loss_and_grads(params, good)[0])
    for batch, message in [
        ({"x": x, "y": np.ones(5)}, r"'y' is \[5\]: the graph declares \[B, 1\]"),
        ({"x": x, "y": np.ones((4, 1))}, r"'y' is \[4, 1\]: the graph declares \[B, 1\] and 'x' has B = 5"),
        ({"x": np.ones((5, 2)), "y": np.ones((5, 1))}, r"'x' is \[5, 2\]: the graph declares \[B, 3\]"),
    ]:
        with pytest.raises(ShapeError, match=message):
            model.loss_and_grads(params, batch)
        with pytest.raises(ShapeError, match=message):
            model.evaluate(params, batch)
        with pytest.raises(ShapeError, match=message):
            model.hvp(params, batch, {name: np.ones(shape) for name, shape in model.param_shapes.items()})
    with pytest.raises(ShapeError, match=r"'o.weight' is \[2, 1\]"):
        model.forward({**params, "o.weight": np.ones((2, 1))}, {"x": x})


def test_run_predict_refuses_missing_inputs_with_a_documented_error(tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.chdir(ROOT)
    run = specgrad.train(specgrad.load("models/mlp_moons.yaml", ["train.epochs=1"]), tmp_path / "run")
    with pytest.raises(api.ERRORS, match=r"input: no field 'x' \(the model reads x; given: none\)"):
        run.predict({})
    with pytest.raises(api.ERRORS, match="given: z"):
        run.predict({"z": np.zeros((2, 2))})
    assert run.predict({"x": np.zeros((2, 2))})["logits"].shape == (2, 2)


def test_load_refuses_arguments_of_the_wrong_kind_with_a_spec_error(monkeypatch):
    monkeypatch.chdir(ROOT)
    deep: list = []
    inner = deep
    for _ in range(400):  # deeper than Python's YAML emitter recurses
        inner.append([])
        inner = inner[0]
    for source, overrides, message in [
        ([1, 2], (), "a spec is a file path or a mapping, got list"),
        ({"specgrad": 1, "vars": deep}, (), "a spec mapping nested too deeply"),
        ("models/poly.yaml", [1], "an override is a 'path=value' string, got 1"),
        ("models/poly.yaml", ["name=" + "a" * 300], "name must be at most 200 characters, got 300"),
    ]:
        with pytest.raises(specgrad.SpecError, match=message):
            specgrad.load(source, overrides)
