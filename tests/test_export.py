"""`specgrad export`: every op's ONNX lowering against its numpy forward under onnxruntime (the test
enumerates the registry), every model in models/ trained briefly and exported, its onnxruntime outputs
compared with `specgrad predict`'s on the test split in float32 and float64, and the command's errors."""

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import MODELS, ROOT, run_cli, tiered

from specgrad.base.diagnostics import SpecError
from specgrad.data.sources import load_splits
from specgrad.engine.ir import Graph
from specgrad.engine.ops import REGISTRY
from specgrad.engine.ops.onnx_lowerings import NotExportable
from specgrad.engine.plan import Plan
from specgrad.run.evaluate import load_run, predict
from specgrad.run.export import DEFAULT_OPSET, OPSETS, ExportError, export_onnx, relative_difference
from specgrad.run.export.onnx import DECODERS, to_onnx
from specgrad.run.runlog import spec_hash
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec

# Tests that train every example or run the command in a subprocess take over a second: marked slow.
# relative to each output's largest magnitude (docs/export.md)
TOLERANCE = {np.float64: 1e-9, np.float32: 1e-5}
CASES = {name: op.examples for name, op in REGISTRY.items() if op.examples}
EXPORTABLE = sorted(name for name, op in REGISTRY.items() if not op.internal and not isinstance(op.onnx, NotExportable))


def test_every_op_a_spec_can_write_declares_its_onnx_lowering():
    for name, op in REGISTRY.items():
        if not op.internal:
            assert op.onnx is not None, f"op {name} declares no onnx= lowering at its register() call"
    assert {name for name, op in REGISTRY.items() if isinstance(op.onnx, NotExportable)} == {"dropout", "allreduce_sum"}


def _session(model: onnx.ModelProto):
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def _export_graph(graph, nodes, out, opset=DEFAULT_OPSET):
    forward = SimpleNamespace(inputs={n.name: n for n in nodes}, state={}, prediction=out)
    return to_onnx(forward, {}, {}, {}, [n.name for n in nodes], "y", None, opset, {})


def _op_values(name, inputs, dtype, rng):
    """Random inputs in ``dtype`` (positive where the op needs it); constant arrays (labels) as they are."""
    values = []
    for spec in inputs:
        if isinstance(spec, tuple):
            v = rng.standard_normal(spec) * 2
            values.append(np.asarray(np.abs(v) + 0.5 if REGISTRY[name].fd_domain == "positive" else v, dtype))
        else:
            values.append(np.asarray(spec))
    return values


def _check_op(name, inputs, attrs, dtype, opset=DEFAULT_OPSET):
    values = _op_values(name, inputs, dtype, np.random.default_rng(0))
    graph = Graph(dtype)
    nodes = [graph.input(f"x{i}", v.shape, v.dtype) for i, v in enumerate(values)]
    out = graph.apply(name, *nodes, **attrs)
    (want,) = Plan([out], nodes)(*values)
    session = _session(_export_graph(graph, nodes, out, opset))
    (got,) = session.run(None, {n.name: v for n, v in zip(nodes, values)})
    assert got.dtype == np.asarray(want).dtype and got.shape == np.shape(want)
    error = relative_difference(got, want)
    assert error <= TOLERANCE[dtype], f"{name}{inputs}{attrs} in {np.dtype(dtype)}: relative difference {error:.1e}"
    return error


OP_CASES = [(name, inputs, attrs) for name in EXPORTABLE for inputs, attrs in CASES.get(name, [])]


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize(
    "name,inputs,attrs",
    tiered(OP_CASES, group=lambda case: case[0], ids=[f"{c[0]}-{i}" for i, c in enumerate(OP_CASES)]),
)
def test_op_lowering_matches_the_forward_in_onnxruntime(name, inputs, attrs, dtype):
    _check_op(name, inputs, attrs, dtype)


def test_every_exportable_op_has_cases():
    assert {c[0] for c in OP_CASES} == set(EXPORTABLE) - {"one_hot", "stop_gradient"}  # tested below


