"""The parts of data-parallel training that need no MPI: how a batch is split, how dropout keys a row's mask
by its place in the whole batch, and that one process never touches mpi4py (tests/test_distributed.py runs
real MPI jobs)."""

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import MODELS, ROOT

from specgrad.base.rng import batch_key, step_key
from specgrad.engine.ops.nn import dropout
from specgrad.run.distributed import Communicator, DistributedError, StepReducer, connect, launched_rank


class Rank(Communicator):
    def __init__(self, rank, size):
        self.rank, self.size = rank, size


@pytest.mark.parametrize("rows,size", [(50, 1), (50, 3), (45, 4), (4, 4), (1000, 7)])
def test_shards_cover_the_batch_in_order_and_their_weights_sum_to_one(rows, size):
    shards = [Rank(r, size).shard(rows, mean_loss=True) for r in range(size)]
    assert [s.first_row for s in shards] == list(np.cumsum([0] + [s.rows for s in shards])[:-1])
    assert sum(s.rows for s in shards) == rows and max(s.rows for s in shards) - min(s.rows for s in shards) <= 1
    assert sum(s.weights[0] for s in shards) == pytest.approx(1, abs=1e-15)
    assert [s.weights[1] for s in shards] == [1.0] + [0.0] * (size - 1)  # penalties counted once
    assert all(s.weights[0] == 1.0 for s in (Rank(r, size).shard(rows, mean_loss=False) for r in range(size)))


def test_a_batch_smaller_than_the_process_count_is_refused():
    with pytest.raises(DistributedError, match="a batch of 3 rows cannot be split over 4 processes"):
        Rank(0, 4).shard(3, mean_loss=True)


@pytest.mark.parametrize("shape", [(10, 6), (9, 2, 3), (5,)])
def test_dropout_gives_each_row_of_a_split_batch_its_whole_batch_mask(shape):
    x = np.random.default_rng(0).standard_normal(shape)
    key = step_key(3, 17)
    whole = dropout(x, batch_key(3, 17), rate=0.5, salt=2)
    assert np.array_equal(whole, dropout(x, np.uint64(key), rate=0.5, salt=2))  # [k, 0] is the scalar key k
    for cut in ([0, 3, 7, len(x)], [0, 1, len(x)], [0, len(x) - 1, len(x)]):
        pieces = [dropout(x[a:b], batch_key(3, 17, a), rate=0.5, salt=2) for a, b in zip(cut[:-1], cut[1:])]
        assert np.array_equal(np.concatenate(pieces), whole)
    assert not np.array_equal(dropout(x[1:], batch_key(3, 17, 0), rate=0.5, salt=2), whole[1:])


@pytest.mark.parametrize("dtypes", [("float64", "float64"), ("float32", "float64")])
def test_one_step_reduction_sums_gradients_and_loss_and_agrees_on_a_stop(dtypes):
    """Two "processes" in one: the buffer of the other is added to ours. Gradients of one dtype are summed
    where the optimizer keeps them; mixed dtypes go through copies."""
    from specgrad.optim.optimizers import make_optimizer

    def optimizer():
        params = {"w": np.zeros((1, 2), dtypes[0]), "b": np.zeros(1, dtypes[1])}
        return make_optimizer({"type": "sgd", "lr": 0.1}, params)

    class Sum(Rank):
        def allreduce(self, buffer):
            buffer += theirs.buffer

    state = {"mean": np.array([2.0, 4.0])}
    other = optimizer()
    theirs = StepReducer(Rank(1, 2), other, {"mean": np.array([4.0, 8.0])}, True, (2, 15))
    other.grads["w"][...], other.grads["b"][...] = [[3.0, 4.0]], [1.5]
    theirs.scalars[0], theirs.scalars[1:] = 0.25, [0, 1]
    theirs.state_views[0][...] = [2.0, 4.0]  # its state, halved
    if dtypes[0] != dtypes[1]:
        theirs.grad_part[...] = [3.0, 4.0, 1.5]
    ours = optimizer()
    reducer = StepReducer(Sum(0, 2), ours, state, True, (2, 15))
    assert (ours.grad_flat[0] is reducer.grad_part) == (dtypes[0] == dtypes[1])
    ours.grads["w"][...], ours.grads["b"][...] = [[1.0, 2.0]], [0.5]
    loss, stop = reducer(0.5, None, state)
    assert loss == 0.75 and stop == 15
    assert np.array_equal(ours.grads["w"], [[4.0, 6.0]]) and np.array_equal(ours.grads["b"], [2.0])
    assert np.array_equal(state["mean"], [3.0, 6.0])  # per-process statistics: their mean


