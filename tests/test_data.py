"""Data sources, splits, standardization and the checks of data against the model."""

import json
import sys

import numpy as np
import pytest

from specgrad.data.prepare import Standardizer, prepare_data
from specgrad.data.registry import DataError
from specgrad.data.sources import load_data, load_splits
from specgrad.run.trainer import Trainer
from specgrad.spec import SpecError, load_spec


def test_synthetic_sources_are_seeded_and_shaped():
    for settings in [
        {"source": "spirals", "n": 301},
        {"source": "moons", "n": 200},
        {"source": "blobs", "n": 90, "classes": 3, "features": 5},
    ]:
        a, b, c = (load_data(settings, seed) for seed in (0, 0, 1))
        assert all(np.array_equal(a[k], b[k]) for k in a) and not np.array_equal(a["x"], c["x"])
        assert a["x"].dtype == np.float64 and a["y"].dtype == np.int64 and len(a["x"]) == len(a["y"])
        counts = np.bincount(a["y"])
        assert counts.max() - counts.min() <= 1  # balanced classes
    assert load_data({"source": "spirals", "n": 301, "classes": 4}, 0)["x"].shape == (301, 2)
    assert load_data({"source": "blobs", "n": 90, "features": 5}, 0)["x"].shape == (90, 5)


def test_moons_without_noise_lie_on_their_half_circles():
    d = load_data({"source": "moons", "n": 100, "noise": 0.0}, 0)
    outer, inner = d["x"][d["y"] == 0], d["x"][d["y"] == 1]
    np.testing.assert_allclose(np.hypot(*outer.T), 1.0)
    np.testing.assert_allclose(np.hypot(inner[:, 0] - 1, inner[:, 1] - 0.5), 1.0)
    assert (outer[:, 1] >= -1e-12).all() and (inner[:, 1] <= 0.5 + 1e-12).all()


def test_adding_problem_sums_the_two_marked_values():
    d = load_data({"source": "adding", "n": 50, "length": 12}, 3)
    assert d["x"].shape == (50, 12, 2)
    values, markers = d["x"][..., 0], d["x"][..., 1]
    assert (markers.sum(axis=1) == 2).all() and set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_allclose(d["y"], [v[m == 1].sum() for v, m in zip(values, markers)])


def test_splits_are_seeded_disjoint_and_cover_the_rows():
    settings = {"source": "synthetic", "function": "x", "n": 100, "split": {"val": 0.2, "test": 0.1}}
    a, b = load_splits(settings, 0), load_splits(settings, 0)
    assert {k: len(v["x"]) for k, v in a.items()} == {"train": 70, "val": 20, "test": 10}
    assert all(np.array_equal(a[s]["x"], b[s]["x"]) for s in a)
    rows = np.concatenate([a[s]["x"] for s in a])
    assert np.array_equal(np.sort(rows), np.sort(load_data(settings, 0)["x"]))
    with pytest.raises(DataError, match="no training rows"):
        load_splits({**settings, "split": {"val": 0.5, "test": 0.5}}, 0)


def test_csv_columns_by_name_relative_to_the_spec(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "t.csv").write_text("a,b,label\n1,2,0\n3,4.5,1\n\n5,6,1\n")
    d = load_data({"source": "csv", "path": "data/t.csv", "columns": {"x": ["a", "b"], "y": "label"}}, 0, tmp_path)
    np.testing.assert_array_equal(d["x"], [[1, 2], [3, 4.5], [5, 6]])
    np.testing.assert_array_equal(d["y"], [0, 1, 1])
    with pytest.raises(DataError, match="has no column 'lable'; did you mean 'label'") as e:
        load_data({"source": "csv", "path": "data/t.csv", "columns": {"y": "lable"}}, 0, tmp_path)
    assert e.value.key == ("columns", "y")
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(DataError, match=r"bad.csv:3: column 'b' holds 'oops', not a number"):
        load_data({"source": "csv", "path": "bad.csv", "columns": {"x": "b"}}, 0, tmp_path)
    with pytest.raises(DataError, match="not found"):
        load_data({"source": "csv", "path": "nope.csv", "columns": {"x": "b"}}, 0, tmp_path)


