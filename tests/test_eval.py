"""`specgrad eval` and `specgrad predict` end to end, exactly as a user runs them."""

import csv
import io
import json

import numpy as np
import pytest
from conftest import MODELS, run_cli
from threadpoolctl import threadpool_limits

from specgrad.base.diagnostics import SpecError
from specgrad.data.sources import load_splits
from specgrad.run.checkpoint import TrainingArrays, latest_checkpoint
from specgrad.run.evaluate import RunFileError, evaluate_run, predict_file
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec


def trained(tmp_path, spec=MODELS / "logistic_regression.yaml", *overrides):
    """A run directory, trained in-process (the commands under test are eval and predict)."""
    run = tmp_path / "run"
    with threadpool_limits(1):
        Trainer(load_spec(spec, overrides), run).run()
    return run


@pytest.mark.slow
def test_eval_reproduces_the_summary_of_the_run(tmp_path):
    run = trained(tmp_path, MODELS / "logistic_regression.yaml", "train.steps=200")
    summary = json.loads((run / "summary.json").read_text())
    result = run_cli("eval", run, "--split", "val")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert (out["split"], out["step"], out["samples"]) == ("val", 200, 57)
    assert {k: out[k] for k in summary["val"]} == summary["val"]  # same checkpoint, same bits
    for split in ("train", "test"):
        out = evaluate_run(run, split)
        assert {k: out[k] for k in summary[split]} == summary[split]
    assert evaluate_run(run)["split"] == "test"  # the default: most held out


@pytest.mark.slow
def test_predict_applies_the_training_transform(tmp_path):
    run = trained(tmp_path, MODELS / "logistic_regression.yaml", "train.steps=200")
    spec = load_spec(MODELS / "logistic_regression.yaml")
    x = load_splits(spec.data["data"], 0)["test"]["x"]  # raw, unstandardized rows
    state = json.loads((run / "data.json").read_text())["standardize"]["x"]
    params = TrainingArrays.unpack(latest_checkpoint(run / "checkpoints").arrays).params
    z = (x - np.array(state["mean"])) / np.array(state["std"]) @ params["w"] + params["b"]

    np.savez(tmp_path / "in.npz", x=x)
    result = run_cli("predict", run, tmp_path / "in.npz", "--output", tmp_path / "out.npz")
    assert result.returncode == 0, result.stderr
    with np.load(tmp_path / "out.npz", allow_pickle=False) as out:
        np.testing.assert_allclose(out["z"], z, rtol=1e-12)
        np.testing.assert_array_equal(out["label"], (z > 0).astype(int))
        np.testing.assert_allclose(out["probability"], 1 / (1 + np.exp(-z)), rtol=0, atol=1e-14)

    header = ",".join(f"f{i}" for i in range(x.shape[1]))
    (tmp_path / "in.csv").write_text(
        header + "\n" + "\n".join(",".join(repr(float(v)) for v in row) for row in x) + "\n"
    )
    result = run_cli("predict", run, tmp_path / "in.csv")  # csv on stdout
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0]) == ["z", "label", "probability"] and len(rows) == len(x)
    np.testing.assert_array_equal([float(r["z"]) for r in rows], np.load(tmp_path / "out.npz")["z"])


CSV_SPEC = """\
specgrad: 1
name: csv_reg
data: {source: csv, path: data/points.csv, columns: {x: [a, b], y: target}, standardize: [x]}
model:
  inputs: {x: [2]}
  params: {w: {shape: [2]}, c: {shape: []}}
  nodes: [{y_hat: x @ w + c}]
  output: y_hat
loss: mse
metrics: [r2]
optimizer: {type: adam, lr: 0.1}
train: {steps: 300}
"""