def test_launched_rank_reads_the_launchers_environment():
    assert launched_rank({}) is None
    assert launched_rank({"PMI_RANK": "2", "PMI_SIZE": "4"}) == 2
    assert launched_rank({"OMPI_COMM_WORLD_RANK": "1"}) == 1


def test_a_launcher_that_started_one_process_needs_no_mpi4py(monkeypatch):
    monkeypatch.setenv("PMI_RANK", "0")
    monkeypatch.setenv("PMI_SIZE", "1")
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # importing it would fail
    comm = connect()
    assert type(comm) is Communicator and comm.size == 1
    monkeypatch.setenv("PMI_SIZE", "2")
    with pytest.raises(DistributedError, match=r"pip install 'specgrad\[mpi\]'"):
        connect()


def run(code, env):
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )


@pytest.mark.slow
def test_one_process_never_imports_mpi4py(tmp_path):
    code = f"""
import sys
from specgrad.cli import main
sys.argv = ["specgrad", "train", r"{MODELS / "poly.yaml"}", "--set", "train.steps=3",
            "--run-dir", r"{tmp_path / "r"}", "-q"]
try:
    main()
except SystemExit as e:
    assert e.code == 0, e.code
print("mpi4py" in sys.modules)
"""
    env = {k: "" for k in ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")}
    done = run(code, env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.slow
def test_under_a_launcher_without_mpi4py_the_error_names_the_extra(tmp_path):
    blocker = tmp_path / "mpi4py"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('No module named mpi4py (blocked by the test)')\n")
    done = subprocess.run(
        [sys.executable, "-m", "specgrad.cli", "train", str(MODELS / "poly.yaml"), "--run-dir", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "PMI_RANK": "0", "PMI_SIZE": "2"},
    )
    assert done.returncode == 1
    assert "pip install 'specgrad[mpi]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r").exists()


def test_npz_and_npy_data_are_memory_mapped_where_they_can_be(tmp_path):
    """Each process of a data-parallel run then reads only the rows it indexes, and processes on one machine
    share the file's pages; a compressed member cannot be mapped and is read whole."""
    from specgrad.data.sources import load_data

    x, y = np.random.default_rng(0).standard_normal((50, 3)), np.arange(50)
    np.savez(tmp_path / "d.npz", x=x, y=y)
    np.savez_compressed(tmp_path / "c.npz", x=x, y=y)
    np.save(tmp_path / "x.npy", np.asfortranarray(x))
    stored = load_data({"source": "npz", "path": "d.npz"}, 0, tmp_path)
    compressed = load_data({"source": "npz", "path": "c.npz"}, 0, tmp_path)
    single = load_data({"source": "npy", "fields": {"x": "x.npy"}}, 0, tmp_path)
    assert all(isinstance(a, np.memmap) for a in [*stored.values(), single["x"]])
    assert not any(isinstance(a, np.memmap) for a in compressed.values())
    for fields in (stored, compressed, single):
        assert np.array_equal(fields["x"], x) and fields["x"].dtype == x.dtype
    assert np.array_equal(stored["y"], y)


def test_a_truncated_npz_member_is_still_a_clear_error(tmp_path):
    from specgrad.data.registry import DataError
    from specgrad.data.sources import load_data

    np.savez(tmp_path / "d.npz", x=np.zeros((1000, 8)))
    data = (tmp_path / "d.npz").read_bytes()
    (tmp_path / "d.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="cannot read .*d.npz as .npz"):
        load_data({"source": "npz", "path": "d.npz"}, 0, tmp_path)


def test_a_count_behind_stop_gradient_is_a_constant_to_the_backward_pass():
    """Synchronized batchnorm divides by count(stop_gradient(x)) on the loss's path: count has no derivative,
    so the backward pass must not reach it (it used to raise NotDifferentiable)."""
    from specgrad.engine.autodiff import gradients
    from specgrad.engine.ir import Graph
    from specgrad.engine.plan import Plan

    graph = Graph("float64")
    w = graph.param("w", (3,))
    loss = graph.apply("sum", graph.apply("square", w)) / graph.apply("count", graph.apply("stop_gradient", w))
    (grad,) = gradients(loss, [w])
    value = np.array([1.0, -2.0, 0.5])
    _, g = Plan([loss, grad], [w])(value)
    np.testing.assert_allclose(g, 2 * value / 3, rtol=1e-15)
