"""Data-parallel training over MPI (specgrad/run/distributed.py, docs/distributed.md): N processes train as one.

The oracle is the single-process run of the same spec: for every example spec, N = 1, 2, 3 and 4 processes
must end with the parameters and model state of one process within 1e-12 (relative to the largest parameter
value: summation order is all that differs), and log the same losses. The tests start real MPI jobs with the
``mpiexec`` of the mpich wheel (``specgrad[mpi]``); they skip where mpi4py or mpiexec is missing.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS, ROOT

from specgrad.run.checkpoint import TrainingArrays

pytest.importorskip("mpi4py")


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"  # the mpich wheel installs it beside python
    return str(beside) if beside.is_file() else shutil.which("mpiexec")


MPIEXEC = _mpiexec()
pytestmark = [
    pytest.mark.skipif(MPIEXEC is None, reason="no mpiexec (pip install 'specgrad[mpi]')"),
    pytest.mark.slow,
]  # real MPI jobs: seconds each
# one BLAS thread per process: N processes on a few cores must not each start a thread per core
ENV = {
    **os.environ,
    "PYTHONPATH": str(ROOT),
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "PYTHONUNBUFFERED": "1",
}

SHORT_STEPS = ["train.epochs=null", "train.steps=6"]
# every example, shortened to a few seconds; each still crosses what it shows (an epoch's reshuffle, a short
# last batch, accumulation, validation, clipping)
EXAMPLES = {
    "poly.yaml": ["train.steps=12"],  # sse: a sum over the batch
    "poly_adagrad.yaml": ["train.steps=12"],
    "poly_adam.yaml": ["train.steps=12"],
    "poly_adamw.yaml": ["train.steps=12"],  # batches of 50, parameter groups
    "poly_momentum.yaml": ["train.steps=12"],  # reshuffles after 10 steps, clipping
    "poly_onecycle.yaml": ["train.steps=12"],
    "poly_rmsprop.yaml": ["train.steps=12"],  # accumulate 2, a short last batch of 8
    "poly_early_stop.yaml": ["train.epochs=12"],  # validation every 2 epochs, patience
    "linear_regression.yaml": ["train.steps=12"],
    "logistic_regression.yaml": ["train.steps=12"],  # an l2 penalty, counted once
    "mlp_moons.yaml": ["train.epochs=1"],  # batchnorm and dropout
    "mlp_digits.yaml": SHORT_STEPS,
    "residual_mlp.yaml": SHORT_STEPS,
    "cnn_digits.yaml": SHORT_STEPS,
    "lstm_adding.yaml": SHORT_STEPS,
    "attention_adding.yaml": SHORT_STEPS,
}


# what the examples leave out: a sum loss with a penalty (counted once, not once per process), and
# accumulation, clipping and uneven shards (45 rows over 2, 3 or 4 processes; a last batch of 25) under
# batchnorm and dropout
VARIANTS = {
    "poly_l2": ("poly.yaml", ["train.steps=12", "loss={type: sse, penalties: [{type: l2, params: [k], weight: 0.5}]}"]),
    "moons_accumulate": (
        "mlp_moons.yaml",
        ["train.epochs=1", "train.batch_size=45", "train.accumulate=2", "train.clip={max_norm: 0.5}"],
    ),
}


# examples that do not train data-parallel, and why (each refused with a clear error under mpiexec)
NOT_DISTRIBUTED = {"poly_lbfgs.yaml": "L-BFGS's line search is single-process for now"}


def test_every_example_is_covered():
    assert sorted([*EXAMPLES, *NOT_DISTRIBUTED]) == sorted(p.name for p in MODELS.glob("*.yaml"))


def train_all(jobs: list[dict], folder: Path, processes: int | None, timeout: float = 600):
    """Run ``jobs`` (tests/mpi_train.py) in one launch: under ``mpiexec -n processes``, or alone (None)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "jobs.json").write_text(json.dumps(jobs))
    command = [sys.executable, str(ROOT / "tests" / "mpi_train.py"), str(folder / "jobs.json")]
    if processes is not None:
        command = [MPIEXEC, "-n", str(processes), *command]
    done = subprocess.run(command, env=ENV, capture_output=True, text=True, timeout=timeout, cwd=folder)
    assert done.returncode == 0, done.stderr[-3000:]


def jobs_in(folder: Path) -> list[dict]:
    return [
        {"spec": str(MODELS / spec), "set": overrides, "run_dir": str(folder / name)}
        for name, (spec, overrides) in {**{n: (n, o) for n, o in EXAMPLES.items()}, **VARIANTS}.items()
    ]


