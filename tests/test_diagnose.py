"""``specgrad diagnose``: each rule on a real run built to show it, its next step checked by running it where
that is cheap, a healthy run without findings, and the command's formats and errors."""

import json

import pytest
from conftest import MODELS, run_cli

from specgrad.run.diagnose import diagnose
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec

pytestmark = pytest.mark.slow  # every test trains at least one real run

DEEP_SIGMOID = """\
specgrad: 1
name: deep_sigmoid
seed: 0
data: {source: moons, n: 200, noise: 0.1}
model:
  inputs: {x: [2]}
  nodes:
    - net: {layer: mlp, input: x, widths: [16, 16, 16, 16, 16, 16, 16, 16, 2], activation: sigmoid}
  output: net
loss: cross_entropy
optimizer: {type: sgd, lr: 0.005}
train: {steps: 200, batch_size: full, checkpoint: {every: 200}}
"""

SMALL_LR = """\
specgrad: 1
name: small_lr
seed: 0
data: {source: moons, n: 200, noise: 0.1}
model:
  inputs: {x: [2]}
  nodes:
    - net: {layer: mlp, input: x, widths: [16, 16, 2]}
  output: net
loss: cross_entropy
optimizer: {type: sgd, lr: 1.0e-5}
train: {steps: 300, batch_size: full, checkpoint: {every: 300}}
"""

OVERFIT = """\
specgrad: 1
name: overfit
seed: 0
data: {source: synthetic, function: sin(3*x), x: {low: -1, high: 1}, n: 40, noise: 0.3, split: {val: 0.5}}
model:
  inputs: {x: []}
  nodes:
    - x1: expand_dims(x, 1)
    - h: {layer: mlp, input: x1, widths: [64, 64, 1], activation: tanh}
    - y_hat: squeeze(h, 1)
  output: y_hat
loss: mse
optimizer: {type: adam, lr: 0.01}
train: {steps: 2000, batch_size: full, validation: {every: 50}, checkpoint: {every: 2000}, log_every: 10}
"""


def train(tmp_path, spec, overrides=(), name="run"):
    """A real run of ``spec`` (a models/ file or spec text) in tmp_path/name; its directory."""
    path = spec
    if isinstance(spec, str):
        path = tmp_path / f"{name}.yaml"
        path.write_text(spec)
    run_dir = tmp_path / name
    Trainer(load_spec(path, list(overrides)), run_dir).run()
    return run_dir


def rules(run_dir):
    return {f.rule: f for f in diagnose(run_dir).findings}


def test_too_large_lr_is_exploding_with_a_clip_and_lr_from_the_norms(tmp_path):
    run_dir = train(tmp_path, MODELS / "poly.yaml", ["optimizer.lr=0.01", "train.steps=300"])
    found = rules(run_dir)
    assert set(found) == {"exploding"}  # not also the valley: the blow-up comes first
    f = found["exploding"]
    assert "the run ended diverged" in " ".join(f.evidence)
    # the clip threshold is the norm before the growth; the first norm is poly's initial gradient
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])["grad_norm"]
    assert first <= f.values["clip_max_norm"] <= 3 * first
    # growth per step r of plain descent on a quadratic is |1 - lr λmax|: the implied limit 2/λmax is poly's
    # (2/λmax of the Hessian 2 XᵀX is 0.003995, computed in the docs walk-through)
    assert f.values["stable_lr_limit"] == pytest.approx(0.003995, rel=0.01)
    fixed = train(tmp_path, MODELS / "poly.yaml", ["optimizer.lr=0.01", "train.steps=300", *f.overrides], "fixed")
    assert "exploding" not in rules(fixed)
    assert json.loads((fixed / "summary.json").read_text())["status"] == "completed"


