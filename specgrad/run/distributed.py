"""Data-parallel training over MPI (docs/distributed.md): what the trainer asks of the processes of a run.

``mpiexec -n N specgrad train SPEC`` starts N processes (ranks) that each build the same model from the same
spec and seed. The batch stays the spec's global batch; each rank takes a contiguous block of its rows (a
``Shard``), computes the gradient of its share of the batch's loss, and one Allreduce over a flat buffer
(gradients, loss, stop requests, per-rank model state) sums the shares, so every rank applies the same update
to the same parameters. Rank 0 alone writes the run directory.

The trainer talks to a ``Communicator``: in one process every method is the identity and nothing here imports
mpi4py; ``connect()`` returns an ``MPICommunicator`` only when the process was started by an MPI launcher.
"""

from __future__ import annotations

import hashlib
import os
import signal
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specgrad.model.build import build_model
from specgrad.model.layers.base import DataParallel

EXTRA = "pip install 'specgrad[mpi]'"
# set for each process by MPI launchers: MPICH's hydra and Intel MPI (PMI_*), Open MPI (OMPI_*), PMIx (PMIX_*)
RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")
SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")


class DistributedError(Exception):
    """A data-parallel run that cannot start or go on: mpi4py missing, a batch too small to split over the
    ranks, a rank lost, ranks holding different parameters."""


def launched_rank(env=os.environ) -> int | None:
    """This process's rank if an MPI launcher started it (read from the environment, importing nothing)."""
    for name in RANK_VARIABLES:
        if env.get(name, "").isdigit():
            return int(env[name])
    return None


def launched_size(env=os.environ) -> int | None:
    """How many processes the launcher started, where it says (None if it does not)."""
    for name in SIZE_VARIABLES:
        if env.get(name, "").isdigit():
            return int(env[name])
    return None


@dataclass(frozen=True)
class Shard:
    """One rank's rows of a batch of ``batch_rows``: rows ``first_row`` to ``first_row + rows`` (contiguous),
    and the weights of its loss terms (``specgrad.model.build._Builder.shard_loss``): the data term's, so
    the ranks' shares sum to the batch's loss, and the penalties', counted once (by rank 0)."""

    first_row: int
    rows: int
    weights: tuple[float, float]