def test_npz_and_npy_fields(tmp_path):
    x, y = np.arange(12.0).reshape(6, 2), np.arange(6)
    np.savez(tmp_path / "d.npz", features=x, labels=y)
    d = load_data({"source": "npz", "path": "d.npz", "fields": {"x": "features", "y": "labels"}}, 0, tmp_path)
    assert np.array_equal(d["x"], x) and np.array_equal(d["y"], y)
    assert set(load_data({"source": "npz", "path": "d.npz"}, 0, tmp_path)) == {"features", "labels"}
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    d = load_data({"source": "npy", "fields": {"x": "x.npy", "y": "y.npy"}}, 0, tmp_path)
    assert np.array_equal(d["x"], x) and np.array_equal(d["y"], y)
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}, None], dtype=object))  # would need pickle to read
    with pytest.raises(DataError, match="cannot read"):
        load_data({"source": "npz", "path": "obj.npz"}, 0, tmp_path)
    np.savez(tmp_path / "ragged.npz", x=x, y=y[:5])
    with pytest.raises(DataError, match="different numbers of rows"):
        load_data({"source": "npz", "path": "ragged.npz"}, 0, tmp_path)


def test_bundled_datasets_and_reshape():
    d = load_data({"source": "dataset", "name": "digits", "reshape": {"x": [1, 8, 8]}}, 0)
    assert d["x"].shape == (1797, 1, 8, 8) and d["y"].dtype == np.int64 and set(d["y"]) == set(range(10))
    assert load_data({"source": "dataset", "name": "diabetes"}, 0)["y"].dtype == np.float64
    with pytest.raises(DataError, match="cannot be reshaped"):
        load_data({"source": "dataset", "name": "iris", "reshape": {"x": [3]}}, 0)


def test_missing_scikit_learn_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match=r"pip install 'specgrad\[datasets\]'") as e:
        load_data({"source": "dataset", "name": "iris"}, 0)
    assert e.value.key == ("name",)


CLASSIFIER = """\
specgrad: 1
name: clf
seed: 0
data: {source: DATA, split: {test: 0.25}, standardize: [x]}
model:
  inputs: {x: [2]}
  params: {w: {shape: [2, 3]}}
  nodes: [{z: x @ w}]
  output: z
loss: cross_entropy
metrics: [accuracy]
optimizer: {type: sgd, lr: 0.1}
train: {steps: 5}
"""


def write(tmp_path, text, **subs):
    for k, v in subs.items():
        text = text.replace(k, v)
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_standardization_is_fitted_on_train_and_saved_with_the_run(tmp_path):
    spec = load_spec(write(tmp_path, CLASSIFIER, DATA="blobs, n: 200"))
    prepared = prepare_data(spec)
    train, test = prepared.splits["train"]["x"], prepared.splits["test"]["x"]
    np.testing.assert_allclose(train.mean(axis=0), 0, atol=1e-12)
    np.testing.assert_allclose(train.std(axis=0), 1)
    raw = load_splits(spec.data["data"], 0)
    mean, std = raw["train"]["x"].mean(axis=0), raw["train"]["x"].std(axis=0)
    np.testing.assert_array_equal(test, (raw["test"]["x"] - mean) / std)  # test rows: train's statistics
    Trainer(spec, tmp_path / "run").run()
    saved = Standardizer.from_json(json.loads((tmp_path / "run" / "data.json").read_text())["standardize"])
    assert np.array_equal(saved.stats["x"][0], mean) and np.array_equal(saved.stats["x"][1], std)  # bit for bit


