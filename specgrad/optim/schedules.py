"""Learning-rate schedules: ``lr(step)`` for step = 0, 1, ... from the optimizer's base rate."""
from __future__ import annotations

import math

from specgrad.components import NON_NEGATIVE, Registry

SCHEDULES = Registry("schedule")


@SCHEDULES.register("constant")
def constant(base_lr, total_steps):
    """the optimizer's lr at every step"""
    return lambda step: base_lr


@SCHEDULES.register("cosine", {"min_lr": NON_NEGATIVE})
def cosine(base_lr, total_steps, min_lr=0.0):
    """half a cosine from lr down to min_lr over the run"""
    return lambda step: min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
