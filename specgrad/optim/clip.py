"""Gradient clipping, in place. Gradients under the threshold are left bitwise unchanged."""
from __future__ import annotations

import math

import numpy as np


def global_norm(grads: dict[str, np.ndarray]) -> float:
    return math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))


def clip_global_norm(grads: dict[str, np.ndarray], max_norm: float, norm: float | None = None) -> float:
    """Scale all gradients by max_norm / norm when their global norm exceeds max_norm; returns the norm
    before clipping."""
    norm = global_norm(grads) if norm is None else norm
    if norm > max_norm:
        scale = max_norm / norm
        for g in grads.values():
            g *= scale
    return norm