def test_skipped_non_finite_steps_are_evidence(tmp_path):
    run_dir = train(
        tmp_path, MODELS / "poly.yaml", ["optimizer.lr=0.01", "train.steps=300", "train.on_divergence=skip"]
    )
    f = rules(run_dir)["exploding"]
    skipped = [
        json.loads(line)["step"]
        for line in (run_dir / "metrics.jsonl").read_text().splitlines()
        if json.loads(line).get("skipped")
    ]
    assert skipped and f.values["first_non_finite_step"] == skipped[0]
    assert f"{len(skipped)} step(s) skipped under on_divergence: skip, the first at step {skipped[0]}" in f.evidence


def test_deep_sigmoid_mlp_has_vanishing_gradients_and_relu_fixes_them(tmp_path):
    run_dir = train(tmp_path, DEEP_SIGMOID)
    found = rules(run_dir)
    assert set(found) == {"vanishing"}
    f = found["vanishing"]
    assert "net.0" in f.values["layers"] and f.values["largest"] == "net.8"
    assert f.values["layers"]["net.0"]["share_below"] == 1.0 and f.values["layers"]["net.0"]["median_ratio"] < 1e-4
    assert f.overrides == ["model.nodes.0.net.activation=relu"]
    fixed = train(tmp_path, DEEP_SIGMOID, f.overrides, "fixed")
    assert "vanishing" not in rules(fixed)


def test_poly_with_plain_descent_is_poorly_conditioned_and_lbfgs_fixes_it(tmp_path):
    run_dir = train(tmp_path, MODELS / "poly.yaml")
    found = rules(run_dir)
    assert set(found) == {"conditioning"}
    f = found["conditioning"]
    assert f.values["condition"] == pytest.approx(1944, rel=0.01)  # the article's "about 2000"
    assert f.values["final_loss"] / f.values["optimum_loss"] > 3
    fixed = train(tmp_path, MODELS / "poly.yaml", f.overrides, "fixed")
    assert not rules(fixed)
    summary = json.loads((fixed / "summary.json").read_text())
    assert summary["train"]["loss"] == pytest.approx(f.values["optimum_loss"], rel=1e-6)


def test_a_tiny_learning_rate_is_a_plateau(tmp_path):
    run_dir = train(tmp_path, SMALL_LR)
    found = rules(run_dir)
    assert set(found) == {"plateau"}
    f = found["plateau"]
    assert f.values["improvement"] < 0.01 and f.values["late_grad_norm"] > 0.5 * f.values["early_grad_norm"]
    assert f.overrides == ["optimizer.lr=0.0001"]


def test_a_full_batch_run_that_overshoots_is_a_plateau_with_a_decaying_schedule(tmp_path):
    run_dir = train(tmp_path, SMALL_LR, ["optimizer.lr=3.0"])
    f = rules(run_dir)["plateau"]
    assert f.values["rising_share"] > 0.3 and "overshoot" in " ".join(f.evidence)
    assert f.overrides == ["schedule={type: cosine, min_lr: 0.0}", "optimizer.lr=1"]


def test_dead_relu_layers_are_vanishing_with_a_smaller_step(tmp_path):
    run_dir = train(tmp_path, SMALL_LR, ["optimizer.lr=6.0"])
    f = rules(run_dir)["vanishing"]
    assert f.values["layers"]["net.0"]["median_ratio"] == 0
    assert "dead" in " ".join(f.evidence) and f.overrides == ["optimizer.lr=0.6"]


def test_a_small_model_overfits_and_early_stopping_keeps_its_best(tmp_path):
    run_dir = train(tmp_path, OVERFIT)
    found = rules(run_dir)
    assert set(found) == {"overfitting"}
    f = found["overfitting"]
    assert f.values["final_val_loss"] > 2 * f.values["best_val_loss"]
    assert f.values["final_train_loss"] < f.values["train_loss_at_best"]
    assert f.overrides[0].startswith("train.validation.patience=")
    stopped = train(tmp_path, OVERFIT, f.overrides, "stopped")
    summary = json.loads((stopped / "summary.json").read_text())
    assert summary["stopped_early"] and summary["best"]["step"] == f.values["best_step"]
    assert (stopped / "checkpoints" / f"step-{summary['best']['step']:08d}").is_dir()
    # early stopping did its job: no alarm, and the gap that opened before the stop gets regularization advice
    report = diagnose(stopped)
    assert report.findings == []
    assert any("stopped early" in note and "optimizer.weight_decay=0.01" in note for note in report.checked)