@pytest.mark.slow
@pytest.mark.parametrize("sep", [",", ";"])
def test_a_csv_spec_predicts_from_columns_by_name(tmp_path, sep):
    """New rows come laid out as the training file: the spec's column names (any order), its delimiter."""
    rng = np.random.default_rng(0)
    ab = rng.normal(5, 3, (40, 2))
    (tmp_path / "data").mkdir()
    lines = [f"a{sep}target{sep}b"] + [f"{a}{sep}{2 * a - b + 1}{sep}{b}" for a, b in ab.tolist()]
    (tmp_path / "data" / "points.csv").write_text("\n".join(lines) + "\n")
    layout = "" if sep == "," else f", delimiter: '{sep}'"
    (tmp_path / "spec.yaml").write_text(CSV_SPEC.replace("standardize: [x]", "standardize: [x]" + layout))
    run = trained(tmp_path, tmp_path / "spec.yaml")
    (tmp_path / "new.csv").write_text(f"b{sep}a\n1.0{sep}2.0\n0.0{sep}-1.0\n")  # any column order, no target
    result = run_cli("predict", run, tmp_path / "new.csv", "-o", tmp_path / "pred.csv")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(open(tmp_path / "pred.csv")))  # the output is plain csv either way
    np.testing.assert_allclose([float(r["y_hat"]) for r in rows], [2 * 2.0 - 1.0 + 1, 2 * -1.0 - 0.0 + 1], atol=1e-3)
    # the run's own spec.yaml trains again as it is: its relative data path resolves where the run recorded,
    # a folder that must lie where the spec may read (here outside the working directory: a --root)
    with pytest.raises(SpecError, match="where the run's data.json puts it"):
        load_spec(run / "spec.yaml")
    with threadpool_limits(1):
        again = Trainer(load_spec(run / "spec.yaml", roots=[tmp_path]), tmp_path / "again").run()
    assert again["train"] == json.loads((run / "summary.json").read_text())["train"]


@pytest.mark.slow
def test_images_may_come_flat(tmp_path):
    run = trained(tmp_path, MODELS / "cnn_digits.yaml", "train={steps: 2, batch_size: 64}")
    spec = load_spec(MODELS / "cnn_digits.yaml")
    x = load_splits(spec.data["data"], 0)["test"]["x"][:5]  # [5, 1, 8, 8]
    np.savez(tmp_path / "flat.npz", x=x.reshape(5, 64))
    np.savez(tmp_path / "images.npz", x=x)
    assert run_cli("predict", run, tmp_path / "flat.npz", "-o", tmp_path / "flat-out.npz").returncode == 0
    predict_file(run, tmp_path / "images.npz", tmp_path / "images-out.npz")
    flat, images = np.load(tmp_path / "flat-out.npz"), np.load(tmp_path / "images-out.npz")
    assert flat["logits"].shape == (5, 10) and np.array_equal(flat["logits"], images["logits"])
    np.testing.assert_allclose(flat["probability"].sum(axis=1), 1.0)


@pytest.mark.slow
def test_bad_runs_and_inputs_are_clear_errors(tmp_path):
    run = trained(tmp_path, MODELS / "poly.yaml", "train.steps=10")
    with pytest.raises(RunFileError, match="the run has no 'val' split \\(its data.split holds out nothing\\)"):
        evaluate_run(run, "val")
    np.savez(tmp_path / "wrong.npz", z=np.zeros(3))
    np.savez(tmp_path / "text.npz", x=np.array(["a", "b"]))
    (tmp_path / "in.csv").write_text("x\n0.5\n")
    (tmp_path / "two.csv").write_text("a,w\n0.5,1\n")  # no column named x: all columns, in order
    np.savez(tmp_path / "nan.npz", x=np.array([0.5, np.nan]))
    for args, message in [
        ((tmp_path / "nan.npz",), "nan.npz: data field 'x' holds NaN or infinite values (the first at row 1)"),
        ((tmp_path / "nope.csv",), "input file"),
        ((run / "spec.yaml",), "the input must be a .csv or .npz file"),
        ((tmp_path / "wrong.npz",), "has no array 'x' (the model reads x; the file has 'z')"),
        ((tmp_path / "text.npz",), "text.npz: field 'x' holds <U1 values, not real numbers"),
        ((tmp_path / "in.csv", tmp_path / "out.txt"), "the output must be a .csv or .npz file"),
        ((tmp_path / "two.csv",), "field 'x' has per-sample shape [2]"),
    ]:
        with pytest.raises(RunFileError) as e:
            predict_file(run, *args)
        assert message in str(e.value)
    # the commands: exit 1 with the message, never a traceback; 2 for a usage error
    for args, message in [
        (("eval", tmp_path), "is not a run directory (it has no spec.yaml)"),
        (("predict", run, tmp_path / "in.csv", "-o", tmp_path / "out.txt"), "must be a .csv"),
    ]:
        result = run_cli(*args)
        assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert run_cli("eval", run, "--split", "tset").returncode == 2
    result = run_cli("predict", run, tmp_path / "in.csv")
    assert result.returncode == 0 and result.stdout.splitlines()[0] == "y_hat"