@pytest.mark.parametrize("opset", [OPSETS.start, OPSETS.stop - 1])
@pytest.mark.parametrize(
    "name",
    [
        "sum",
        "mean",
        "max",
        "min",
        "var",
        "logsumexp",
        "squeeze",
        "expand_dims",
        "softmax",
        "log_softmax",
        "softmax_cross_entropy",
        "avg_pool2d",
    ],
)
def test_opset_dependent_lowerings_at_the_oldest_and_newest_opset(name, opset):
    """Reductions take their axes as an attribute before opset 18 and as an input from it."""
    for inputs, attrs in CASES[name]:
        _check_op(name, inputs, attrs, np.float64, opset)


def test_one_hot_and_integer_promotion():
    graph = Graph()
    labels = graph.input("labels", ("B", 3), "int64")
    ids = np.array([[0, 2, 1], [1, 1, 0]])
    for out in (
        graph.apply("one_hot", labels, depth=4, dtype="float32"),
        graph.apply("exp", labels),
        graph.apply("stop_gradient", labels),
        labels + graph.const(np.array([0.5, 1.5, 2.5, 3.5]).reshape(4, 1, 1)),
    ):
        (want,) = Plan([out], [labels])(ids)
        (got,) = _session(_export_graph(graph, [labels], out)).run(None, {"labels": ids})
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-15)


# Ops whose lowering reads the symbolic batch dimension: exported once, run at two batch sizes.
BATCHED = [
    ("reshape", (4, 3), {"shape": ["B", 2, 6]}),
    ("reshape", (4, 3), {"shape": [-1, 12]}),
    ("flatten", (4, 3), {"axis": 1}),
    ("broadcast_to", (1, 3), {"shape": [2, "B", 4, 3]}),
    ("var", (4, 3), {"axis": [0, 2], "ddof": 1}),
    ("mean", (4, 3), {"axis": 0}),
    ("slice", (4, 3), {"axis": 0}),
    ("slice", (4, 3), {"axis": 1, "start": -1, "stop": None, "step": -2}),
    ("concat", (4, 3), {"axis": 2}),
    ("stack", (4, 3), {"axis": 1}),
]


@pytest.mark.parametrize("name,shape,attrs", BATCHED)
def test_lowerings_keep_the_batch_dimension_dynamic(name, shape, attrs):
    graph = Graph()
    x = graph.input("x", ("B", *shape))
    args = [x, x] if name in ("concat", "stack") else [x]
    out = graph.apply(name, *args, **attrs)
    session = _session(_export_graph(graph, [x], out))
    assert session.get_inputs()[0].shape[0] == "batch"
    for batch in (1, 5):
        value = np.random.default_rng(batch).standard_normal((batch, *shape))
        (want,) = Plan([out], [x])(value)
        (got,) = session.run(None, {"x": value})
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_accurate_composites_at_the_extremes():
    """log1p, softplus and elu are composed (no float64 kernels; ONNX has no Log1p or Expm1): they keep full
    relative precision where the naive formulas round to 0 (-40, 1e-12) and do not overflow (800)."""
    x = np.array([-800.0, -40.0, -1e-12, 0.0, 1e-12, 3.0, 40.0, 800.0])
    graph = Graph()
    node = graph.input("x", (8,))
    for name in ("softplus", "elu", "log1p", "sigmoid", "silu", "tanh", "exp", "gelu"):
        value = np.abs(x) if name == "log1p" else x
        out = graph.apply(name, node)
        with np.errstate(over="ignore"):  # exp(800) overflows to inf in the forward: expected
            (want,) = Plan([out], [node])(value)
        (got,) = _session(_export_graph(graph, [node], out)).run(None, {"x": value})
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0, err_msg=name)


# ------------------------------------------------------------------------------------ every model in models/
SPECS = sorted(p.name for p in MODELS.glob("*.yaml"))


def train_briefly(spec_file, run_dir, dtype, steps=3):
    """A few steps of the spec, so parameters and running statistics move off their initial values."""
    spec = load_spec(spec_file, ["train.epochs=null", f"train.steps={steps}", f"dtype={dtype}"])
    Trainer(spec, run_dir).run()
    return spec