def test_a_constant_feature_is_recognised_through_its_rounding():
    """100 rows of 0.1 have a computed std of 2e-16 (the mean's rounding), not 0: still a constant feature,
    kept at a divisor of 1 (scikit-learn's test), so it standardizes to ~0 and a new 0.2 stays ~0.1, not 5e14."""
    from sklearn.preprocessing import StandardScaler

    x = np.stack([np.full(100, 0.1), np.linspace(-1, 1, 100), np.full(100, 123.456)], axis=1)
    standardizer = Standardizer.fit({"x": x}, ["x"])
    mean, std = standardizer.stats["x"]
    assert std[0] == std[2] == 1.0 and std[1] == x[:, 1].std()
    got = standardizer.apply({"x": x})["x"]
    np.testing.assert_allclose(got, StandardScaler().fit_transform(x), atol=1e-13)
    assert abs(standardizer.apply({"x": np.array([[0.2, 0.0, 123.456]])})["x"][0, 0] - 0.1) < 1e-12


def test_labels_are_checked_against_the_loss(tmp_path):
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 2.5, 1]))
    path = write(tmp_path, CLASSIFIER, DATA="npz, path: d.npz")
    with pytest.raises(SpecError, match=r"spec.yaml:10:7: error: data field 'y' must hold integer class labels"):
        prepare_data(load_spec(path))
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.array([0, 1, 3, 1]))
    with pytest.raises(SpecError, match=r"holds label 3, outside \[0, 3\) for a prediction with 3 classes"):
        prepare_data(load_spec(path))
    np.savez(tmp_path / "d.npz", x=np.zeros((4, 2)), y=np.array([0.0, 1, 2, 1]))  # integral floats are fine
    assert prepare_data(load_spec(path)).splits["train"]["y"].dtype == np.int64


def test_data_errors_point_at_the_data_setting(tmp_path):
    path = write(tmp_path, CLASSIFIER, DATA="csv, path: missing.csv, columns: {x: [a, b], y: c}")
    with pytest.raises(SpecError, match=r"spec.yaml:4:27: error: data: data file 'missing.csv' not found"):
        prepare_data(load_spec(path))


@pytest.mark.parametrize("metric", ["r2", "mse", "mae"])
def test_metrics_must_fit_the_loss(tmp_path, metric):
    """Regression metrics of a classifier compare logits with labels: refused before training (mse and mae
    were accepted, and the end-of-run summary crashed on [n, 3] logits against [n] labels)."""
    path = write(
        tmp_path, CLASSIFIER.replace("metrics: [accuracy]", f"metrics: [accuracy, {metric}]"), DATA="blobs, n: 20"
    )
    with pytest.raises(
        SpecError,
        match=rf"spec.yaml:11:21: error: metric '{metric}' does not apply to this loss, "
        r"whose targets are class labels",
    ):
        prepare_data(load_spec(path))


KIND = {"f": "float", "i": "int"}
DECLARING = [  # a case of every source that declares its fields, with settings that change what it declares
    {"source": "synthetic", "function": "x", "n": 5},
    {"source": "spirals", "n": 6},
    {"source": "spirals", "n": 6, "classes": 5},
    {"source": "moons", "n": 6},
    {"source": "blobs", "n": 6},
    {"source": "blobs", "n": 6, "features": 3, "classes": 6},
    {"source": "adding", "n": 5, "length": 3},
    *({"source": "dataset", "name": name} for name in ("iris", "wine", "breast_cancer", "digits", "diabetes")),
    {"source": "csv", "path": "t.csv", "columns": {"x": ["a", "b", "c"], "y": "label", "w": "a"}},
]


