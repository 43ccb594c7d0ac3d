"""How many BLAS threads a run's matrix products get: the thread policy (docs/performance.md, "Threads").

In order, the first that applies decides:

1. **The user's environment.** When any of ``ENV_VARS`` (OMP_NUM_THREADS, OPENBLAS_NUM_THREADS,
   MKL_NUM_THREADS, ...) is set, BLAS already obeys it and specgrad changes nothing, whatever the spec says.
2. **An enclosing limit.** Code that runs several trainings side by side (sweep workers, MPI ranks) calls
   ``limit(1)`` in each worker, as a function for the worker's lifetime or as a context manager: runs
   inside it never use more than that many threads. Under an MPI launcher (``PMI_SIZE``,
   ``OMPI_COMM_WORLD_SIZE`` above 1) the limit is 1 without asking.
3. **The spec's ``train.threads``**: a number of threads (at most the CPUs this process may use), or
   ``auto`` (the default).
4. **auto**: one thread per ``FLOPS_PER_THREAD`` of the plan's typical product (FLOP-weighted median), at least
   one, at most the usable CPUs; a plan without matrix products leaves BLAS as it is. Small products (digits'
   64x128 layers) get one thread: a second one costs a synchronisation per call that outweighs its help, and on
   a machine shared with other work a descheduled helper thread stalls every call. Large ones (wide's
   256x784x512) get every CPU.

The decision depends only on the spec, the data's batch size, the environment and the CPU count, never on
the load: the thread count can change the last bits of a large product (OpenBLAS splits some products
differently), and the same spec on the same machine must give the same bits. Pin ``train.threads`` where a
run must reproduce bits across machines with different CPU counts, or between a sweep and a single run.

**Row blocks.** Where a run gets several threads, every product of its plan can go through the engine's
row blocks (``Plan.blocked``: 2-D matmuls can; batched matmuls and conv2d's tensordots cannot) and its
typical product is big enough (``block_flops``), BLAS runs one thread and each large product is split into
one fixed block of rows per thread, the blocks shared between the loop's thread and
helpers (specgrad/engine/blocks.py): as fast as BLAS's own threads on a quiet machine, and 2-2.6x faster
than them beside another busy process, whose core BLAS's spinning threads wait for
(benchmarks/row_blocks.py). The blocks depend on the thread count, not on the load.

The engine never chooses threads; the runner applies a decision around its loop with ``applied``.
threadpoolctl (a runtime dependency: one pure-Python module, no dependencies of its own) finds the BLAS
that numpy loaded, whichever it is (OpenBLAS, MKL, BLIS, Accelerate), and sets and restores its threads.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from specgrad.base.sharing import Sharing
from specgrad.engine.blocks import row_blocks

# variables through which a user sets BLAS / OpenMP threads; if one is set, specgrad keeps its hands off
ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
# launchers' variables giving the number of MPI ranks (MPICH/Hydra, Open MPI)
MPI_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
# floating-point operations of one product per thread that make another thread worth its synchronisation:
# measured with OpenBLAS on 2 cores, a second thread pays off from about 30 MFLOP per product (256^3)
FLOPS_PER_THREAD = 16e6

_limit: int | None = None  # set by limit(): the most threads any run in this process may use


@dataclass(frozen=True)
class Decision:
    """The threads for a run: ``threads`` (None: BLAS left as it is) and why, in words; with ``row_blocks``
    they share the large products in row blocks and BLAS runs one thread (see the module's docstring)."""

    threads: int | None
    reason: str
    row_blocks: bool = False

    def record(self) -> dict:
        """What summary.json says of it: BLAS's threads in the loop, the row blocks' threads, and why."""
        if self.row_blocks:
            return {"blas": 1, "row_blocks": self.threads, "why": self.reason}
        return {"blas": self.threads, "why": self.reason}


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask, e.g. under taskset or a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def user_setting(environ=os.environ) -> str | None:
    """The first thread variable the user set (``NAME=value``), or None."""
    for name in ENV_VARS:
        if environ.get(name, "").strip():
            return f"{name}={environ[name].strip()}"
    return None


def mpi_ranks(environ=os.environ) -> int:
    for name in MPI_SIZE_VARS:
        value = environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def typical_flops(products: Sequence[tuple[int, int, int, int]]) -> float:
    """The FLOP-weighted median of the products' sizes (2 m k n each): the size of the product that a
    typical FLOP of the step belongs to, so a few tiny products (a 10-class output layer) do not decide."""
    sizes = sorted((2.0 * m * k * n, calls) for calls, m, k, n in products)
    total = sum(f * c for f, c in sizes)
    seen = 0.0
    for f, c in sizes:
        seen += f * c
        if seen >= total / 2:
            return f
    return 0.0


def decide(
    products: Sequence[tuple[int, int, int, int]],
    setting: int | str = "auto",
    environ=os.environ,
    cpus: int | None = None,
    blocked: bool = False,
) -> Decision:
    """The thread count for a plan with these matrix products (``Plan.products``) under ``train.threads``
    ``setting``, and whether they run in row blocks (possible where ``blocked``: ``Plan.blocked``); see the
    module's docstring for the order of the rules."""
    user = user_setting(environ)
    if user:
        return Decision(None, f"{user} is set: BLAS keeps it")
    cpus = cpus or usable_cpus()
    cap, why = cpus, f"{cpus} usable CPUs"
    ranks = mpi_ranks(environ)
    if ranks > 1:
        cap, why = 1, f"one of {ranks} MPI ranks"
    if _limit is not None and _limit < cap:
        cap, why = _limit, f"limit({_limit})"
    flops = typical_flops(products)
    if setting != "auto":
        n = min(int(setting), cap)
        reason = f"train.threads: {setting}" + (f", capped by {why}" if n < int(setting) else "")
    elif not products:
        return Decision(None, "auto: no matrix products, BLAS is left as it is")
    else:
        n = max(1, min(cap, int(flops // FLOPS_PER_THREAD)))
        reason = f"auto: typical product {flops / 1e6:.3g} MFLOP, {why}"
    if n > 1 and blocked and flops >= block_flops(n):
        return Decision(n, f"{reason}; products in {n} row blocks, BLAS on one thread", row_blocks=True)
    return Decision(n, reason)


def block_flops(threads: int) -> float:
    """The smallest product split into row blocks on ``threads`` threads: big enough for each to pay off, as in
    the auto rule. Row blocks are used only where the plan's typical product is at least that big."""
    return FLOPS_PER_THREAD * threads


@contextmanager
def applied(decision: Decision) -> Iterator[Decision]:
    """BLAS runs with ``decision.threads`` inside the block (one, and the products in row blocks on that many
    threads, with ``row_blocks``), and as before after it."""
    if decision.threads is None:
        yield decision
        return
    # imported where threads change: not at start-up, nor for a plan without matrix products (poly)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1 if decision.row_blocks else decision.threads, user_api="blas"):
        if not decision.row_blocks:
            yield decision
            return
        sharing = Sharing(decision.threads - 1)
        try:
            with row_blocks(sharing, decision.threads, block_flops(decision.threads)):
                yield decision
        finally:
            sharing.close()


class limit:
    """At most ``n`` BLAS threads for every run in this process, and for BLAS itself, from now on:

        threads.limit(1)              # at the start of a sweep worker or an MPI rank: for its lifetime
        with threads.limit(1): ...    # or for a block, restored after it

    Workers that share a machine each take one thread, so that N workers never run N x cores threads.
    Environment variables the user set still win (BLAS reads them; specgrad does not override them)."""

    def __init__(self, n: int):
        global _limit
        if int(n) < 1:
            raise ValueError(f"threads.limit needs at least 1 thread, got {n}")
        self.previous, _limit = _limit, int(n) if _limit is None else min(_limit, int(n))
        from threadpoolctl import threadpool_limits

        self._blas = None if user_setting() else threadpool_limits(limits=_limit, user_api="blas")

    def __enter__(self) -> limit:
        return self

    def __exit__(self, *exc) -> None:
        global _limit
        _limit = self.previous
        if self._blas is not None:
            self._blas.restore_original_limits()
