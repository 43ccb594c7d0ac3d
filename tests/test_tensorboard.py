"""train.tensorboard: event files read back with TensorBoard's own reader hold exactly metrics.jsonl's values,
once per step, also after a resume."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import MODELS, ROOT, run_cli

pytest.importorskip("tensorboardX", reason="needs the specgrad[tensorboard] extra")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

SETTINGS = [
    "--set",
    "train.steps=40",
    "--set",
    "train.tensorboard=true",
    "--set",
    "data.split.val=0.2",
    "--set",
    "train.validation.every=10",
    "--set",
    "train.checkpoint.every=20",
]


def scalars(run_dir):
    acc = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def expected(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    out = {"train/loss": [], "train/lr": [], "train/grad_norm": [], "grad_norm/k": [], "val/loss": []}
    for r in records:
        for key in ("loss", "lr", "grad_norm"):
            out[f"train/{key}"].append((r["step"], r[key]))
        out["grad_norm/k"].append((r["step"], r["grad_norms"]["k"]))
        if "val" in r:
            out["val/loss"].append((r["step"], r["val"]["loss"]))
    return out


def assert_same(got, want):
    assert sorted(got) == sorted(want)
    for tag, points in want.items():
        assert [s for s, _ in got[tag]] == [s for s, _ in points], tag
        # event files hold float32
        assert [v for _, v in got[tag]] == pytest.approx([v for _, v in points], rel=1e-6), tag


def test_event_files_hold_the_logged_scalars(tmp_path):
    r = run_cli("train", MODELS / "poly.yaml", *SETTINGS, "--run-dir", tmp_path / "run", "--quiet")
    assert r.returncode == 0, r.stderr
    got, want = scalars(tmp_path / "run"), expected(tmp_path / "run")
    assert len(want["train/loss"]) == 40 and len(want["val/loss"]) == 4
    assert_same(got, want)


def histograms(run_dir):
    acc = event_accumulator.EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"histograms": 0})
    acc.Reload()
    return {tag: [(e.step, e.histogram_value) for e in acc.Histograms(tag)] for tag in acc.Tags()["histograms"]}


def test_each_checkpoint_adds_a_histogram_of_every_parameter(tmp_path):
    """At each checkpoint (every 20 steps, and at each validation, every 10, that finds a new best: steps 10,
    20, 30, 40 here), params/k summarizes that checkpoint's k: its count, sum, sum of squares, min and max."""
    run = tmp_path / "run"
    assert run_cli("train", MODELS / "poly.yaml", *SETTINGS, "--run-dir", run, "--quiet").returncode == 0
    got = histograms(run)
    assert sorted(got) == ["params/k"] and [step for step, _ in got["params/k"]] == [10, 20, 30, 40]
    with np.load(run / "checkpoints" / "step-00000040" / "arrays.npz", allow_pickle=False) as arrays:
        k = arrays["params/k"].astype(np.float64)
    h = got["params/k"][-1][1]
    assert (h.num, h.min, h.max) == (k.size, pytest.approx(k.min()), pytest.approx(k.max()))
    assert (h.sum, h.sum_squares) == (pytest.approx(k.sum()), pytest.approx((k**2).sum()))


def test_a_parameter_beyond_the_histograms_range_is_left_out_not_a_crash(tmp_path):
    """lr 1e10 drives k to about 1e37, finite (the run completes and checkpoints): TensorBoard's buckets end
    at 1e20, and tensorboardX raised 'The histogram is empty' at the final checkpoint."""
    run = tmp_path / "run"
    settings = ["train.tensorboard=true", "optimizer.lr=1.0e+10", "train.steps=3"]
    result = run_cli("train", MODELS / "poly.yaml", *[a for s in settings for a in ("--set", s)], "--run-dir", run)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and histograms(run) == {}
    assert [step for step, _ in scalars(run)["train/loss"]] == [1, 2, 3]


@pytest.mark.slow
def test_a_resumed_run_rewrites_the_steps_past_its_checkpoint_once(tmp_path):
    run = tmp_path / "run"
    assert run_cli("train", MODELS / "poly.yaml", *SETTINGS, "--run-dir", run, "--quiet").returncode == 0
    full = scalars(run)
    shutil.rmtree(run / "checkpoints" / "step-00000040")  # as if killed after logging step 40, saved at 20
    (run / "summary.json").unlink()
    r = run_cli("train", run / "spec.yaml", "--resume", "--run-dir", run, "--quiet")
    assert r.returncode == 0, r.stderr
    again = scalars(run)
    assert_same(again, expected(run))
    assert again == full  # bit-exact resume: the same curves, each step once
    steps = [step for step, _ in histograms(run)["params/k"]]
    assert steps == [10, 20, 30, 40]  # the resumed run's histograms past step 20 replace the first attempt's


def test_a_missing_extra_is_a_located_error_naming_it(tmp_path):
    code = (
        "import sys; sys.modules['tensorboardX'] = None\n"
        "from specgrad.cli import main; sys.argv = ['specgrad', 'train', {!r}, {}, '--run-dir', {!r}]; main()".format(
            str(MODELS / "poly.yaml"), ", ".join(repr(s) for s in SETTINGS), str(tmp_path / "run")
        )
    )
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "--set train.tensorboard=true:1:" in r.stderr and "pip install 'specgrad[tensorboard]'" in r.stderr
