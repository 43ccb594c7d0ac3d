"""Collective ops: a value summed over the processes of a data-parallel run.

The engine knows nothing of MPI: the run installs the group's sum (``summing_over``) while a run of several
processes trains, and in one process the sum over the group is the value itself. A model uses it where a
quantity must be taken over the whole batch rather than one process's share of it (synchronized batchnorm's
statistics). Every process runs the same plan, so the collectives are called in the same order everywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager

import numpy as np

from specgrad.engine.ops.onnx_lowerings import NotExportable
from specgrad.engine.ops.registry import emit, register

_group_sum: Callable[[np.ndarray], np.ndarray] | None = None


@contextmanager
def summing_over(group_sum: Callable[[np.ndarray], np.ndarray]):
    """While the block runs, ``allreduce_sum`` is ``group_sum`` (a fresh array: x summed over every process)."""
    global _group_sum
    previous, _group_sum = _group_sum, group_sum
    try:
        yield
    finally:
        _group_sum = previous


# y = sum over processes of x, and every process's loss reads y: the cotangent of one process's x is the sum
# of every process's cotangent of y -- the same collective again
@register(
    "allreduce_sum",
    shape=lambda x: tuple(x),
    arity=1,
    internal=True,
    vjp=(lambda g, out, x: emit("allreduce_sum", g),),
    onnx=NotExportable(
        "a sum over the processes of a data-parallel run, which appears only in training "
        "graphs; an evaluation graph has none"
    ),
    examples=[([(3, 4)], {}), ([()], {})],
)
def allreduce_sum(x):
    """x summed over the processes of a data-parallel run (x itself in one process); its VJP is the same sum
    of the cotangents"""
    x = np.asarray(x)
    return x.copy() if _group_sum is None else _group_sum(x)