def test_predictions_use_eval_mode(tmp_path):
    """batchnorm reads its running statistics and dropout is off: a sample's prediction does not depend on
    the batch it comes in (in training mode, a batch of one would normalize every feature to zero)."""
    run = trained(tmp_path, MODELS / "mlp_moons.yaml", "train={steps: 30, batch_size: 50}")
    x = np.random.default_rng(0).normal(size=(6, 2))
    np.savez(tmp_path / "all.npz", x=x)
    predict_file(run, tmp_path / "all.npz", tmp_path / "all-out.npz")
    together = np.load(tmp_path / "all-out.npz")["logits"]
    for i in range(len(x)):
        np.savez(tmp_path / "one.npz", x=x[i : i + 1])
        predict_file(run, tmp_path / "one.npz", tmp_path / "one-out.npz")
        np.testing.assert_allclose(np.load(tmp_path / "one-out.npz")["logits"], together[i : i + 1], rtol=1e-12)
    assert len(np.unique(together.round(6), axis=0)) == len(x)


def test_csv_output_has_a_column_per_value_and_round_trips():
    from specgrad.run.evaluate import to_csv

    values = np.random.default_rng(0).standard_normal((3, 2)) / 3
    text = to_csv({"y_hat": values[:, 0], "probability": values, "label": np.array([2, 0, 1])})
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["y_hat", "probability_0", "probability_1", "label"]
    back = np.array([[float(v) for v in row] for row in rows[1:]])
    assert np.array_equal(back[:, 1:3], values) and rows[1][3] == "2"  # exact floats, integer labels


@pytest.mark.slow
def test_review_inputs_that_once_crashed_are_clear_errors(tmp_path):
    run = trained(tmp_path, MODELS / "poly.yaml", "train.steps=20")
    # an output named like np.savez's own parameter
    renamed = trained(
        tmp_path / "named", MODELS / "poly.yaml", "train.steps=20", "model.nodes.1={file: phi @ k}", "model.output=file"
    )
    np.savez(tmp_path / "x.npz", x=np.linspace(-1, 1, 5))
    assert run_cli("predict", renamed, tmp_path / "x.npz", "-o", tmp_path / "out.npz").returncode == 0
    assert np.load(tmp_path / "out.npz", allow_pickle=False)["file"].shape == (5,)
    # a csv with a header and no rows
    (tmp_path / "empty.csv").write_text("x\n")
    result = run_cli("predict", run, tmp_path / "empty.csv")
    assert result.returncode == 1 and "holds no samples" in result.stderr and "Traceback" not in result.stderr
    # a damaged data.json
    (run / "data.json").write_text('{"base_dir": ".", "standardize": []}')
    result = run_cli("eval", run)
    assert result.returncode == 1 and "data.json" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.slow
def test_eval_refuses_a_checkpoint_of_another_spec(tmp_path):
    run = trained(tmp_path, MODELS / "poly.yaml", "train.steps=20")
    spec = run / "spec.yaml"
    spec.write_text(spec.read_text().replace("lr: 0.001", "lr: 0.002"))
    result = run_cli("eval", run)
    assert result.returncode == 1 and "was not trained with" in result.stderr