class Communicator:
    """The processes of a run as the trainer sees them. This base class is one process: every collective is
    the identity, and the trainer takes its single-process path (no shards, no reduction) when size is 1."""

    rank, size = 0, 1

    @property
    def is_root(self) -> bool:
        """Whether this process writes the run directory and reports."""
        return self.rank == 0

    def shard(self, batch_rows: int, mean_loss: bool) -> Shard:
        """This rank's block of a batch of ``batch_rows`` rows: sizes differ by at most one row."""
        if batch_rows < self.size:
            raise DistributedError(
                f"a batch of {batch_rows} rows cannot be split over {self.size} processes; "
                f"use at most {batch_rows} processes or larger batches"
            )
        start, stop = (batch_rows * r // self.size for r in (self.rank, self.rank + 1))
        data_weight = (stop - start) / batch_rows if mean_loss else 1.0
        return Shard(start, stop - start, (data_weight, 1.0 if self.rank == 0 else 0.0))

    def allreduce(self, buffer: np.ndarray) -> None:
        """Sum ``buffer`` over the processes, in place."""

    def group_sum(self, x: np.ndarray) -> np.ndarray:
        """x summed over the processes, as a new array (the ``allreduce_sum`` op's transport)."""
        return np.array(x, copy=True)

    def broadcast_text(self, text: str) -> str:
        """Rank 0's ``text``, on every rank."""
        return text

    def check_same(self, arrays: dict[str, np.ndarray], what: str) -> None:
        """Raise DistributedError unless every rank holds the same bits in ``arrays``."""

    def abort(self, code: int) -> None:
        """End every process of the job with exit status ``code``."""
        raise SystemExit(code)

    @contextmanager
    def failing_together(self, report):
        """An exception escaping the block on any rank ends the whole job: the others may be waiting for it
        in a collective, and would wait for ever. ``report(exception)`` prints it first (rank-tagged);
        in one process the exception simply propagates. An exception whose class says ``collective = True``
        (a divergence: every rank decides it at the same step, from the same summed values) is raised by
        every rank at once, with none waiting: rank 0 goes on to report it and close the run directory as one
        process does, the others end quietly with status 1, and nothing is aborted."""
        yield


class MPICommunicator(Communicator):
    def __init__(self, comm):
        from mpi4py import MPI

        self.MPI, self.comm = MPI, comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()

    def allreduce(self, buffer: np.ndarray) -> None:
        with self._lost_process():
            self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def group_sum(self, x: np.ndarray) -> np.ndarray:
        out = np.array(x, copy=True, order="C")
        with self._lost_process():
            self.comm.Allreduce(self.MPI.IN_PLACE, out, op=self.MPI.SUM)
        return out

    @contextmanager
    def _lost_process(self):
        """An MPI error in a collective means, in practice, that another process died: say so, not the
        MPI library's error stack (its first line is kept)."""
        try:
            yield
        except self.MPI.Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise DistributedError(
                f"a process of this run stopped (killed, or failed) while the others "
                f"waited for it ({first}); the run resumes from its last checkpoint with "
                f"--resume, on any number of processes"
            ) from None

    def broadcast_text(self, text: str) -> str:
        data = np.frombuffer(text.encode("utf-8"), np.uint8)  # only the root's is sent
        length = np.array([len(data)], np.int64)
        self.comm.Bcast(length, root=0)
        buffer = data.copy() if self.is_root else np.empty(int(length[0]), np.uint8)
        self.comm.Bcast(buffer, root=0)
        return buffer.tobytes().decode("utf-8")

    def check_same(self, arrays: dict[str, np.ndarray], what: str) -> None:
        digest = hashlib.sha256()
        for name in sorted(arrays):
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(arrays[name]).tobytes())
        mine = np.frombuffer(digest.digest(), np.uint8)
        every = np.empty((self.size, mine.size), np.uint8)
        self.comm.Allgather(mine, every)
        differ = [r for r in range(self.size) if not np.array_equal(every[r], every[0])]
        if differ:
            raise DistributedError(
                f"the {what} of rank(s) {', '.join(map(str, differ))} differ from rank 0's "
                "(the MPI library's Allreduce does not give every rank the same bits)"
            )

    def abort(self, code: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        self.comm.Abort(code)

    @contextmanager
    def failing_together(self, report):
        try:
            yield
        except BaseException as e:  # KeyboardInterrupt and SystemExit too: the others would hang
            if getattr(e, "collective", False):  # raised on every rank at one step: nobody waits
                if self.is_root:
                    raise
                raise SystemExit(1) from None
            code = (
                e.code
                if isinstance(e, SystemExit) and isinstance(e.code, int)
                else 130
                if isinstance(e, KeyboardInterrupt)
                else 1
            )
            if not isinstance(e, SystemExit):
                report(e)
            self.abort(code)
            os._exit(code)  # MPI_Abort does not return; should it, never unwind into a traceback


def connect() -> Communicator:
    """The processes of this run: an MPICommunicator over MPI_COMM_WORLD when an MPI launcher started this
    process (mpiexec, srun) with others, else the single-process Communicator (and mpi4py is not imported:
    a launcher that says it started one process, as ``srun`` may for any command, needs no MPI)."""
    if launched_rank() is None or launched_size() == 1:
        return Communicator()
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise DistributedError(
            f"this process was started by an MPI launcher, but mpi4py cannot be imported "
            f"({e}); data-parallel training needs it: {EXTRA}"
        ) from None
    comm = MPICommunicator(MPI.COMM_WORLD)
    return comm if comm.size > 1 else Communicator()


class StepReducer:
    """The one Allreduce of a training step, over one flat buffer of the gradients' dtype: the optimizer's
    gradients (each rank's share; they live in the buffer's head, so nothing is copied in or out), the loss
    (each rank's share), one slot per stop signal (1 where a rank received it) and, when batchnorm keeps
    per-rank statistics, the model state divided by the number of ranks (so that the sum is their mean)."""

    def __init__(
        self, comm: Communicator, optimizer, state: dict[str, np.ndarray], average_state: bool, signals: tuple[int, ...]
    ):
        self.comm, self.optimizer, self.signals = comm, optimizer, signals
        self.state_names = list(state) if average_state else []
        n = sum(g.size for g in optimizer.grads.values())
        sizes = [n, 1 + len(signals), *(state[name].size for name in self.state_names)]
        dtype = np.result_type(*optimizer.grad_flat)
        self.buffer = np.empty(sum(sizes), dtype)
        bounds = np.cumsum([0, *sizes])
        self.grad_part, self.scalars, *self.state_views = [self.buffer[a:b] for a, b in zip(bounds[:-1], bounds[1:])]
        if len(optimizer.grad_flat) == 1:  # one dtype (always, for a spec's parameters): sum them where they are
            optimizer.place_gradients(self.grad_part)

    def __call__(self, loss: float, received: int | None, state: dict[str, np.ndarray]) -> tuple[float, int | None]:
        """Sum the step over the ranks: the optimizer's gradients in place, ``state``'s averaged entries
        replaced. Returns the batch's loss and the stop signal any rank had received (SIGTERM before SIGINT),
        None if none had."""
        grads = self.optimizer.grads
        placed = self.optimizer.grad_flat[0] is self.grad_part
        if not placed:
            np.concatenate([g.reshape(-1) for g in grads.values()], out=self.grad_part)
        self.scalars[0] = loss
        self.scalars[1:] = [float(received == s) for s in self.signals]
        for view, name in zip(self.state_views, self.state_names):
            np.multiply(state[name].reshape(-1), 1.0 / self.comm.size, out=view)
        self.comm.allreduce(self.buffer)
        if not placed:
            offset = 0
            for g in grads.values():
                np.copyto(g, self.grad_part[offset : offset + g.size].reshape(g.shape))
                offset += g.size
        for view, name in zip(self.state_views, self.state_names):
            state[name] = view.reshape(state[name].shape).astype(state[name].dtype)
        stops = [s for s, hit in zip(self.signals, self.scalars[1:]) if hit > 0]
        return float(self.scalars[0]), (max(stops) if stops else None)


class ShardedRun:
    """One process's part of a data-parallel run: its train graph (``DataParallel``), its rows of each batch
    with the weights of its share of the loss, and the step's one Allreduce. The trainer calls ``batch`` for
    each batch and ``reduce`` once per optimizer step."""

    def __init__(self, comm: Communicator, model, batches, mean_loss: bool, sync_batchnorm: bool, optimizer):
        self.comm, self.model, self.batches = comm, model, batches
        self.mean_loss, self.sync_batchnorm, self.optimizer = mean_loss, sync_batchnorm, optimizer
        self.reducer: StepReducer | None = None
        self.received: int | None = None  # the stop signal this process received (set by the trainer)
        self.agreed_signal: int | None = None  # the one any process received, after the step's Allreduce

    @classmethod
    def of(cls, comm: Communicator, spec, batches, optimizer, mean_loss: bool) -> ShardedRun:
        """The part of ``comm``'s process in training ``spec`` (validated) on ``batches``; ``mean_loss``: whether
        the loss is a mean over a batch's rows (``specgrad.model.losses.is_mean``)."""
        if optimizer.needs_closure:
            raise DistributedError(
                f"the {spec.data['optimizer']['type']} optimizer is not supported under mpiexec "
                "yet (its line search re-evaluates the loss); train it in one process"
            )
        sync_batchnorm = spec.settings.train.distributed.sync_batchnorm
        model = build_model(spec.data, spec.doc.loc, parallel=DataParallel(sync_batchnorm))
        for rows in sorted(batches.batch_sizes()):  # every batch must give each process a row at least
            comm.shard(rows, mean_loss)
        return cls(comm, model, batches, mean_loss, sync_batchnorm, optimizer)

    def start(self, train_step) -> None:
        """Size the step's buffer for the gradients and, with per-rank batchnorm statistics, the state."""
        self.reducer = StepReducer(
            self.comm,
            self.optimizer,
            train_step.state,
            average_state=not self.sync_batchnorm,
            signals=(signal.SIGINT, signal.SIGTERM),
        )

    def batch(self, index: int) -> tuple[list[np.ndarray], Shard]:
        """This process's rows of batch ``index``, and where they sit in it."""
        rows = self.batches.rows(index)
        count = len(range(*rows.indices(self.batches.n))) if isinstance(rows, slice) else len(rows)
        shard = self.comm.shard(count, self.mean_loss)
        mine = (
            rows[shard.first_row : shard.first_row + shard.rows]
            if not isinstance(rows, slice)
            else slice(rows.start + shard.first_row, rows.start + shard.first_row + shard.rows)
        )
        return [a[mine] for a in self.batches.fields], shard

    def reduce(self, loss: float, state: dict[str, np.ndarray]) -> float:
        """Sum this step's shares over the processes (the optimizer's gradients and ``state``, in place);
        the batch's loss."""
        assert self.reducer is not None, "start() sizes the reducer before the first step"
        loss, self.agreed_signal = self.reducer(loss, self.received, state)
        return loss


def run_dir_agreed(comm: Communicator, run_dir: Path) -> Path:
    """Rank 0's choice of run directory (a default one is named after the time, which ranks may read apart)."""
    return Path(comm.broadcast_text(str(run_dir)))
