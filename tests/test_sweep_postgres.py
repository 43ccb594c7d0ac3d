"""Many machines through one database: a real PostgreSQL server started for the test, and three `specgrad
sweep` commands (stand-ins for three machines) sharing its study and a run folder (the shared filesystem).
And optuna-dashboard serving a study."""

import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.test_sweep import BASE

optuna = pytest.importorskip("optuna", reason="sweeps need the specgrad[sweep] extra (optuna)")
pytestmark = pytest.mark.slow  # a real server and several worker processes: the full tier


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server_binaries() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))[::-1]), None)
    return Path(os.path.realpath(found)).parent if found else None


@pytest.fixture(scope="module")
def postgres_url():
    """A throwaway PostgreSQL server on 127.0.0.1 and a random port, its data in a temporary folder. The
    server refuses to run as root, so as root it runs as the `postgres` user the package creates."""
    pytest.importorskip("psycopg2", reason="postgresql:// storage needs psycopg2 (pip install psycopg2-binary)")
    bin_dir = _server_binaries()
    if bin_dir is None:
        pytest.skip("no PostgreSQL server installed (apt-get install postgresql; .ci/run does)")
    as_user = []
    folder = tempfile.mkdtemp(prefix="specgrad-pg-")
    if os.geteuid() == 0:
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root without a 'postgres' user to run the server as")
        os.chown(folder, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(folder, "data"), _free_port()

    def server(*args):
        return subprocess.run([*as_user, *args], capture_output=True, text=True, timeout=120)

    r = server(str(bin_dir / "initdb"), "-D", data, "-U", "specgrad", "--auth=trust", "-E", "UTF8")
    assert r.returncode == 0, r.stderr
    r = server(
        str(bin_dir / "pg_ctl"),
        "-D",
        data,
        "-l",
        os.path.join(folder, "log"),
        "-w",
        "-t",
        "60",
        "-o",
        f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c max_connections=100",
        "start",
    )
    assert r.returncode == 0, r.stderr + open(os.path.join(folder, "log")).read()
    try:
        import psycopg2

        conn = psycopg2.connect(host="127.0.0.1", port=port, user="specgrad", dbname="postgres")
        conn.autocommit = True
        conn.cursor().execute("CREATE DATABASE sweeps")
        conn.close()
        yield f"postgresql://specgrad@127.0.0.1:{port}/sweeps"  # the driver installed is found
    finally:
        server(str(bin_dir / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


GRID = """\
sweep: 1
spec: base.yaml
params:
  optimizer.lr: {choice: [1.0e-3, 3.0e-3, 1.0e-2]}
  optimizer.type: {choice: [rmsprop, adam]}
objective: {metric: val.loss, mode: min}
sampler: grid
"""


def test_three_machines_share_one_postgresql_study(postgres_url, tmp_path):
    (tmp_path / "base.yaml").write_text(BASE.replace("STEPS", "600"))
    (tmp_path / "sweep.yaml").write_text(GRID)
    shared = tmp_path / "shared"  # the filesystem every machine sees: the trials' run directories
    machines = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "specgrad.cli",
                "sweep",
                "sweep.yaml",
                "--workers",
                "1",
                "--storage",
                postgres_url,
                "--dir",
                str(shared),
            ],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(3)
    ]
    outputs = [m.communicate(timeout=600) for m in machines]
    assert [m.returncode for m in machines] == [0, 0, 0], outputs
    study = optuna.load_study(study_name="sweep", storage=postgres_url.replace("postgresql:", "postgresql+psycopg2:"))
    trials = study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    # each of the 6 points once; a surplus trial (a race between machines) would be failed, never run
    assert sorted((t.params["optimizer.lr"], t.params["optimizer.type"]) for t in complete) == sorted(
        (lr, o) for lr in (1e-3, 3e-3, 1e-2) for o in ("rmsprop", "adam")
    )
    assert all(t.user_attrs.get("surplus") for t in trials if t.state.name != "COMPLETE")
    workers = set()
    for t in complete:
        summary = json.loads((shared / t.user_attrs["run_dir"] / "summary.json").read_text())
        assert summary["val"]["loss"] == t.value
        workers.add(json.loads((shared / t.user_attrs["run_dir"] / "trial.json").read_text())["worker"])
    assert len(workers) >= 2  # the work was shared


def test_optuna_dashboard_serves_the_study(tmp_path):
    dashboard = shutil.which("optuna-dashboard")
    if dashboard is None:
        pytest.skip("optuna-dashboard is not installed (pip install optuna-dashboard)")
    (tmp_path / "base.yaml").write_text(BASE.replace("STEPS", "50"))
    (tmp_path / "sweep.yaml").write_text(GRID.replace("3.0e-3, 1.0e-2", "3.0e-3"))
    r = subprocess.run(
        [sys.executable, "-m", "specgrad.cli", "sweep", "sweep.yaml", "--dir", "out", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert r.returncode == 0, r.stderr
    port = _free_port()
    server = subprocess.Popen(
        [dashboard, f"sqlite:///{tmp_path / 'out' / 'study.db'}", "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, studies = time.time() + 60, None
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    studies = json.loads(response.read())
                break
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "optuna-dashboard did not answer"
        [study] = studies["study_summaries"]
        assert study["study_name"] == "sweep"
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard/", timeout=5) as response:
            assert b"<html" in response.read().lower()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies/{study['study_id']}", timeout=5) as r:
            detail = json.loads(r.read())
        assert len([t for t in detail["trials"] if t["state"] == "Complete"]) == 4
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_machine_that_dies_has_its_trial_resumed_by_another(postgres_url, tmp_path):
    """SIGKILL one of two machines mid-trial: once its trial's heartbeat lapses, the other machine fails
    it, retries it in the same run directory from its checkpoint, and finishes the study."""
    import signal

    (tmp_path / "base.yaml").write_text(BASE.replace("STEPS", "3000"))
    (tmp_path / "sweep.yaml").write_text(
        GRID.replace("name: ", "").replace("sampler: grid", "sampler: grid\nname: dies")
    )
    shared = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SPECGRAD_SWEEP_HEARTBEAT_S": "1", "SPECGRAD_SWEEP_GRACE_S": "4"}
    machines = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "specgrad.cli",
                "sweep",
                "sweep.yaml",
                "--workers",
                "1",
                "--storage",
                postgres_url,
                "--dir",
                str(shared),
                "--quiet",
            ],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        for _ in range(2)
    ]
    deadline, victim = time.time() + 300, None
    while victim is None and time.time() < deadline:
        for run in shared.glob("trial-*"):
            log = run / "metrics.jsonl"
            # mid-run: checkpointed, and far enough from the end that it cannot finish before the kill
            if (
                (run / "checkpoints").is_dir()
                and (run / "trial.json").exists()
                and log.exists()
                and len(log.read_bytes().splitlines()) < 2000
                and not (run / "summary.json").exists()
            ):
                worker_pid = int(json.loads((run / "trial.json").read_text())["worker"].rsplit(":", 1)[1])
                with open(f"/proc/{worker_pid}/stat") as f:
                    parent = int(f.read().rsplit(")", 1)[1].split()[1])
                victim = next(m for m in machines if m.pid == parent)
                victim_run = run.name
                break
        time.sleep(0.05)
    assert victim is not None
    victim.send_signal(signal.SIGKILL)  # the machine dies; its worker with it
    survivor = next(m for m in machines if m is not victim)
    assert survivor.wait(timeout=600) == 0
    study = optuna.load_study(study_name="dies", storage=postgres_url.replace("postgresql:", "postgresql+psycopg2:"))
    trials = study.get_trials()
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    assert len(complete) == 6 and len({tuple(sorted(t.params.items())) for t in complete}) == 6
    retried = [t for t in complete if t.user_attrs.get("retry_of") is not None]
    assert [t.user_attrs["run_dir"] for t in retried] == [victim_run]
    for t in complete:  # every step of every run logged exactly once
        steps = [
            json.loads(line)["step"]
            for line in (shared / t.user_attrs["run_dir"] / "metrics.jsonl").read_text().splitlines()
        ]
        assert steps == list(range(1, 3001)), t.user_attrs["run_dir"]
