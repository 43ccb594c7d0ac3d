"""The training loop's promises: batching, accumulation, checkpoints and retention, validation and early
stopping, divergence policies, spec changes on resume, metrics.jsonl, summary.json and plots."""

import json
import math
import sys

import numpy as np
import pytest
import yaml
from conftest import MODELS, run_cli
from faults import poison, scripted_validation

import specgrad as sg
from specgrad.run.batches import Batches
from specgrad.run.checkpoint import latest_checkpoint, list_checkpoints, load_checkpoint, param_key
from specgrad.run.retention import improved, to_keep
from specgrad.run.trainer import Diverged, Hooks, RunError, Trainer
from specgrad.spec import SpecError, load_spec

POLY = MODELS / "poly.yaml"
VAL = ["data.split={val: 0.2}", "metrics=[mse]", "loss=mse", "optimizer={type: adam, lr: 0.05}"]


def train(tmp_path, *overrides, resume=False, **kw):
    trainer = Trainer(load_spec(POLY, list(overrides)), tmp_path, **kw)
    return trainer, trainer.run(resume=resume)


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def steps_on_disk(run_dir):
    return [int(p.name[5:]) for p in list_checkpoints(run_dir / "checkpoints")]


# ---------------------------------------------------------------------------- batching


def test_shuffling_is_seeded_and_differs_each_epoch():
    fields = {"i": np.arange(10)}
    a = Batches(fields, 4, True, False, np.random.default_rng(7))
    b = Batches(fields, 4, True, False, np.random.default_rng(7))
    epochs = [[a.get(e * 3 + j)[0] for j in range(3)] for e in range(2)]
    assert [len(x) for x in epochs[0]] == [4, 4, 2]  # the last batch is smaller...
    for e in range(2):
        assert sorted(np.concatenate(epochs[e])) == list(range(10))  # ...and each epoch sees every row once
    assert not np.array_equal(np.concatenate(epochs[0]), np.concatenate(epochs[1]))
    assert all(
        np.array_equal(b.get(i)[0], np.concatenate(epochs[i // 3])[4 * (i % 3) : 4 * (i % 3) + 4]) for i in range(6)
    )


def test_drop_last_skips_the_short_batch():
    batches = Batches({"i": np.arange(10)}, 4, False, True, np.random.default_rng(0))
    assert batches.per_epoch == 2
    assert [list(batches.get(i)[0]) for i in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3]]


def test_accumulating_k_batches_equals_one_k_times_larger_batch(tmp_path):
    common = ["loss=mse", "train.shuffle=false", "train.steps=30", "optimizer.lr=0.1"]
    big, _ = train(tmp_path / "big", *common, "train.batch_size=40")
    acc, _ = train(tmp_path / "acc", *common, "train.batch_size=10", "train.accumulate=4")
    np.testing.assert_allclose(acc.params["k"], big.params["k"], rtol=1e-12)
    assert records(tmp_path / "acc")[0]["epoch"] == 0 and records(tmp_path / "acc")[5]["epoch"] == 1


def test_epochs_count_optimizer_steps_through_accumulation(tmp_path):
    spec = tmp_path / "epochs.yaml"
    spec.write_text(POLY.read_text().replace("steps: 2000", "epochs: 3"))
    trainer = Trainer(load_spec(spec, ["train.batch_size=50", "train.accumulate=2"]), tmp_path / "run")
    summary = trainer.run()
    assert trainer.total_steps == 6 and summary["steps"] == 6 and summary["epochs"] == 3.0


# ---------------------------------------------------------------------------- checkpoints and retention


def test_checkpoints_every_n_steps_every_epoch_and_at_the_end(tmp_path):
    train(tmp_path / "s", "train.steps=25", "train.checkpoint={every: 10}")
    assert steps_on_disk(tmp_path / "s") == [10, 20, 25]
    train(tmp_path / "e", "train.steps=11", "train.batch_size=50", "train.checkpoint={every_epochs: 2}")
    assert steps_on_disk(tmp_path / "e") == [8, 11]  # 4 batches an epoch


def test_keep_last_keeps_the_newest(tmp_path):
    train(tmp_path, "train.steps=50", "train.checkpoint={every: 5, keep_last: 3}")
    assert steps_on_disk(tmp_path) == [40, 45, 50]


SCRIPT = [0.5, 0.3, 0.4, 0.3, float("nan"), 0.35, 0.6, 0.7, 0.8, 0.9]  # validations at steps 4, 8, ..., 40


def test_a_new_best_saves_and_survives_retention(tmp_path):
    summary = sg.train(
        sg.load(
            POLY,
            [
                *VAL,
                "train.steps=40",
                "train.validation={every: 4, metric: mse}",
                "train.checkpoint={every: 10, keep_last: 2}",
            ],
        ),
        tmp_path,
        validate=scripted_validation(SCRIPT, "mse"),
    ).summary
    # saved: 4 and 8 (new bests), 10, 20, 30, 40 (every 10); the tie at 12 and the NaN at 20 are not best
    assert summary["best"] == {"step": 8, "value": 0.3}
    assert steps_on_disk(tmp_path) == [8, 30, 40]


def test_keep_best_keeps_the_m_best_and_never_a_nan(tmp_path):
    sg.train(
        sg.load(
            POLY,
            [
                *VAL,
                "train.steps=40",
                "train.validation={every: 4, metric: mse}",
                "train.checkpoint={every: 4, keep_last: 1, keep_best: 3}",
            ],
        ),
        tmp_path,
        validate=scripted_validation(SCRIPT, "mse"),
    )
    # ranked: 0.3 at 8, 0.3 at 16 (tie: the earlier first), 0.35 at 24; the NaN at 20 never counts
    assert steps_on_disk(tmp_path) == [8, 16, 24, 40]
    assert json.loads((tmp_path / "checkpoints" / "step-00000040" / "state.json").read_text())["checkpoints"] == [
        [8, 0.3],
        [16, 0.3],
        [24, 0.35],
        [40, 0.9],
    ]


def test_retention_rules():
    saved = {10: 0.5, 20: float("nan"), 30: 0.3, 40: 0.3, 50: None, 60: 0.9}
    assert to_keep(saved, 1, 1, "min") == {60, 30}  # tie: the earlier reached it first
    assert to_keep(saved, 2, 2, "min") == {50, 60, 30, 40}
    assert to_keep(saved, 1, 1, "max") == {60}
    assert to_keep(saved, None, 0, "min") == set(saved)
    assert to_keep({20: float("nan")}, None, 1, "min") == {20}  # NaN is never best, but keep_last is all
    assert to_keep({10: float("inf"), 20: 1.0, 30: float("nan")}, 1, 1, "min") == {20, 30}
    assert not improved(float("nan"), None, "min") and not improved(0.3, 0.3, "min")
    assert not improved(float("inf"), None, "min") and not improved(float("-inf"), None, "max")  # no model to keep
    assert improved(0.29, 0.3, "min") and not improved(0.295, 0.3, "min", min_delta=0.01)


# ---------------------------------------------------------------------------- validation and early stopping


def test_early_stopping_after_patience_evaluations_without_a_better_metric(tmp_path):
    summary = sg.train(
        sg.load(POLY, [*VAL, "train.steps=400", "train.validation={every: 4, patience: 3, metric: mse}"]),
        tmp_path,
        validate=scripted_validation(SCRIPT, "mse"),
    ).summary
    # best 0.3 at step 8; 12 (a tie), 16, 20 are not better: the third stale evaluation stops the run
    assert summary["stopped_early"] and summary["steps"] == 20 and summary["status"] == "completed"
    assert summary["best"] == {"step": 8, "value": 0.3}
    assert steps_on_disk(tmp_path) == [4, 8, 20]


def test_validation_is_the_loss_and_metrics_on_the_val_split(tmp_path):
    from specgrad.model.metrics import evaluate

    trainer, _ = train(tmp_path, *VAL, "train.steps=5", "train.validation={every: 5}")
    want = evaluate(trainer.model, trainer.params, trainer.splits["val"], ["mse"])
    assert records(tmp_path)[-1]["val"] == want and len(trainer.splits["val"]["x"]) == 40


def test_validation_needs_a_val_split_and_a_computed_metric(tmp_path):
    with pytest.raises(SpecError, match="needs a validation split"):
        train(tmp_path, "train.validation={every: 2}")
    with pytest.raises(SpecError, match="metric 'r2' is not computed"):
        train(tmp_path, *VAL, "train.validation={every: 2, metric: r2}")
    with pytest.raises(SpecError, match="leaves no rows for validation out of the data's 200"):
        train(tmp_path, *VAL, "data.split={val: 0.001}", "train.validation={every: 2}")


@pytest.mark.slow
def test_settings_errors_are_reported_together_and_located(tmp_path):
    result = run_cli(
        "train",
        POLY,
        "--set",
        "train.validation={metric: r2}",
        "--set",
        "optimizer.nesterov=true",
        "--run-dir",
        tmp_path,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.splitlines() == [
        "--set train.validation={metric: r2}:1:18: error: train.validation needs a validation split: set "
        "data.split.val (e.g. 0.2)",
        "--set train.validation={metric: r2}:1:18: error: train.validation.metric 'r2' is not computed; use one "
        "of loss (or add it to metrics)",
        "--set train.validation={metric: r2}:1:18: error: train.validation needs 'every' or 'every_epochs'",
        f"{POLY}:29:12: error: optimizer: nesterov momentum needs momentum > 0 and dampening 0",
    ]


# ---------------------------------------------------------------------------- divergence


@pytest.mark.parametrize("where", ["loss", "grad"])
def test_divergence_stop_keeps_the_last_finite_state(tmp_path, where):
    warnings = []
    trainer = Trainer(
        load_spec(POLY, ["train.steps=30", "train.checkpoint={every: 5}"]),
        tmp_path,
        Hooks(on_warning=warnings.append, on_gradients=poison(13, where)),
    )
    summary = trainer.run()
    assert summary["status"] == "diverged" and summary["steps"] == 12
    assert "non-finite loss or gradient at step 13" in warnings[0]
    ckpt = latest_checkpoint(tmp_path / "checkpoints")
    assert ckpt.step == 12 and np.isfinite(ckpt.arrays[param_key("k")]).all()
    assert ckpt.arrays[param_key("k")].tobytes() == trainer.params["k"].tobytes()


def test_divergence_skip_leaves_parameters_and_optimizer_untouched(tmp_path):
    trainer = Trainer(
        load_spec(POLY, ["train.steps=20", "optimizer={type: adam, lr: 0.01}", "train.on_divergence=skip"]),
        tmp_path,
        Hooks(on_gradients=poison(6, "grad")),
    )
    summary = trainer.run()
    assert summary["status"] == "completed" and summary["skipped_steps"] == 1
    log = records(tmp_path)
    assert log[5]["skipped"] and log[5]["loss"] is not None and log[5]["grad_norm"] is None
    assert int(trainer.optimizer.t) == 19 and np.isfinite(trainer.params["k"]).all()


def test_accumulated_batches_of_unequal_rows_step_as_one_batch_of_all(tmp_path):
    """20 rows in batches of 8: accumulating 3 (8, 8, 4 rows) takes the step of one 20-row batch (a mean loss
    weighs each batch by its rows); even batches are plainly averaged, as before."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))
    np.savez(tmp_path / "d.npz", x=x, y=y)
    seen = {}

    def run(batch_size, accumulate, loss="mse"):
        spec = {
            "specgrad": 1,
            "name": "acc",
            "data": {"source": "npz", "path": str(tmp_path / "d.npz")},
            "model": {
                "inputs": {"x": [3]},
                "params": {"w": {"shape": [3, 1], "init": "ones"}},
                "nodes": [{"p": "x @ w"}],
                "output": "p",
            },
            "loss": loss,
            "optimizer": {"type": "sgd", "lr": 0.5},
            "train": {"steps": 1, "batch_size": batch_size, "accumulate": accumulate, "shuffle": False},
        }
        folder = tmp_path / f"{batch_size}-{accumulate}-{loss}"
        sg.train(
            sg.load(spec, roots=[tmp_path]),
            folder,
            on_gradients=lambda s, value, g: seen.update(g=g["w"].copy(), l=value) or value,
        )
        return seen["l"], seen["g"]

    loss, grad = run("full", 1)
    for batch_size, accumulate in [(8, 3), (10, 2), (4, 5)]:
        got_loss, got_grad = run(batch_size, accumulate)
        assert got_loss == pytest.approx(loss, rel=1e-13)
        np.testing.assert_allclose(got_grad, grad, rtol=1e-13)
    sse = run(8, 3, "sse")[1]  # a sum loss: the documented plain mean of the batches' gradients
    parts = [2 * x[a:b].T @ (x[a:b] @ np.ones((3, 1)) - y[a:b]) for a, b in [(0, 8), (8, 16), (16, 20)]]
    np.testing.assert_allclose(sse, np.mean(parts, axis=0), rtol=1e-13)


@pytest.mark.parametrize("policy", ["skip", "stop"])
def test_a_step_not_taken_leaves_the_model_state_as_it_was(tmp_path, policy):
    """batchnorm's running statistics from a non-finite forward (x * x overflows in the first batch) are put
    back with the parameters: the checkpoint holds finite statistics and predictions stay finite."""
    x = np.random.default_rng(0).normal(size=(16, 2))
    x[0, 0] = 1e200
    np.savez(tmp_path / "bn.npz", x=x, y=np.linspace(0, 1, 16)[:, None])
    spec = {
        "specgrad": 1,
        "name": "bn",
        "data": {"source": "npz", "path": str(tmp_path / "bn.npz")},
        "model": {
            "inputs": {"x": [2]},
            "nodes": [{"h": "x * x"}, {"b": {"layer": "batchnorm"}}, {"l": {"layer": "linear", "units": 1}}],
            "output": "l",
        },
        "loss": "mse",
        "optimizer": {"type": "adam", "lr": 0.01},
        "train": {"steps": 4, "batch_size": 4, "shuffle": False, "on_divergence": policy},
    }
    run = sg.train(sg.load(spec, roots=[tmp_path]), tmp_path / "run")
    state = {k: v for k, v in latest_checkpoint(tmp_path / "run" / "checkpoints").arrays.items() if "running" in k}
    assert state and all(np.isfinite(v).all() for v in state.values())
    assert np.isfinite(sg.open_run(run.path, roots=[tmp_path]).predict({"x": x[4:8]})["l"]).all()


def test_divergence_fail_raises_and_saves_nothing_new(tmp_path):
    trainer = Trainer(
        load_spec(POLY, ["train.steps=20", "train.checkpoint={every: 4}", "train.on_divergence=fail"]),
        tmp_path,
        Hooks(on_gradients=poison(10, "loss")),
    )
    with pytest.raises(Diverged, match="step 10 .on_divergence: fail"):
        trainer.run()
    assert steps_on_disk(tmp_path) == [4, 8]
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_non_finite_parameters_are_never_saved(tmp_path):
    """Three finite steps, saved; resumed with lr 1e308, the next step overflows the parameters (a finite
    gradient times a huge lr): that save is refused, and the three checkpoints before stay, finite."""
    base = ["train.steps=40", "train.checkpoint={every: 1}"]
    Trainer(load_spec(POLY, [*base, "train.steps=3"]), tmp_path).run()
    huge = Trainer(load_spec(POLY, [*base, "optimizer.lr=1.0e+308"]), tmp_path, allow_spec_change=True)
    with pytest.raises(Diverged, match="parameters k are not finite at step 4"):
        huge.run(resume=True)
    saved = list_checkpoints(tmp_path / "checkpoints")
    assert [p.name for p in saved] == ["step-00000001", "step-00000002", "step-00000003"]
    for path in saved:
        assert np.isfinite(load_checkpoint(path).arrays[param_key("k")]).all()


def test_on_gradients_returns_the_loss_that_is_logged_and_sees_the_gradient_that_is_applied(tmp_path):
    """The hook's loss is the one logged; gradients it leaves alone are applied bit for bit as without it;
    what it writes into them is what the optimizer applies (plain SGD: the step is -lr * gradient)."""
    overrides = ["train.steps=5", "train.accumulate=2", "train.batch_size=100"]
    plain = sg.train(sg.load(POLY, overrides), tmp_path / "plain")
    doubled = sg.train(sg.load(POLY, overrides), tmp_path / "doubled", on_gradients=lambda step, loss, grads: 2 * loss)
    assert [r["loss"] for r in doubled.metrics] == [2 * r["loss"] for r in plain.metrics]
    assert [r["grad_norm"] for r in doubled.metrics] == [r["grad_norm"] for r in plain.metrics]

    def unit(step, loss, grads):
        grads["k"][...] = 1.0
        return loss

    sg.train(sg.load(POLY, overrides), tmp_path / "unit", on_gradients=unit)
    k = latest_checkpoint(tmp_path / "unit" / "checkpoints").arrays["params/k"]
    np.testing.assert_allclose(k, np.full(6, -5 * 1.0e-3), rtol=1e-12)  # 5 steps of -lr * 1, from zeros


def test_on_batch_hears_every_micro_batch_index_in_order(tmp_path):
    heard = []
    sg.train(
        sg.load(POLY, ["train.steps=4", "train.accumulate=3", "train.batch_size=50"]), tmp_path, on_batch=heard.append
    )
    assert heard == list(range(12))


def test_a_validate_hook_without_the_validation_metric_is_a_clear_error(tmp_path):
    with pytest.raises(RunError, match="validate hook's results at step 4 have no 'mse' .* they have loss"):
        sg.train(
            sg.load(POLY, [*VAL, "train.steps=8", "train.validation={every: 4, metric: mse}"]),
            tmp_path,
            validate=lambda step, params: {"loss": 1.0},
        )


# ---------------------------------------------------------------------------- resume and spec changes


def test_resume_with_a_changed_spec_shows_the_difference(tmp_path):
    train(tmp_path, "train.steps=20")
    with pytest.raises(RunError) as err:
        train(tmp_path, "train.steps=30", "optimizer.lr=0.002", resume=True)
    assert "optimizer.lr: 0.001 -> 0.002" in str(err.value) and "train.steps: 20 -> 30" in str(err.value)
    assert "--allow-spec-change" in str(err.value)
    warnings = []
    trainer, summary = train(
        tmp_path, "train.steps=30", resume=True, allow_spec_change=True, hooks=Hooks(on_warning=warnings.append)
    )
    assert summary["steps"] == 30 and "train.steps: 20 -> 30" in warnings[0]
    assert "steps: 30" in (tmp_path / "spec.yaml").read_text()
    # fewer steps than the checkpoint's: refused before the run's spec.yaml is touched (it said 10 steps of a
    # run that completed 30)
    with pytest.raises(RunError, match="is at step 30, past the 10 steps this spec trains"):
        train(tmp_path, "train.steps=10", resume=True, allow_spec_change=True)
    assert "steps: 30" in (tmp_path / "spec.yaml").read_text()


@pytest.mark.slow
def test_cli_refuses_a_changed_spec_unless_allowed(tmp_path):
    assert run_cli("train", POLY, "--set", "train.steps=20", "--run-dir", tmp_path, "-q").returncode == 0
    refused = run_cli("train", POLY, "--set", "train.steps=25", "--run-dir", tmp_path, "--resume", "-q")
    assert refused.returncode == 1 and "train.steps: 20 -> 25" in refused.stderr
    allowed = run_cli(
        "train", POLY, "--set", "train.steps=25", "--run-dir", tmp_path, "--resume", "--allow-spec-change"
    )
    assert allowed.returncode == 0 and "completed: 25 steps" in allowed.stdout


# ---------------------------------------------------------------------------- observability


def test_metrics_jsonl_has_every_field(tmp_path):
    train(tmp_path, *VAL, "train.steps=6", "train.validation={every: 3}", "train.clip={max_norm: 0.01}")
    log = records(tmp_path)
    assert [r["step"] for r in log] == [1, 2, 3, 4, 5, 6]
    first = log[0]
    assert set(first) == {"step", "epoch", "loss", "lr", "grad_norm", "grad_norms"}
    assert first["grad_norm"] == pytest.approx(math.sqrt(sum(v * v for v in first["grad_norms"].values())))
    assert first["grad_norm"] > 0.01  # logged before clipping
    assert set(log[2]["val"]) == {"loss", "mse"}


def test_log_every_thins_the_log_but_keeps_the_last_step(tmp_path):
    train(tmp_path, "train.steps=25", "train.log_every=10")
    assert [r["step"] for r in records(tmp_path)] == [10, 20, 25]


def test_summary_follows_the_contract(tmp_path):
    _, summary = train(tmp_path, *VAL, "train.steps=10", "train.validation={every: 5}")
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    assert on_disk == summary
    assert {"status", "steps", "epochs", "seconds", "steps_per_s", "train", "val", "spec_hash"} <= set(summary)
    assert summary["status"] == "completed" and set(summary["val"]) == {"loss", "mse"}


@pytest.mark.slow
def test_plain_progress_lines_without_a_terminal(tmp_path):
    result = run_cli("train", POLY, "--set", "train.steps=100", "--run-dir", tmp_path)
    lines = [line for line in result.stdout.splitlines() if line.startswith("step ")]
    assert len(lines) == 10 and lines[-1].startswith("step 100/100 (100%)  loss ") and "eta" in lines[0]
    assert run_cli("train", POLY, "--set", "train.steps=100", "--run-dir", tmp_path / "q", "-q").stdout == ""


@pytest.mark.slow
def test_plot_writes_a_png(tmp_path):
    train(tmp_path, *VAL, "train.steps=20", "train.validation={every: 5}")
    result = run_cli("plot", tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "plot.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path, monkeypatch):
    from specgrad.run.plot import PlotError, plot_run

    train(tmp_path, "train.steps=5")
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    with pytest.raises(PlotError, match=r"pip install 'specgrad\[plot\]'"):
        plot_run(tmp_path)


def test_plot_of_a_folder_without_metrics_is_a_clear_error(tmp_path):
    result = run_cli("plot", tmp_path)
    assert result.returncode == 1 and "metrics.jsonl" in result.stderr and "Traceback" not in result.stderr


def test_progress_bar_on_a_terminal_shows_loss_and_eta(monkeypatch):
    from rich.progress import TimeRemainingColumn

    from specgrad import cli

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    progress = cli.ProgressView(quiet=False)
    assert progress.bar is not None
    assert any(isinstance(c, TimeRemainingColumn) for c in progress.bar.columns)
    hooks = progress.hooks()
    hooks.on_start(0, 100)
    hooks.on_step(10, 0.25)
    task = progress.bar.tasks[0]
    assert (task.completed, task.total, task.fields["loss"]) == (10, 100, 0.25)


def test_training_into_a_used_run_directory_needs_resume(tmp_path):
    spec = load_spec(MODELS / "poly.yaml", ["train.steps=10"])
    Trainer(spec, tmp_path).run()
    with pytest.raises(RunError, match="already holds a run"):
        Trainer(spec, tmp_path).run()


def test_the_run_spec_records_the_seed_used(tmp_path):
    text = (MODELS / "poly.yaml").read_text().replace("seed: 0\n", "")
    (tmp_path / "noseed.yaml").write_text(text)
    Trainer(load_spec(tmp_path / "noseed.yaml", ["train.steps=5"]), tmp_path / "run").run()
    assert yaml.safe_load((tmp_path / "run" / "spec.yaml").read_text())["seed"] == 0


def test_resume_finds_the_newest_run_or_the_run_of_the_given_spec(tmp_path):
    from specgrad.run.trainer import latest_run_dir, resume_dir

    for stamp in ("20261128-091528", "20261128-091528-2", "20261128-091528-10", "20261127-235959-99"):
        (tmp_path / "poly" / stamp).mkdir(parents=True)
    assert latest_run_dir("poly", tmp_path).name == "20261128-091528-10"
    run = tmp_path / "poly" / "20261128-091528-2"
    (run / "checkpoints").mkdir()
    assert resume_dir(run / "spec.yaml", "poly") == run


def test_a_loss_no_parameter_reaches_trains_full_batch_to_the_end(tmp_path):
    """Valid with a warning at validate, so it must train: the loss, computed from the data alone, was
    dropped from the third full-batch step on (a TypeError in the trainer)."""
    spec = load_spec(MODELS / "poly.yaml", ["model.output=x", "train.steps=4"])
    summary = Trainer(spec, tmp_path).run()
    assert summary["steps"] == 4
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(set(losses)) == 1 and math.isfinite(losses[0])


def test_run_files_are_strict_json_when_values_are_not_finite(tmp_path):
    """A loss that overflows (lr 1e200, steps skipped) was written to summary.json as Infinity, which jq and
    browsers refuse: not-finite values are null in every JSON file a run writes."""

    def strict(text):
        return json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in {text!r}"))

    spec = load_spec(MODELS / "poly.yaml", ["optimizer.lr=1.0e+200", "train.on_divergence=skip", "train.steps=3"])
    Trainer(spec, tmp_path).run()
    summary = strict((tmp_path / "summary.json").read_text())
    assert summary["skipped_steps"] == 2 and summary["train"]["loss"] is None
    assert [strict(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()][1:] == [None, None]
    result = run_cli("eval", tmp_path)
    assert result.returncode == 0 and strict(result.stdout)["loss"] is None
