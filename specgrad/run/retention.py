"""Which checkpoints to keep: the ``keep_last`` newest and the ``keep_best`` best by the validation metric.

The best are ranked by value, ties going to the earlier checkpoint (it reached the value first); a NaN,
infinite or missing value is never best. The caller saves the new checkpoint before pruning, so at every
moment the newest complete checkpoint and the best ones exist.
"""

from __future__ import annotations

import math


def to_keep(saved: dict[int, float | None], keep_last: int | None, keep_best: int, mode: str) -> set[int]:
    """Steps to keep among ``saved`` (step -> validation value, or None when not validated there)."""
    steps = sorted(saved)
    keep = set(steps if keep_last is None else steps[-keep_last:])
    ranked = sorted(
        (v if mode == "min" else -v, step) for step, v in saved.items() if v is not None and math.isfinite(v)
    )
    keep.update(step for _, step in ranked[:keep_best])
    return keep


def improved(value: float, best: float | None, mode: str, min_delta: float = 0.0) -> bool:
    """Whether ``value`` is a new best: better than ``best`` by more than ``min_delta``; a value that is not
    finite never is (an infinite loss is no model to keep, and summary.json could not tell it from NaN)."""
    if value is None or not math.isfinite(value):
        return False
    if best is None:
        return True
    return value < best - min_delta if mode == "min" else value > best + min_delta