@pytest.mark.parametrize(
    "spec",
    [
        "poly_lbfgs.yaml",
        "poly_adam.yaml",
        "linear_regression.yaml",
        "mlp_digits.yaml",
        "poly_momentum.yaml",
        "poly_early_stop.yaml",
    ],
)
def test_healthy_runs_report_nothing_alarming(tmp_path, spec):
    run_dir = train(tmp_path, MODELS / spec)
    assert diagnose(run_dir).findings == []
    result = run_cli("diagnose", run_dir)
    assert result.returncode == 0 and "no problems found" in result.stdout and "warning" not in result.stdout


def test_cli_text_and_json_and_exit_0_with_findings(tmp_path):
    run_dir = train(tmp_path, MODELS / "poly.yaml", ["optimizer.lr=0.01", "train.steps=300"])
    text = run_cli("diagnose", run_dir)
    assert text.returncode == 0
    assert "warning: exploding gradients" in text.stdout and "--set 'train.clip={max_norm: " in text.stdout
    report = json.loads(run_cli("diagnose", run_dir, "--format", "json").stdout)
    assert report["status"] == "diverged" and report["findings"][0]["rule"] == "exploding"
    assert report["findings"][0]["values"]["peak_step"] > 1


def test_a_run_killed_before_its_summary_is_still_diagnosed(tmp_path):
    run_dir = train(tmp_path, MODELS / "poly.yaml", ["optimizer.lr=0.01", "train.steps=300"])
    (run_dir / "summary.json").unlink()
    with open(run_dir / "metrics.jsonl", "a") as f:
        f.write('{"step": 9')  # a torn last line
    assert [f.rule for f in diagnose(run_dir).findings] == ["exploding"]


@pytest.mark.parametrize(
    "setup, message",
    [
        (lambda d: None, "is not a run directory"),
        (lambda d: d.mkdir(), "cannot read"),
        (lambda d: (d.mkdir(), (d / "metrics.jsonl").write_text("")), "has no records"),
    ],
)
def test_unreadable_run_directories_are_clear_errors(tmp_path, setup, message):
    run_dir = tmp_path / "run"
    setup(run_dir)
    result = run_cli("diagnose", run_dir)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


# ------------------------------------------------------------------------------------------ damaged logs
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from specgrad.run.diagnose import DiagnoseError  # noqa: E402

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
NUMBER = st.none() | st.floats(allow_nan=False) | st.integers(-3, 3) | JSON
RECORD = st.fixed_dictionaries(
    {"step": st.integers(0, 50)},
    optional={
        "loss": NUMBER,
        "grad_norm": NUMBER,
        "lr": NUMBER,
        "skipped": JSON,
        "grad_norms": st.dictionaries(st.sampled_from(["a.w", "a.b", "b.w", "k"]), NUMBER, max_size=4) | JSON,
        "val": st.dictionaries(st.sampled_from(["loss", "mse"]), NUMBER, max_size=2) | JSON,
    },
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(records=st.lists(RECORD, min_size=1, max_size=30), summary=JSON, spec=JSON)
def test_damaged_run_files_give_a_report_or_a_clear_error(tmp_path, records, summary, spec):
    """Whatever a damaged or hand-edited run directory holds, diagnose reports or raises DiagnoseError, and
    plot draws: never a traceback."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from specgrad.run.diagnose import format_text
    from specgrad.run.plot import figure

    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (run_dir / "summary.json").write_text(json.dumps(summary))
    (run_dir / "spec.yaml").write_text(json.dumps(spec))
    try:
        report = diagnose(run_dir)
    except DiagnoseError:
        return
    format_text(report)
    json.dumps(report.to_json())
    plt.close(figure(plt, records, "run"))