@pytest.mark.slow
def test_predict_reads_the_column_named_after_the_input(tmp_path):
    run = trained(tmp_path, MODELS / "poly.yaml", "train.steps=20")
    (tmp_path / "xy.csv").write_text("x,y\n0.5,1\n")
    (tmp_path / "x.csv").write_text("x\n0.5\n")
    assert run_cli("predict", run, tmp_path / "xy.csv").stdout == run_cli("predict", run, tmp_path / "x.csv").stdout


def test_predict_inputs_at_the_edges_are_clear_errors_or_right_answers(tmp_path):
    """A single value, complex numbers, a file that is no zip, a row of empty cells (counted, not dropped:
    predictions stay on their rows), columns the model does not read (ignored, whatever they hold)."""
    run = trained(tmp_path, MODELS / "poly.yaml", "train.steps=10")
    np.savez(tmp_path / "single.npz", x=np.array(0.5))
    np.savez(tmp_path / "complex.npz", x=np.array([0.5 + 1j]))
    np.save(tmp_path / "fake.npy", np.zeros(3))
    (tmp_path / "fake.npy.npz").write_bytes((tmp_path / "fake.npy").read_bytes())  # an .npy named .npz
    (tmp_path / "holes.csv").write_text("x,note\n0.1,a\n\n,b\n0.3,c\n")  # a blank line; a row with x empty
    (tmp_path / "extra.csv").write_text("id,x,note\nabc,0.1,\nxyz,0.3,hello\n")
    for name, message in [
        ("single.npz", "holds no samples"),
        ("complex.npz", "holds complex128 values, not real numbers"),
        ("fake.npy.npz", "not a zip archive of .npy arrays"),
        ("holes.csv", "holes.csv:4: column 'x' holds '', not a number"),
    ]:
        with pytest.raises(RunFileError, match=message):
            predict_file(run, tmp_path / name)
    rows = predict_file(run, tmp_path / "extra.csv").splitlines()
    assert rows[0] == "y_hat" and len(rows) == 3


def test_ids_out_of_an_embeddings_range_are_refused(tmp_path):
    spec = tmp_path / "emb.yaml"
    spec.write_text(
        "specgrad: 1\nname: emb\ndata: {source: npz, path: ids.npz}\n"
        "model:\n  inputs: {tokens: {shape: [3], dtype: int64}}\n"
        "  nodes:\n    - e: {layer: embedding, input: tokens, vocab: 10, units: 4}\n"
        "    - s: mean(e, axis=1)\n    - logits: {layer: linear, input: s, units: 2}\n  output: logits\n"
        "loss: cross_entropy\noptimizer: {type: sgd, lr: 0.1}\ntrain: {steps: 2}\n"
    )
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "ids.npz", tokens=rng.integers(0, 10, (20, 3)), y=rng.integers(0, 2, 20))
    run = trained(tmp_path, spec, "train.steps=2")
    for ids, message in [
        ([[1, 2, 10]], "holds the id 10; the table it indexes has 10 rows"),
        ([[1, -1, 2]], "negative id -1"),
    ]:
        np.savez(tmp_path / "in.npz", tokens=np.array(ids))
        with pytest.raises(RunFileError, match=f"in.npz: data field 'tokens' .*{message}"):  # the input named
            predict_file(run, tmp_path / "in.npz")
    # an id beyond the table in the data, even in a held-out split only: a located error before training
    tokens = rng.integers(0, 10, (20, 3))
    tokens[-1, 0] = 12
    np.savez(tmp_path / "ids.npz", tokens=tokens, y=np.zeros(20, int))
    spec.write_text(spec.read_text().replace("path: ids.npz}", "path: ids.npz, split: {test: 0.5}}"))
    result = run_cli("train", spec, "--run-dir", tmp_path / "bad", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert "emb.yaml:" in result.stderr and "holds the id 12; the table it indexes has 10 rows" in result.stderr
