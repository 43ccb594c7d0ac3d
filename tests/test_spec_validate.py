"""Validation reports every problem in one pass, sorted by location, each with a plain message.

tests/data/bad_specs/NAME.yaml holds a broken spec and NAME.expected the exact output of
`specgrad validate NAME.yaml` (run from that folder). Files starting with _ are bases and fragments.
"""

import pytest
from conftest import ROOT

from specgrad.base.diagnostics import format_diagnostics
from specgrad.spec import check_spec, load_spec

BAD = ROOT / "tests" / "data" / "bad_specs"
CASES = sorted(p.stem for p in BAD.glob("*.yaml") if not p.name.startswith("_"))


def test_there_are_enough_cases():
    assert len(CASES) >= 15
    assert {p.stem for p in BAD.glob("*.expected")} == set(CASES)


@pytest.mark.parametrize("name", CASES)
def test_bad_spec_gives_exactly_the_expected_messages(name, monkeypatch):
    monkeypatch.chdir(BAD)
    ok, diags = check_spec(f"{name}.yaml")
    assert not ok
    assert format_diagnostics(diags, "text") + "\n" == (BAD / f"{name}.expected").read_text()


def test_semantic_checks_run_beside_schema_errors():
    """A schema error in one section does not hide the model's shape errors, nor the other way round."""
    _, diags = check_spec(BAD / "every_error_at_once.yaml")
    kinds = [d.message.split(":")[0] for d in diags]
    assert "node 'y_hat'" in kinds and "optimizer.lr must be > 0, got 0" in kinds
    assert [d.location.line for d in diags] == sorted(d.location.line for d in diags)


