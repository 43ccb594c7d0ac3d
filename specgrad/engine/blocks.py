"""Large matrix products in fixed row blocks, shared between the calling thread and helper threads.

While ``row_blocks(sharing, blocks, min_flops)`` is active -- the run layer turns it on around a training
loop to which its thread policy gives several threads (specgrad/run/threads.py) -- a 2-D floating-point
product of at least ``min_flops`` is cut into ``blocks`` blocks of consecutive rows of its result. Each
block is one BLAS call, BLAS itself running one thread, and the caller and the helpers claim blocks one at a
time (specgrad/base/sharing.py). On a quiet machine that is as fast as BLAS's own threads; on a busy one a
thread that waits for a block gives its core away, where BLAS's threads spin waiting for a partner the OS
has not scheduled (benchmarks/row_blocks.py measures both).

The blocks are fixed by the product's shape and their number, never by which thread computes which block,
so a run's bits do not depend on the load. Ops whose products go through ``matmul`` here declare it
(``register(blocked=True)``): a plan whose products all do, all of them 2-D (``splittable``), can run BLAS
on one thread (``Plan.blocked``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import numpy as np

_active: ContextVar[tuple[Any, int, float] | None] = ContextVar("row_blocks", default=None)


@contextmanager
def row_blocks(sharing, blocks: int, min_flops: float) -> Iterator[None]:
    """Inside the block (in this thread), products of at least ``min_flops`` run as ``blocks`` row blocks on
    ``sharing``'s threads and this one."""
    token = _active.set((sharing, int(blocks), float(min_flops)))
    try:
        yield
    finally:
        _active.reset(token)


def splittable(x_shape, y_shape) -> bool:
    """Whether a product of operands of these shapes can run in row blocks: [m, k] @ [k, n]. (A batched or
    matrix-vector product runs whole.)"""
    return len(x_shape) == 2 and len(y_shape) == 2


def matmul(x: np.ndarray, y: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul(x, y, out=out)``, in row blocks where ``row_blocks`` is active and the product is 2-D,
    floating-point and large enough."""
    active = _active.get()
    if active is None or not splittable(x.shape, y.shape):
        return np.matmul(x, y, out=out)
    sharing, blocks, min_flops = active
    (m, k), n = x.shape, y.shape[1]
    dtype = np.result_type(x, y)
    if m < blocks or 2.0 * m * k * n < min_flops or dtype.kind != "f":
        return np.matmul(x, y, out=out)
    # A plan may hand over an operand's buffer as ``out`` (the operand's last use): one call copes with
    # the overlap, but a block written there would change what the other blocks still read.
    overlaps = out is not None and (np.may_share_memory(out, x) or np.may_share_memory(out, y))
    target = np.empty((m, n), dtype) if out is None or overlaps else out
    bounds = [m * i // blocks for i in range(blocks + 1)]

    def block(rows: tuple[int, int]) -> None:
        np.matmul(x[rows[0] : rows[1]], y, out=target[rows[0] : rows[1]])

    sharing.run(block, list(zip(bounds, bounds[1:])))
    if out is not None and overlaps:
        np.copyto(out, target)
        return out
    return target
