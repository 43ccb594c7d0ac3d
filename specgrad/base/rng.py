"""Every random stream of a run, derived from the spec's seed alone.

Each consumer draws from a stream of its own, so that changing one (a longer shuffle, another initializer)
never shifts the numbers another sees, and a resumed run can restore each one independently. The data
source itself draws from ``default_rng(data seed)`` directly, so that synthetic data matches the numpy
code users compare with (models/poly.yaml is the article's data bit for bit).
"""

from __future__ import annotations

import numpy as np

INIT, SHUFFLE, SPLIT, KEY = 1, 2, 3, 4  # parameter initialization, epoch order, data split, dropout keys


def stream(seed: int, kind: int) -> np.random.Generator:
    """The generator of one stream of ``seed`` (INIT, SHUFFLE or SPLIT)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(kind,)))


def step_key(seed: int, step: int) -> np.uint64:
    """The random key fed at ``step``: a function of the seed and the step only, so a resumed run draws the
    same dropout masks as one that never stopped (each dropout site adds a salt of its own)."""
    return np.random.SeedSequence([seed, KEY, step]).generate_state(1, np.uint64)[0]


def batch_key(seed: int, index: int, first_row: int = 0) -> np.ndarray:
    """The key a model with dropout is fed for batch ``index``: ``[step_key, first_row]``, where ``first_row``
    is the position in the (global) batch of the first row this process holds (0 in one process). A mask
    entry is thus a function of the seed, the batch and the row's place in the whole batch only, so a
    data-parallel run draws the masks of one process, however its batch is split (see the ``dropout`` op)."""
    return np.array([step_key(seed, index), first_row], np.uint64)
