"""`specgrad runs` and `specgrad compare` against the run directories' own files."""

import csv
import io
import json

import pytest

from tests.conftest import MODELS, run_cli


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name, lr in (("a", "1.0e-3"), ("b", "3.0e-3")):
        r = run_cli(
            "train",
            MODELS / "poly.yaml",
            "--set",
            "train.steps=60",
            "--set",
            f"optimizer.lr={lr}",
            "--set",
            "data.split.val=0.2",
            "--set",
            "train.validation.every=20",
            "--run-dir",
            root / name,
            "--quiet",
        )
        assert r.returncode == 0, r.stderr
    return root


def test_runs_lists_each_run_with_its_summary(two_runs):
    r = run_cli("runs", two_runs, "--format", "json")
    assert r.returncode == 0, r.stderr
    rows = {row["run"]: row for row in json.loads(r.stdout)}
    assert set(rows) == {str(two_runs / "a"), str(two_runs / "b")}
    for run, row in rows.items():
        summary = json.loads((two_runs / run.split("/")[-1] / "summary.json").read_text())
        assert row["status"] == "completed" and row["steps"] == 60
        assert row["val.loss"] == summary["val"]["loss"] and row["train.loss"] == summary["train"]["loss"]
        assert row["objective"] == "best val.loss" and row["value"] == summary["best"]["value"]
    table = run_cli("runs", two_runs).stdout.splitlines()
    assert table[0].split()[:5] == ["run", "name", "status", "steps", "seconds"] and len(table) == 3
    parsed = list(csv.DictReader(io.StringIO(run_cli("runs", two_runs, "--format", "csv").stdout)))
    assert [float(p["val.loss"]) for p in parsed] == [rows[str(two_runs / n)]["val.loss"] for n in "ab"]


def test_an_unfinished_run_shows_how_far_it_got(two_runs, tmp_path):
    import shutil

    shutil.copytree(two_runs / "a", tmp_path / "killed")
    (tmp_path / "killed" / "summary.json").unlink()
    row = json.loads(run_cli("runs", tmp_path, "--format", "json").stdout)[0]
    assert row["status"] == "unfinished" and row["steps"] == 60


def test_compare_shows_only_the_values_that_differ(two_runs, tmp_path):
    r = run_cli("compare", two_runs / "a", two_runs / "b", "--plot", tmp_path / "c.png")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    keys = [line.split()[0] for line in lines[1:]]
    assert keys[0] == "optimizer.lr" and keys[1] == "status"  # the one spec value that differs
    assert lines[1].split()[1:] == ["0.001", "0.003"]
    val = json.loads((two_runs / "b" / "summary.json").read_text())["val"]["loss"]
    assert f"{val:.6g}" in next(line for line in lines if line.startswith("val.loss"))
    png = (tmp_path / "c.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_refuses_what_is_not_a_run(tmp_path):
    r = run_cli("compare", tmp_path, tmp_path)
    assert r.returncode == 1 and "is not a run directory" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("runs", tmp_path / "nope")
    assert r.returncode == 1 and "no such run directory" in r.stderr
