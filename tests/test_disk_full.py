"""A disk that fills up while the run directory's own files are written (spec.yaml, data.json, metrics.jsonl,
summary.json) is an error naming the file (docs/reliability.md). As in tests/test_reliability.py the full
disk is simulated: the kernel's ENOSPC is raised where it would come, here at the write or the fsync of
the one file under test, found by the path the descriptor is open on."""

import errno
import os
from pathlib import Path

import pytest
from conftest import MODELS
from typer.testing import CliRunner

from specgrad.base.fileio import WriteError, write_atomic
from specgrad.cli import app

POLY = MODELS / "poly.yaml"
ARGS = ["--set", "train.steps=20", "--set", "train.checkpoint={every: 5}"]


def fill_disk_at(monkeypatch, name: str, on: str = "fsync") -> list[str]:
    """ENOSPC when the file ``name`` (or a temporary file beside it, ``.name.PID.tmp``) is fsynced or written
    through os.write-level flushes; returns the list of paths it failed, to assert the fault happened."""
    failed: list[str] = []

    def target(fd: int) -> str | None:
        try:
            path = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            return None
        base = Path(path).name
        return path if base == name or base.startswith(f".{name}.") else None

    real_fsync = os.fsync

    def fsync(fd):
        path = target(fd if isinstance(fd, int) else fd.fileno())
        if path is not None:
            failed.append(path)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return failed


@pytest.mark.parametrize("name", ["spec.yaml", "data.json", "metrics.jsonl", "summary.json"])
def test_a_full_disk_names_the_run_file_it_could_not_write(tmp_path, monkeypatch, name):
    failed = fill_disk_at(monkeypatch, name)
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(app, ["train", str(POLY), *ARGS, "--run-dir", str(run_dir), "--quiet"])
    assert failed, f"the fault at {name} never happened"
    assert result.exit_code == 1, result.output
    assert f"error: cannot write {run_dir / name}: No space left on device" in result.output, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, OSError)
    assert not list(run_dir.glob(f".{name}.*.tmp"))  # no temporary debris


@pytest.mark.slow
def test_metrics_full_mid_run_keeps_the_checkpoints_and_resume_works(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", str(POLY), *ARGS[:1], "train.steps=10", *ARGS[2:], "--run-dir", str(run_dir), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    fill_disk_at(monkeypatch, "metrics.jsonl")
    longer = ["--set", "train.steps=20", *ARGS[2:]]
    result = CliRunner().invoke(
        app, ["train", str(POLY), *longer, "--run-dir", str(run_dir), "--resume", "--allow-spec-change", "--quiet"]
    )
    assert result.exit_code == 1 and f"cannot write {run_dir / 'metrics.jsonl'}" in result.output, result.output
    monkeypatch.undo()
    result = CliRunner().invoke(
        app, ["train", str(POLY), *longer, "--run-dir", str(run_dir), "--resume", "--allow-spec-change", "--quiet"]
    )
    assert result.exit_code == 0, result.output


def test_write_atomic_leaves_the_previous_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "spec.yaml"
    path.write_text("before\n")
    fill_disk_at(monkeypatch, "spec.yaml")
    with pytest.raises(WriteError, match=f"cannot write {path}: No space left on device"):
        write_atomic(path, "after\n")
    assert path.read_text() == "before\n" and sorted(p.name for p in tmp_path.iterdir()) == ["spec.yaml"]
