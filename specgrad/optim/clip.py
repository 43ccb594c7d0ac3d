"""Gradient clipping, in place. Gradients under the threshold are left bitwise unchanged: each rule only
writes when it has something to cut.

The spec's ``train.clip`` may combine the three rules; they apply in the order value, per-parameter norm,
global norm (each bound then holds for what the next one receives):

    clip: {max_value: 1.0, max_param_norm: 5.0, max_norm: 10.0}
"""

from __future__ import annotations

import math

import numpy as np


def param_norms(grads: dict[str, np.ndarray]) -> dict[str, float]:
    """The L2 norm of each gradient."""
    return {name: math.sqrt(float(np.vdot(g, g))) for name, g in grads.items()}


def global_norm(grads: dict[str, np.ndarray], norms: dict[str, float] | None = None) -> float:
    """The L2 norm of all gradients together (from precomputed per-parameter norms when given)."""
    norms = param_norms(grads) if norms is None else norms
    return math.sqrt(sum(n * n for n in norms.values()))


def clip_value(grads: dict[str, np.ndarray], max_value: float) -> None:
    """Clamp every component into [-max_value, max_value] (torch clip_grad_value_)."""
    for g in grads.values():
        np.clip(g, -max_value, max_value, out=g)


# PyTorch's clip_grad_norm_ scales by max_norm / (norm + 1e-6), clamped to 1: the epsilon is part of the
# rule (a norm just under max_norm is still scaled, slightly), so a recipe ported from PyTorch takes its steps.
EPS = 1e-6


def _clip_coef(norm: float, max_norm: float) -> float | None:
    """torch.nn.utils.clip_grad_norm_'s factor, or None where it is clamped to 1 (nothing to write)."""
    coef = max_norm / (norm + EPS)
    return coef if coef < 1.0 else None


def clip_param_norm(grads: dict[str, np.ndarray], max_norm: float, norms: dict[str, float] | None = None) -> bool:
    """Each gradient alone as clip_grad_norm_ would clip it (scaled by max_norm / (its norm + 1e-6) where
    that is below 1); returns whether any was."""
    norms = param_norms(grads) if norms is None else norms
    clipped = False
    for name, g in grads.items():
        coef = _clip_coef(norms[name], max_norm)
        if coef is not None:
            g *= coef
            clipped = True
    return clipped


def clip_global_norm(grads: dict[str, np.ndarray], max_norm: float, norm: float | None = None) -> float:
    """Scale all gradients by max_norm / (norm + 1e-6) where that is below 1, norm being their global L2 norm
    (exactly torch.nn.utils.clip_grad_norm_); returns the norm before clipping."""
    norm = global_norm(grads) if norm is None else norm
    coef = _clip_coef(norm, max_norm)
    if coef is not None:
        for g in grads.values():
            g *= coef
    return norm


def clip(
    grads: dict[str, np.ndarray], settings, norms: dict[str, float] | None = None, norm: float | None = None
) -> None:
    """Apply the spec's clip settings (``train.clip``: max_value, max_param_norm, max_norm; None: no clipping)
    in place; ``norms`` (per parameter) and ``norm`` (global) are the gradients' norms as given, when known,
    reused while no earlier rule changed the gradients."""
    if settings is None:
        return
    if settings.max_value is not None:
        clip_value(grads, settings.max_value)
        norms = norm = None
    if settings.max_param_norm is not None:
        if clip_param_norm(grads, settings.max_param_norm, norms):
            norms = norm = None
    if settings.max_norm is not None:
        if norm is None and norms is not None:
            norm = global_norm(grads, norms)
        clip_global_norm(grads, settings.max_norm, norm)
