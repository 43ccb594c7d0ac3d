"""One writer per run directory (docs/reliability.md, "Checkpoints and run directories from untrusted hands"):
a second `specgrad train` into a directory another one is writing is refused, naming the holder; the lock
dies with its holder, SIGKILL included, so a killed run resumes."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import MODELS, run_cli

from specgrad.run.checkpoint import latest_checkpoint
from specgrad.run.lock import LOCK_FILE, RunLock, RunLocked

POLY = MODELS / "poly.yaml"
# long enough to still be running when the second writer arrives; resumed, it finishes in seconds
SLOW = ["train.steps=400000", "train.checkpoint={every: 2000, keep_last: 1}", "train.log_every=1000"]


def sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def start_train(run_dir, overrides):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "specgrad.cli",
            "train",
            str(POLY),
            *sets(overrides),
            "--run-dir",
            str(run_dir),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(predicate, proc, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)


def holder_written(run_dir, pid):
    try:
        return json.loads((run_dir / LOCK_FILE).read_text()).get("pid") == pid
    except (OSError, ValueError):
        return False


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_holder_and_a_sigkilled_holder_resumes(tmp_path):
    first = start_train(tmp_path, SLOW)
    try:
        wait_for(lambda: (tmp_path / "checkpoints" / "latest").exists() and holder_written(tmp_path, first.pid), first)
        spec_before = (tmp_path / "spec.yaml").read_bytes()
        second = run_cli("train", POLY, *sets(SLOW + ["optimizer.lr=0.002"]), "--run-dir", tmp_path, "--quiet")
        assert second.returncode == 1
        assert f"pid {first.pid} on host {socket.gethostname()}" in second.stderr, second.stderr
        assert "in use by another specgrad train" in second.stderr and "Traceback" not in second.stderr
        # the resuming kind of second writer is refused too
        again = run_cli("train", POLY, *sets(SLOW), "--run-dir", tmp_path, "--resume", "--quiet")
        assert again.returncode == 1 and f"pid {first.pid}" in again.stderr
        assert (tmp_path / "spec.yaml").read_bytes() == spec_before  # nothing of the second one mixed in
        assert first.poll() is None  # the holder was not disturbed
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL
    # the kernel released the lock with the dead holder: its own resume is not blocked
    # to end the test in seconds: a few steps past the holder's last checkpoint (hence --allow-spec-change;
    # a run is never shortened below its checkpoint)
    reached = latest_checkpoint(tmp_path / "checkpoints").step
    shorter = [f"train.steps={reached + 10}", *SLOW[1:]]
    resumed = run_cli(
        "train", POLY, *sets(shorter), "--run-dir", tmp_path, "--resume", "--allow-spec-change", "--quiet"
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "completed"


def test_the_lock_is_released_when_the_run_ends_and_refuses_meanwhile(tmp_path):
    with RunLock(tmp_path), pytest.raises(RunLocked, match=f"pid {os.getpid()}"):
        with RunLock(tmp_path):
            pass
    with RunLock(tmp_path):  # released: taken again
        pass


def test_a_planted_lock_symlink_is_not_followed(tmp_path):
    target = tmp_path / "victim"
    target.write_text("precious\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_FILE).symlink_to(target)
    with pytest.raises(OSError, match="lock file"), RunLock(tmp_path / "run"):
        pass
    assert target.read_text() == "precious\n"