def raw_split(run):
    """The raw (unstandardized) input fields of the run's test split, else val, else train."""
    splits = load_splits(run.spec.data["data"], run.spec.data.get("seed", 0), run.base_dir)
    split = next(s for s in ("test", "val", "train") if s in splits)
    return split, {name: splits[split][name] for name in run.spec.model.inputs if name != run.spec.model.target}


def test_a_float32_model_standardizes_inputs_far_from_zero_as_predict_does(tmp_path):
    """A feature of 1e5 + noise: rounded to float32 before (x - mean) / std, its noise would be lost."""
    rng = np.random.default_rng(0)
    x = np.column_stack([1e5 + rng.standard_normal(200), rng.standard_normal(200)])
    np.savez(tmp_path / "far.npz", x=x, y=x[:, :1] - 1e5 + 0.5 * x[:, 1:])
    (tmp_path / "far.yaml").write_text(
        "specgrad: 1\nname: far\ndtype: float32\n"
        "data: {source: npz, path: far.npz, standardize: [x], split: {test: 0.25}}\n"
        "model: {inputs: {x: [2]}, nodes: [{y_hat: {layer: linear, input: x, units: 1}}], output: y_hat}\n"
        "loss: mse\noptimizer: {type: adam, lr: 0.05}\ntrain: {steps: 200}\n"
    )
    Trainer(load_spec(tmp_path / "far.yaml"), tmp_path / "run").run()
    result = export_onnx(tmp_path / "run", tmp_path / "model.onnx")  # checks onnxruntime against predict
    assert result.max_error < TOLERANCE[np.float32]
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [(i.name, i.type) for i in session.get_inputs()] == [("x", "tensor(double)")]
    assert [o.type for o in session.get_outputs()] == ["tensor(float)"]


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("spec_name", SPECS)
def test_every_example_exports_and_onnxruntime_matches_predict(tmp_path, spec_name, dtype):
    spec = train_briefly(MODELS / spec_name, tmp_path / "run", np.dtype(dtype).name)
    result = export_onnx(tmp_path / "run", tmp_path / "model.onnx")
    model = onnx.load(str(result.path))
    onnx.checker.check_model(model, full_check=True)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["specgrad.spec_name"] == spec.data["name"]
    assert props["specgrad.spec_hash"] == spec_hash(spec.data)

    run = load_run(tmp_path / "run")
    split, fields = raw_split(run)
    want = predict(run, fields)
    session = ort.InferenceSession(str(result.path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(fields)
    assert [o.name for o in session.get_outputs()] == list(want)
    assert all(i.shape[0] == "batch" for i in session.get_inputs())
    standardized = set(run.spec.data["data"].get("standardize", []))
    feed = {
        name: np.asarray(
            v,
            np.int64
            if run.spec.model.inputs[name].dtype.kind in "iu"
            else np.float64
            if name in standardized  # raw, in float64 as predict reads it
            else dtype,
        )
        for name, v in fields.items()
    }
    got = dict(zip(want, session.run(None, feed)))
    for name, expected in want.items():
        assert got[name].dtype == expected.dtype, name
        if expected.dtype.kind in "iu":
            np.testing.assert_array_equal(got[name], expected, err_msg=f"{spec_name}: {name}")
        else:
            tol = TOLERANCE[dtype]
            np.testing.assert_allclose(
                got[name],
                expected,
                rtol=tol,
                atol=tol * np.abs(expected).max(),
                err_msg=f"{spec_name} on the {split} split: {name}",
            )
    one = session.run(None, {name: v[:1] for name, v in feed.items()})  # any batch size, down to one
    np.testing.assert_allclose(one[0], got[list(want)[0]][:1], rtol=TOLERANCE[dtype])


def test_eval_mode_running_statistics_and_no_dropout(tmp_path):
    """mlp_moons has batchnorm and dropout: the export is its evaluation graph, the running statistics are
    initializers, there is no Dropout node and no random key input."""
    train_briefly(MODELS / "mlp_moons.yaml", tmp_path / "run", "float64", steps=5)
    run = load_run(tmp_path / "run")
    assert run.state and not np.allclose(run.state["n1.running_mean"], 0)
    model = onnx.load(str(export_onnx(tmp_path / "run").path))
    ops = {n.op_type for n in model.graph.node}
    initializers = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    assert "Dropout" not in ops and not ops & {"RandomUniform", "RandomUniformLike", "Bernoulli"}
    assert [i.name for i in model.graph.input] == ["x"]
    for name, value in {**run.state, **run.params}.items():
        np.testing.assert_array_equal(initializers[name], value)


# ----------------------------------------------------------------------------------------------- the command
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """mlp_moons (standardized inputs, a classifier) trained 4 steps with a checkpoint every 2."""
    run_dir = tmp_path_factory.mktemp("export") / "run"
    spec = load_spec(
        MODELS / "mlp_moons.yaml",
        ["train.epochs=null", "train.steps=4", "train.checkpoint.every=2", "train.checkpoint.keep=null"],
    )
    Trainer(spec, run_dir).run()
    return run_dir


@pytest.mark.slow
def test_cli_exports_a_checkpoint_at_an_opset(trained, tmp_path):
    out = tmp_path / "m.onnx"
    result = run_cli("export", trained, "--output", out, "--checkpoint", 2, "--opset", 13)
    assert result.returncode == 0, result.stderr
    assert "checkpoint step 2, opset 13" in result.stdout and "onnxruntime matches specgrad predict" in result.stdout
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 13
    assert {p.key: p.value for p in model.metadata_props}["specgrad.checkpoint_step"] == "2"
    latest = run_cli("export", trained)
    assert latest.returncode == 0 and (trained / "model.onnx").is_file() and "step 4" in latest.stdout
    fields = raw_split(load_run(trained))[1]
    older, newer = (
        ort.InferenceSession(str(p)).run(None, {k: v.astype(np.float64) for k, v in fields.items()})[0]
        for p in (out, trained / "model.onnx")
    )
    assert not np.allclose(older, newer)  # the checkpoint asked for, not the latest


@pytest.mark.slow
@pytest.mark.parametrize(
    "args,code,message",
    [
        (["--opset", "12"], 2, "opset 12 is not supported; use one of 13..21"),
        (["--opset", "0"], 2, "opset 0 is not supported; use one of 13..21"),  # not "the default"
        (["--checkpoint", "3"], 1, "has no checkpoint of step 3 (it has 2, 4)"),
        (["--output", "{a_file}/m.onnx"], 1, "error: "),  # a folder that is a file: not even root writes there
    ],
)
def test_cli_errors(trained, tmp_path, args, code, message):
    (tmp_path / "a_file").write_text("")
    result = run_cli("export", trained, *(a.format(a_file=tmp_path / "a_file") for a in args))
    assert result.returncode == code and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_not_a_run_directory(tmp_path):
    result = run_cli("export", tmp_path)
    assert result.returncode == 1 and "is not a run directory" in result.stderr


@pytest.mark.slow
def test_missing_extra_names_it(trained):
    """Without onnx installed (simulated: the import fails), the command says which extra to install."""
    for module in ("onnx", "onnxruntime"):
        code = (
            f"import sys; sys.modules[{module!r}] = None; sys.argv = ['specgrad', 'export', {str(trained)!r}]; "
            "from specgrad.cli import main; main()"
        )
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert result.returncode == 1, result.stderr
        assert f"({module} is missing): pip install 'specgrad[onnx]'" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_an_op_without_lowering_is_a_located_error(tmp_path):
    """A graph holding an op with no ONNX form: the error names the op and the spec line it came from."""
    from specgrad.engine.ops.registry import register

    register("twice", shape=lambda x: tuple(x), vjp=(lambda g, out, x: 2 * g,), arity=1, no_examples="a test-only op")(
        lambda x: 2 * x
    )
    try:
        spec = tmp_path / "s.yaml"
        text = (MODELS / "poly.yaml").read_text().replace("y_hat: phi @ k", "y_hat: twice(phi @ k)")
        assert "twice" in text
        spec.write_text(text)
        train_briefly(spec, tmp_path / "run", "float64", steps=1)
        with pytest.raises(SpecError) as e:
            export_onnx(tmp_path / "run")
        line = next(
            i for i, t in enumerate((tmp_path / "run" / "spec.yaml").read_text().splitlines(), 1) if "twice" in t
        )
        assert f"spec.yaml:{line}:" in str(e.value)
        assert "op 'twice' cannot be exported to ONNX: it declares no ONNX lowering" in str(e.value)
        assert not (tmp_path / "run" / "model.onnx").exists()
    finally:
        del REGISTRY["twice"]
    # the command prints the same located error, exit 1, no traceback (the op registered in its process too)
    code = (
        "from specgrad.engine.ops.registry import register; register('twice', shape=lambda x: tuple(x), "
        "vjp=(lambda g, out, x: 2 * g,), arity=1, no_examples='test-only')(lambda x: 2 * x); import sys; "
        f"sys.argv = ['specgrad', 'export', {str(tmp_path / 'run')!r}]; from specgrad.cli import main; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"spec.yaml:{line}:" in result.stderr and ": error: op 'twice' cannot be exported" in result.stderr


def test_dropout_op_is_declared_not_exportable():
    from specgrad.run.export.onnx import unexportable

    graph = Graph()
    x, key = graph.input("x", ("B", 3)), graph.input("key", (), "int64")
    out = graph.apply("dropout", x, key, rate=0.5)
    (problem,) = unexportable([x, key, out])
    assert "op 'dropout' cannot be exported to ONNX: its mask is drawn from numpy's generator" in problem.message


def test_every_decoding_loss_has_an_onnx_decoder():
    from specgrad.model.losses import LOSSES, make_loss

    decoding = {name for name in LOSSES.names() if make_loss(name).decode is not None}
    assert decoding == set(DECODERS)


def test_export_refuses_a_model_that_disagrees_with_predict(trained, monkeypatch):
    """The onnxruntime check is real: a lowering that computes something else fails the export."""
    import specgrad.run.export.onnx as exporter

    real = exporter._decode_labels

    def off_by_a_bit(b, pred, node):
        out = real(b, pred, node)
        value, dtype, shape = out["probability"]
        out["probability"] = (b.op("Mul", value, b.const(1 + 1e-6, dtype)), dtype, shape)
        return out

    monkeypatch.setitem(exporter.DECODERS, "cross_entropy", off_by_a_bit)
    with pytest.raises(ExportError, match="onnxruntime's 'probability' differs from specgrad predict's"):
        export_onnx(trained, trained / "bad.onnx")
    assert not (trained / "bad.onnx").exists()


def test_a_numpy_scalar_constant_keeps_a_float32_model_float32():
    """attention scales its scores by 1 / np.sqrt(size), an np.float64: in numpy 2 that made the float32
    model compute in float64 from there on, against the graph's dtype rule (found by the export test)."""
    graph = Graph("float32")
    x = graph.input("x", ("B", 3))
    out = x * (1.0 / np.sqrt(4))
    (value,) = Plan([out], [x])(np.ones((2, 3), np.float32))
    assert out.dtype == value.dtype == np.float32


def test_docs_list_every_lowering_as_the_registry_declares_it():
    from specgrad.run.export.reference import render

    text = (ROOT / "docs" / "export.md").read_text()
    assert render() in text, "regenerate with: python -m specgrad.run.export.reference docs/export.md"
    for name in EXPORTABLE + ["dropout"]:
        assert f"| `{name}` |" in text


@pytest.mark.slow
def test_serving_example_in_the_docs_runs(trained, tmp_path):
    """docs/export.md's onnxruntime snippet, on an exported mlp_moons."""
    text = (ROOT / "docs" / "export.md").read_text()
    snippet = text.split("## Serving with onnxruntime")[1].split("```python")[1].split("```")[0]
    export_onnx(trained, tmp_path / "moons.onnx")
    result = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "specgrad.spec_name" in result.stdout and "moons" in result.stdout