@pytest.mark.parametrize(
    "settings", DECLARING, ids=lambda s: "-".join(str(v) for v in s.values() if not isinstance(v, dict))
)
def test_declared_fields_are_the_loaded_ones(settings, tmp_path):
    """Validation reads a source's declared fields (names, kinds, per-sample shapes, classes) without loading
    it: they must not drift from what loading makes. A kind or shape of None is one only the file knows."""
    from specgrad.data.registry import declared_fields

    (tmp_path / "t.csv").write_text("a,b,c,label\n1,2,3,0\n4,5,6,1\n")
    declared = declared_fields(settings)
    loaded = load_data(settings, 0, tmp_path)
    assert set(declared) == set(loaded)
    for name, field in declared.items():
        assert field.shape is None or field.shape == loaded[name].shape[1:], name
        assert field.kind is None or field.kind == KIND[loaded[name].dtype.kind], name
        assert field.classes is None or np.array_equal(np.unique(loaded[name]), np.arange(field.classes)), name


def test_every_source_is_covered_or_declares_nothing():
    from specgrad.data.sources import SOURCES

    covered = {s["source"] for s in DECLARING}
    declaring = {name for name in SOURCES.names() if "fields" in SOURCES[name].meta}
    assert declaring == covered, "add a case of the new source to DECLARING"
    from specgrad.data.datasets import DATASETS

    assert {s["name"] for s in DECLARING if s["source"] == "dataset"} == set(DATASETS)


def test_float_data_is_not_truncated_into_an_integer_input(tmp_path):
    from conftest import MODELS

    spec = load_spec(MODELS / "poly.yaml", ["model.inputs.x={shape: [], dtype: int64}"])
    with pytest.raises(SpecError, match="data field 'x' holds non-integer values"):
        Trainer(spec, tmp_path)


def test_a_synthetic_formula_is_checked_before_any_data_is_drawn():
    from conftest import MODELS

    from specgrad.spec import check_spec

    ok, diags = check_spec(MODELS / "poly.yaml", ["data.function=sin(3*z)"])
    assert not ok and [d.message for d in diags] == ["data: function: undefined name 'z'"]


def test_a_synthetic_formula_gives_one_real_value_per_x():
    """y is real, as the source declares, even from a constant; a formula of several values per x is a
    located error at validate (it crashed validate with numpy's broadcast error)."""
    from conftest import MODELS

    from specgrad.spec import check_spec

    assert load_data({"source": "synthetic", "function": "1", "n": 3}, 0)["y"].dtype == np.float64
    for formula in ("one_hot(1, 3)", "stack(x, x)"):
        ok, diags = check_spec(MODELS / "poly.yaml", [f"data.function={formula}"])
        assert not ok and len(diags) == 1 and "not one value per x" in diags[0].message
        assert diags[0].location.file == f"--set data.function={formula}"


def test_data_with_nan_is_a_located_error(tmp_path):
    from conftest import MODELS

    spec = load_spec(MODELS / "poly.yaml", ["data.function=log(x)"])  # log of negative x: NaN
    with pytest.raises(SpecError, match="data field 'y' holds NaN or infinite values"):
        Trainer(spec, tmp_path)


@pytest.mark.parametrize(
    "arrays, message",
    [
        ({"x": np.float64(1.0), "y": np.ones(2)}, "field 'x' is a single value"),
        ({"x": np.array(["a", "b"]), "y": np.ones(2)}, "field 'x' holds <U1 values, not numbers"),
        ({"x": np.ones(0), "y": np.ones(0)}, "the data holds no rows"),
    ],
)
def test_unusable_arrays_are_data_errors(tmp_path, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(DataError, match=message):
        load_data({"source": "npz", "path": "d.npz"}, 0, tmp_path)


def test_a_csv_that_is_not_utf8_is_a_data_error(tmp_path):
    (tmp_path / "d.csv").write_bytes(b"a,b\n\xff,2\n")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        load_data({"source": "csv", "path": "d.csv", "columns": {"x": "a", "y": "b"}}, 0, tmp_path)


def test_an_empty_interval_of_x_is_caught_by_validate():
    from conftest import MODELS

    from specgrad.spec import check_spec

    ok, diags = check_spec(MODELS / "poly.yaml", ["data.x.low=5"])
    assert not ok and diags[0].message == "data: x.low must be below x.high, got 5 and 1"