def final_arrays(run_dir: Path) -> dict[str, np.ndarray]:
    latest = (run_dir / "checkpoints" / "latest").read_text().strip()
    with np.load(run_dir / "checkpoints" / latest / "arrays.npz") as z:
        saved = TrainingArrays.unpack({k: z[k] for k in z.files})
    return TrainingArrays(saved.params, {}, saved.state).pack()


def relative_difference(ours: dict, theirs: dict) -> float:
    """The largest difference of any parameter or state entry, relative to the largest value among them."""
    assert ours.keys() == theirs.keys()
    scale = max(float(np.abs(v).max()) for v in theirs.values())
    return max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours) / scale


def logged(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    folder = tmp_path_factory.mktemp("one")
    train_all(jobs_in(folder), folder, None)
    return folder


@pytest.mark.parametrize("processes", [1, 2, 3, 4])
def test_n_processes_train_every_example_as_one_does(one_process, processes, tmp_path):
    train_all(jobs_in(tmp_path), tmp_path, processes)
    for name in [*EXAMPLES, *VARIANTS]:
        ours, theirs = tmp_path / name, one_process / name
        assert relative_difference(final_arrays(ours), final_arrays(theirs)) <= 1e-12, name
        mine, single = logged(ours), logged(theirs)
        assert [r["step"] for r in mine] == [r["step"] for r in single], name
        np.testing.assert_allclose([r["loss"] for r in mine], [r["loss"] for r in single], rtol=1e-12, err_msg=name)
        for a, b in zip(mine, single):
            if "val" in b:
                assert a["val"].keys() == b["val"].keys()
                np.testing.assert_allclose(list(a["val"].values()), list(b["val"].values()), rtol=1e-12)
        summary = json.loads((ours / "summary.json").read_text())
        assert summary["steps"] == json.loads((theirs / "summary.json").read_text())["steps"]


def test_per_process_batchnorm_statistics_are_a_setting(one_process, tmp_path):
    """With sync_batchnorm: false each process normalizes with its own rows' statistics (and the running
    statistics are averaged over the processes): a different model from one process's, but one every
    process agrees on (checked at each checkpoint) and that trains."""
    job = {
        "spec": str(MODELS / "mlp_moons.yaml"),
        "run_dir": str(tmp_path / "run"),
        "set": [*EXAMPLES["mlp_moons.yaml"], "train.distributed.sync_batchnorm=false"],
    }
    train_all([job], tmp_path, 2)
    ours, theirs = final_arrays(tmp_path / "run"), final_arrays(one_process / "mlp_moons.yaml")
    assert relative_difference(ours, theirs) > 1e-6
    assert all(np.isfinite(v).all() for v in ours.values())
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["train"]["accuracy"] > 0.8


# ------------------------------------------------------------------------------------- as a user runs it
def specgrad_under_mpiexec(processes: int, *args, cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [MPIEXEC, "-n", str(processes), sys.executable, "-m", "specgrad.cli", *map(str, args)],
        env=ENV,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_an_example_that_does_not_train_data_parallel_is_a_clear_error(tmp_path):
    job = specgrad_under_mpiexec(2, "train", MODELS / "poly_lbfgs.yaml", "--set", "train.steps=3", cwd=tmp_path)
    out, err = job.communicate(timeout=120)
    assert job.returncode == 1 and "not supported under mpiexec" in err and "Traceback" not in err, err


def test_rank_0_alone_writes_and_reports(tmp_path):
    job = specgrad_under_mpiexec(3, "train", MODELS / "mlp_moons.yaml", "--set", "train.epochs=1", cwd=tmp_path)
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    runs = list((tmp_path / "runs" / "mlp_moons").iterdir())
    assert len(runs) == 1  # the ranks agreed on rank 0's run directory
    assert sorted(p.name for p in runs[0].iterdir()) == [
        ".lock",
        "checkpoints",
        "data.json",
        "metrics.jsonl",
        "spec.yaml",
        "summary.json",
    ]
    assert out.count("completed:") == 1 and f"-> runs/mlp_moons/{runs[0].name}" in out
    assert [r["step"] for r in logged(runs[0])] == list(range(1, 15))


def rank_pid(job: subprocess.Popen, rank: int) -> int:
    """The process id of one rank of ``job`` (found by the PMI_RANK its launcher gave it)."""
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit():
                continue
            env = (proc / "environ").read_bytes().split(b"\0")
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if f"PMI_RANK={rank}".encode() in env and b"specgrad.cli" in cmdline and job.args[-1].encode() in cmdline:
            return int(proc.name)
    raise AssertionError(f"rank {rank} not found")


def wait_for_checkpoint(run_dir: Path, job: subprocess.Popen, least_step: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        latest = run_dir / "checkpoints" / "latest"
        if latest.is_file() and int(latest.read_text().strip().split("-")[-1]) >= least_step:
            return
        assert job.poll() is None, job.communicate()
        time.sleep(0.05)
    raise AssertionError("no checkpoint in time")


LONG = ["--set", "train.checkpoint.every=20"]  # mlp_moons: 30 epochs of 14 steps


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    from conftest import run_cli

    run_dir = tmp_path_factory.mktemp("whole") / "run"
    done = run_cli("train", MODELS / "mlp_moons.yaml", *LONG, "--run-dir", run_dir, "-q", timeout=300)
    assert done.returncode == 0, done.stderr
    return run_dir


def resume_and_compare(run_dir: Path, processes: int, uninterrupted: Path, cwd: Path) -> None:
    job = specgrad_under_mpiexec(
        processes, "train", MODELS / "mlp_moons.yaml", *LONG, "--resume", "--run-dir", run_dir, cwd=cwd
    )
    out, err = job.communicate(timeout=300)
    assert job.returncode == 0, err
    assert relative_difference(final_arrays(run_dir), final_arrays(uninterrupted)) <= 1e-12
    mine, single = logged(run_dir), logged(uninterrupted)
    assert [r["step"] for r in mine] == [r["step"] for r in single] == list(range(1, 421))
    np.testing.assert_allclose([r["loss"] for r in mine], [r["loss"] for r in single], rtol=1e-12)


def test_a_killed_rank_ends_the_job_and_the_run_resumes_on_other_process_counts(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    job = specgrad_under_mpiexec(3, "train", MODELS / "mlp_moons.yaml", *LONG, "--run-dir", run_dir, cwd=tmp_path)
    wait_for_checkpoint(run_dir, job, 40)
    os.kill(rank_pid(job, 1), signal.SIGKILL)
    killed = time.monotonic()
    out, err = job.communicate(timeout=60)
    assert time.monotonic() - killed < 10  # within seconds, not a hang
    assert job.returncode != 0
    # whoever notices first says so: mpiexec (a process killed by signal 9), or a rank whose collective failed
    said = out + err
    assert "a process of this run stopped" in said or "Killed (signal 9)" in said, said
    assert "Traceback" not in said
    resume_and_compare(run_dir, 2, uninterrupted, tmp_path)  # 3 processes -> 2


def test_a_signal_to_one_rank_stops_all_at_one_step_and_the_run_resumes(uninterrupted, tmp_path):
    run_dir = tmp_path / "run"
    job = specgrad_under_mpiexec(2, "train", MODELS / "mlp_moons.yaml", *LONG, "--run-dir", run_dir, cwd=tmp_path)
    wait_for_checkpoint(run_dir, job, 20)
    os.kill(rank_pid(job, 1), signal.SIGTERM)
    out, err = job.communicate(timeout=60)
    assert job.returncode == 143, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["signal"] == signal.SIGTERM
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"step-{summary['steps']:08d}"
    resume_and_compare(run_dir, 4, uninterrupted, tmp_path)  # 2 processes -> 4


def test_a_divergence_under_fail_ends_every_rank_as_one_process_ends(tmp_path):
    """Every rank decides it at the same step: no abort, so rank 0 writes the whole log and the summary."""
    args = ["--set", "optimizer.lr=0.01", "--set", "train.steps=300", "--set", "train.on_divergence=fail"]
    alone = subprocess.run(
        [sys.executable, "-m", "specgrad.cli", "train", MODELS / "poly.yaml", *args, "--run-dir", "one", "--quiet"],
        env=ENV,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    job = specgrad_under_mpiexec(3, "train", MODELS / "poly.yaml", *args, "--run-dir", "three", "--quiet", cwd=tmp_path)
    out, err = job.communicate(timeout=120)
    assert alone.returncode == job.returncode == 1, err
    assert err.count("error: non-finite loss or gradient at step 254") == 1 and "Traceback" not in err, err
    assert [r["step"] for r in logged(tmp_path / "three")] == [r["step"] for r in logged(tmp_path / "one")]
    summary = json.loads((tmp_path / "three" / "summary.json").read_text())
    assert summary["status"] == "diverged" == json.loads((tmp_path / "one" / "summary.json").read_text())["status"]
