"""Batches of the training split: seeded reshuffling each epoch, optional drop_last. A batch is named by its
global index (batch ``b`` of the run), so the optimizer step that consumes it, and a resumed run, agree on
which rows it holds. The order of the current epoch and the RNG state are all a checkpoint needs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from specgrad.data.sources import batch_rows, batches_per_epoch


class Batches:
    def __init__(
        self,
        fields: dict[str, np.ndarray],
        batch_size: int | str,
        shuffle: bool,
        drop_last: bool,
        rng: np.random.Generator,
    ):
        self.fields = list(fields.values())
        self.n = len(self.fields[0])
        self.size = batch_rows(self.n, batch_size)
        self.per_epoch = batches_per_epoch(self.n, batch_size, drop_last)
        # a single batch holding every row in order needs no indexing (and no copy); fed read-only, the same
        # arrays at every step, so that the plan computes what depends on the data alone once (engine/plan.py)
        self.whole = self.size == self.n and not drop_last
        if self.whole:
            self.fields = [_read_only(a) for a in self.fields]
        self.shuffle = shuffle and not self.whole
        self.rng = rng
        self.order = np.arange(self.n)

    def get(self, index: int) -> list[np.ndarray]:
        """The arrays of batch ``index`` (counted from the start of the run)."""
        if self.whole:
            return self.fields
        idx = self.rows(index)
        return [a[idx] for a in self.fields]

    def rows(self, index: int) -> np.ndarray | slice:
        """Which rows batch ``index`` holds, in order: indices, or a slice for the whole data in order. Call
        it for every batch in turn, as ``get``: the first batch of an epoch reshuffles."""
        if self.whole:
            return slice(0, self.n)
        pos = index % self.per_epoch
        if pos == 0:
            self.order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        return self.order[pos * self.size : (pos + 1) * self.size]

    def count(self, index: int) -> int:
        """The rows of batch ``index``: the batch size, or fewer for an epoch's last batch (without drop_last)."""
        if self.whole:
            return self.n
        return min(self.size, self.n - (index % self.per_epoch) * self.size)

    def batch_sizes(self) -> set[int]:
        """The sizes the batches of an epoch come in (a full batch, and a shorter last one unless dropped)."""
        return {
            self.size,
            *([self.n % self.size] if self.n % self.size and self.per_epoch * self.size > self.n else []),
        }

    def state(self) -> tuple[np.ndarray, Mapping[str, Any]]:
        return self.order, self.rng.bit_generator.state

    def restore(self, order: np.ndarray, rng_state: Mapping[str, Any]) -> None:
        if order.shape != (self.n,):
            raise ValueError(f"the saved batch order has {order.shape[0]} rows, the data has {self.n}")
        self.order = order
        self.rng.bit_generator.state = rng_state


def _read_only(a: np.ndarray) -> np.ndarray:
    view = a.view()
    view.flags.writeable = False
    return view