def test_broken_loss_still_checks_the_model(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text((BAD / "shape_mismatch.yaml").read_text().replace("loss: sse", "loss: {type: sse, targte: y}"))
    _, diags = check_spec(spec)
    assert [d.message.split(";")[0] for d in diags] == [
        f"node 'y_hat': matmul of [B, 3] by [4, 8]: inner dimensions 3 and 4 differ ('h' is [B, 3], from {spec}:11:10",
        "unknown key 'targte' in loss",
    ]


def test_loss_target_dtype_is_checked_against_the_data(monkeypatch, tmp_path):
    """A loss declaring integer class labels as its target, on a source making real-valued y."""
    from specgrad.base.components import Component
    from specgrad.model.losses import LOSSES
    from specgrad.spec import validate

    labels = Component("labels_loss", LOSSES["mse"].factory, {}, (), "", {"target": {"dtype": "int"}})
    monkeypatch.setitem(LOSSES.entries, "labels_loss", labels)
    validate.validator.cache_clear()
    try:
        spec = tmp_path / "spec.yaml"
        spec.write_text((ROOT / "models" / "poly.yaml").read_text().replace("loss: sse", "loss: labels_loss"))
        ok, diags = check_spec(spec)
        assert not ok and [str(d) for d in diags] == [
            f"{spec}:27:7: error: loss 'labels_loss' needs integer class labels as its target, but field 'y' of "
            "data source 'synthetic' holds real values"
        ]
        spec.write_text(
            (ROOT / "models" / "poly.yaml").read_text().replace("loss: sse", "loss: {type: sse, target: z}")
        )
        assert [d.message for d in check_spec(spec)[1]] == [
            "the loss target 'z' is not a field of data source 'synthetic' (it has x, y)"
        ]
    finally:
        validate.validator.cache_clear()


def test_valid_spec_with_a_warning_is_valid(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text((BAD / "unreachable_param.yaml").read_text().replace("steps: 0", "steps: 5"))
    ok, diags = check_spec(spec)
    assert ok and [d.severity for d in diags] == ["warning"]
    assert load_spec(spec).model is not None


def test_a_loss_that_is_not_a_scalar_is_an_error(monkeypatch, tmp_path):
    from specgrad.base.components import Component
    from specgrad.model.losses import LOSSES, Loss
    from specgrad.spec import validate

    def squared_errors():
        return Loss(lambda pred, target: pred.graph.apply("square", pred - target))

    monkeypatch.setitem(LOSSES.entries, "squared_errors", Component("squared_errors", squared_errors, {}, (), ""))
    validate.validator.cache_clear()
    try:
        spec = tmp_path / "spec.yaml"
        spec.write_text((ROOT / "models" / "poly.yaml").read_text().replace("loss: sse", "loss: squared_errors"))
        assert [str(d) for d in check_spec(spec)[1]] == [
            f"{spec}:27:7: error: the loss must be a scalar, got shape [B]"
        ]
    finally:
        validate.validator.cache_clear()


def test_op_arguments_of_the_wrong_kind_are_located_errors(tmp_path):
    base = (ROOT / "models" / "poly.yaml").read_text()
    cases = {
        'sum(phi, axis="a")': "argument 'axis' of sum must be a number, not 'a'",
        "dropout(phi, 1, salt=1)": "dropout needs argument 'rate'",
        'clip(phi, lo="a")': "argument 'lo' of clip must be a number, not 'a'",
    }
    for formula, message in cases.items():
        spec = tmp_path / "spec.yaml"
        spec.write_text(base.replace("    - y_hat: phi @ k", f"    - z: {formula}\n    - y_hat: phi @ k"))
        diags = check_spec(spec)[1]
        assert any(message in d.message and d.location.line == 24 for d in diags), (formula, diags)


def test_orthogonal_init_of_a_vector_parameter_is_located(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text((ROOT / "models" / "poly.yaml").read_text().replace("init: zeros", "init: orthogonal"))
    messages = [d.message for d in check_spec(spec)[1]]
    assert "parameter 'k': orthogonal initialization needs a parameter of rank >= 2, got shape [6]" in messages


def test_a_broken_train_section_is_a_located_error_not_a_crash(tmp_path):
    for value in ("null", "5"):
        spec = tmp_path / "spec.yaml"
        text = (ROOT / "models" / "poly.yaml").read_text()
        spec.write_text(text[: text.index("train:")] + f"train: {value}\n")
        assert check_spec(spec)[1], value


def test_missing_keys_are_reported_once_each(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text("specgrad: 1\nname: m\n")
    assert [d.message for d in check_spec(spec)[1]] == [
        f"missing key '{k}' in the spec" for k in ("data", "model", "loss", "optimizer", "train")
    ]


def test_nan_and_inf_settings_are_errors():
    ok, diags = check_spec(ROOT / "models" / "poly.yaml", ["optimizer.lr=.nan", "train.clip={max_norm: .inf}"])
    assert not ok
    assert {d.message for d in diags} >= {
        "optimizer.lr must be a finite number, got nan",
        "train.clip.max_norm must be a finite number, got inf",
    }


def test_a_node_named_like_a_parameter_says_so(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text((ROOT / "models" / "poly.yaml").read_text().replace("    - phi: powers(x, 5)", "    - k: x"))
    assert "'k' is already defined as a parameter" in [d.message for d in check_spec(spec)[1]]


@pytest.mark.parametrize("override", ['name="poly\\n"', 'model.params={"k\\n": {shape: [6]}}'])
def test_a_name_ending_in_a_newline_is_no_name(override, monkeypatch):
    """JSON Schema patterns are ECMA-262's, whose $ ends the string; Python's also matches before a final
    newline, and 'poly\\n' would name a run folder."""
    monkeypatch.chdir(ROOT)
    ok, diags = check_spec(ROOT / "models" / "poly.yaml", [override])
    assert not ok and any("is not a valid name here" in d.message for d in diags), format_diagnostics(diags, "text")


def test_a_classifiers_output_cannot_take_a_name_predict_writes_beside_it():
    import specgrad

    spec = {
        "specgrad": 1,
        "name": "c",
        "data": {"source": "moons", "n": 20},
        "model": {"inputs": {"x": [2]}, "nodes": [{"label": {"layer": "linear", "input": "x", "units": 2}}]},
        "loss": "cross_entropy",
        "optimizer": {"type": "sgd", "lr": 0.1},
        "train": {"steps": 1},
    }
    spec["model"]["output"] = "label"
    with pytest.raises(specgrad.SpecError, match="a classifier's output cannot be named 'label'"):
        specgrad.load(spec)


@pytest.mark.parametrize(
    "spec, overrides, expected",
    [
        (
            "poly.yaml",
            ["model.inputs.x=[3]"],
            [
                "--set model.inputs.x=[3]:1:16: error: data field 'x' has per-sample shape [], the model expects [3]",
                "models/poly.yaml:27:7: error: data field 'y' has per-sample shape [], the model expects [3]",
            ],
        ),
        (
            "mlp_digits.yaml",
            ["model.inputs.x=[1, 8, 8]"],
            [
                "--set model.inputs.x=[1, 8, 8]:1:16: error: data field 'x' has per-sample shape [64], the model "
                "expects [1, 8, 8]",
                "models/mlp_digits.yaml:26:3: error: data field 'y' has per-sample shape [], the model expects [1, 8]",
            ],
        ),
        (
            "cnn_digits.yaml",
            ["data.reshape.x=[1, 8, 7]"],
            [
                "--set data.reshape.x=[1, 8, 7]:1:16: error: data: field 'x' has per-sample shape [64], which cannot "
                "be reshaped to [1, 8, 7]"
            ],
        ),
        (
            "cnn_digits.yaml",
            ["data.reshape.z=[1, 8, 8]"],
            [
                "--set data.reshape.z=[1, 8, 8]:1:16: error: data source 'dataset' has no field 'z' to reshape "
                "(it has x, y)"
            ],
        ),
        (  # blobs' x has `features` values a sample: 2 unless set
            "mlp_moons.yaml",
            ["data={source: blobs, n: 50, classes: 2, features: 3}"],
            ["models/mlp_moons.yaml:20:8: error: data field 'x' has per-sample shape [3], the model expects [2]"],
        ),
        (  # spirals make 3 classes unless set
            "residual_mlp.yaml",
            ["model.nodes.4.logits.units=2"],
            [
                "models/residual_mlp.yaml:35:7: error: data source 'spirals' makes labels 0 to 2 in field 'y', "
                "outside [0, 2) for a prediction with 2 classes"
            ],
        ),
        (
            "mlp_moons.yaml",
            ["data={source: spirals, n: 60}", "loss=binary_cross_entropy", "model.nodes.6.logits.units=1"],
            [
                "--set loss=binary_cross_entropy:1:6: error: data field 'y' has per-sample shape [], the model "
                "expects [1]",
                "--set loss=binary_cross_entropy:1:6: error: data source 'spirals' makes labels 0 to 2 in field "
                "'y', outside [0, 2) for this loss's 0/1 targets",
            ],
        ),
        (
            "mlp_moons.yaml",
            ["data={source: blobs, n: 2, classes: 2}", "data.n=1"],
            [
                "--set data={source: blobs, n: 2, classes: 2}:1:6: error: data: 2 classes need at least as many "
                "samples, got n: 1"
            ],
        ),
    ],
    ids=[
        "scalar-input",
        "flat-images",
        "reshape-count",
        "reshape-unknown",
        "default-filled",
        "classes",
        "binary",
        "classes-beyond-n",
    ],
)
def test_data_shapes_the_source_declares_are_checked_at_validate(spec, overrides, expected, monkeypatch):
    """What `train` finds after loading the data (the same words), `validate` finds from the source's
    declaration: per-sample shapes after `reshape`, against the model's inputs and the loss's target."""
    monkeypatch.chdir(ROOT)
    ok, diags = check_spec(f"models/{spec}", overrides)
    assert not ok and [str(d).split(" (overrides")[0] for d in diags] == expected
    assert check_spec(f"models/{spec}")[0]


def test_a_csv_source_declares_shapes_but_not_kinds(tmp_path):
    """A column list is a field of that many values, checked at validate; whether a column holds class
    labels only the file says, so a classification loss is not refused before reading it."""
    (tmp_path / "t.csv").write_text("a,b,label\n1,2,0\n3,4,1\n")
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "specgrad: 1\nname: csv_cls\ndata: {source: csv, path: t.csv, columns: {x: [a, b], y: label}}\n"
        "model: {inputs: {x: [3]}, params: {w: {shape: [3, 2]}}, nodes: [{z: x @ w}], output: z}\n"
        "loss: cross_entropy\noptimizer: {type: sgd, lr: 0.1}\ntrain: {steps: 1}\n"
    )
    ok, diags = check_spec(spec)
    assert not ok and [str(d) for d in diags] == [
        f"{spec}:4:21: error: data field 'x' has per-sample shape [2], the model expects [3]"
    ]
    spec.write_text(spec.read_text().replace("[3]", "[2]").replace("[3, 2]", "[2, 2]"))
    assert check_spec(spec) == (True, [])
    # a reshape is checked even of a field the model does not read: train would refuse it all the same
    spec.write_text(spec.read_text().replace("y: label}", "y: label, w: a}, reshape: {w: [2]}"))
    ok, diags = check_spec(spec)
    assert not ok and [d.message for d in diags] == [
        "data: field 'w' has per-sample shape [], which cannot be reshaped to [2]"
    ]


@pytest.mark.parametrize(
    "overrides, shape",
    [
        (["model.params={k: {shape: []}}", "model.nodes=[{y_hat: k + 0}]"], "[]"),
        (["model.output=k"], "[6]"),
        (["model.nodes.1.y_hat=transpose(phi)"], "[6, B]"),
    ],
)
def test_an_output_without_the_batch_dimension_first_is_refused(overrides, shape, monkeypatch):
    """The loss compares a prediction with its targets row by row: an output with no batch dimension
    was valid, and train failed on the target's shape after loading the data."""
    monkeypatch.chdir(ROOT)
    ok, diags = check_spec("models/poly.yaml", overrides)
    assert not ok and [d.message for d in diags] == [
        f"output '{'k' if 'model.output=k' in overrides else 'y_hat'}' is {shape}: a prediction has one row per "
        "sample, the batch dimension B first (an output made of parameters alone has none)"
    ]


def test_a_standardized_field_cannot_feed_integer_ids(monkeypatch):
    """Standardizing makes real values of any field: one read as int64 ids failed in train, after the
    data loaded. Located at the standardize entry, here in the shared fragment the spec includes."""
    monkeypatch.chdir(ROOT)
    ok, diags = check_spec("models/mlp_digits.yaml", ["model.inputs.x={shape: [64], dtype: int64}"])
    assert not ok and [(d.message, d.location.file, d.location.line) for d in diags] == [
        (
            "data field 'x' is standardized, to real values, but the model reads it as int64 (ids): leave it "
            "out of data.standardize",
            "models/_data/sklearn.yaml",
            11,
        )
    ]
    assert check_spec("models/mlp_digits.yaml", ["model.inputs.x={shape: [64], dtype: int64}", "data.standardize=[]"])[
        0
    ]


@pytest.mark.parametrize(
    "spec, overrides, message",
    [
        (
            "mlp_moons.yaml",
            ["data.split={val: 0.6, test: 0.5}"],
            "data.split leaves no training rows: val and test take 1.1 of them",
        ),
        (
            "poly.yaml",
            ["data.n=2", "data.split={val: 0.3, test: 0.3}"],
            "data: split leaves no training rows (2 rows, 1 val, 1 test)",
        ),
        (
            "poly_early_stop.yaml",
            ["data.split={val: 0.002}"],
            "data.split.val leaves no rows for validation out of the data's 100",
        ),
    ],
)
def test_a_split_that_leaves_no_rows_is_refused_at_validate(spec, overrides, message, monkeypatch):
    """Whatever the data when val and test take it all; from data.n where the spec gives it, with the words
    train used when the data loaded."""
    monkeypatch.chdir(ROOT)
    ok, diags = check_spec(f"models/{spec}", overrides)
    assert not ok and [d.message for d in diags] == [message]


def test_a_metric_listed_twice_is_refused(monkeypatch):
    """summary.json keeps results by metric name: top_k_accuracy with k 1 and with k 2 kept one, silently."""
    monkeypatch.chdir(ROOT)
    twice = "metrics=[accuracy, {type: top_k_accuracy, k: 1}, {type: top_k_accuracy, k: 2}]"
    ok, diags = check_spec("models/mlp_digits.yaml", [twice])
    assert not ok and [d.message for d in diags] == [
        "metric 'top_k_accuracy' is listed twice: results are kept by name, so one would hide the other"
    ]


def test_accumulating_more_batches_than_an_epoch_holds_is_a_warning(monkeypatch):
    """A full batch accumulated 5 times reads the same rows 5 times a step, and `epochs: 3` then trains 5."""
    monkeypatch.chdir(ROOT)
    ok, diags = check_spec("models/poly.yaml", ["train.accumulate=5"])
    assert ok and [(d.severity, d.message) for d in diags] == [
        (
            "warning",
            "train.accumulate: 5 batches a step, but an epoch holds 1: each step reads batches again and "
            "spans 5 epochs",
        )
    ]
    ok, diags = check_spec("models/mlp_moons.yaml", ["train.accumulate=14"])  # 700 training rows in 14 batches
    assert ok and diags == []
    ok, diags = check_spec("models/mlp_moons.yaml", ["train.accumulate=15"])
    assert ok and "an epoch holds 14" in diags[0].message
