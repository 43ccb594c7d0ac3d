"""Learning-rate schedules: ``lr(step)`` for step = 0, 1, ... from the optimizer's base rate, as closed
forms of the step (no state), so a resumed run is at the same point of its schedule by construction.

Every schedule accepts ``warmup: {steps: N, start_factor: f}``: for the first N steps the lr rises linearly
from ``f * lr`` towards ``lr`` (torch.optim.lr_scheduler.LinearLR), then the schedule itself runs over the
remaining steps as if they were the whole run (torch's SequentialLR).
"""
from __future__ import annotations

import math
from typing import Callable

from specgrad.base.components import FRACTION, NON_NEGATIVE, POSITIVE, Registry, normalize

WARMUP = {
    "type": "object", "additionalProperties": False, "required": ["steps"],
    "properties": {"steps": {"type": "integer", "minimum": 1, "description": "length of the linear warmup"},
                   "start_factor": {"type": "number", "minimum": 0, "maximum": 1,
                                    "description": "the first step's lr as a fraction of lr (default 0)"}},
    "description": "linear warmup from start_factor * lr to lr over the first steps, before the schedule",
}
SCHEDULES = Registry("schedule", common={"warmup": WARMUP})
GAMMA = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}


@SCHEDULES.register("constant")
def constant(base_lr, total_steps):
    """the optimizer's lr at every step"""
    return lambda step: base_lr


@SCHEDULES.register("step", {"step_size": {"type": "integer", "minimum": 1}, "gamma": GAMMA},
                    required=["step_size"])
def step_decay(base_lr, total_steps, step_size, gamma=0.1):
    """lr * gamma ** (step // step_size) (torch StepLR)"""
    return lambda step: base_lr * gamma ** (step // step_size)


@SCHEDULES.register("multistep", {"milestones": {"type": "array", "items": {"type": "integer", "minimum": 1},
                                                 "minItems": 1}, "gamma": GAMMA}, required=["milestones"])
def multistep(base_lr, total_steps, milestones, gamma=0.1):
    """lr * gamma ** (number of milestones <= step) (torch MultiStepLR)"""
    return lambda step: base_lr * gamma ** sum(1 for m in milestones if m <= step)


@SCHEDULES.register("exponential", {"gamma": GAMMA}, required=["gamma"])
def exponential(base_lr, total_steps, gamma):
    """lr * gamma ** step (torch ExponentialLR)"""
    return lambda step: base_lr * gamma ** step


@SCHEDULES.register("cosine", {"min_lr": NON_NEGATIVE})
def cosine(base_lr, total_steps, min_lr=0.0):
    """half a cosine from lr down to the floor min_lr over the run (torch CosineAnnealingLR, T_max = steps)"""
    return lambda step: min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))


@SCHEDULES.register("onecycle", {"max_lr": POSITIVE, "pct_start": FRACTION, "div_factor": {"type": "number", "minimum": 1},
                                 "final_div_factor": {"type": "number", "minimum": 1}})
def onecycle(base_lr, total_steps, max_lr=None, pct_start=0.3, div_factor=25.0, final_div_factor=1e4):
    """one cycle (torch OneCycleLR, cosine annealing): max_lr / div_factor rising to max_lr (default: the
    optimizer's lr) over pct_start of the run, then down to that / final_div_factor"""
    peak = base_lr if max_lr is None else max_lr
    initial = peak / div_factor
    final = initial / final_div_factor
    up_end = float(pct_start * total_steps) - 1
    down_end = float(total_steps - 1)

    def anneal(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def lr(step):
        if step <= up_end:
            return anneal(initial, peak, step / up_end) if up_end > 0 else peak
        return anneal(peak, final, min(1.0, (step - up_end) / (down_end - up_end)))
    return lr


def make_schedule(settings, base_lr: float, total_steps: int) -> Callable[[int], float]:
    """The spec's ``schedule`` (a name or a mapping; default constant) as ``lr(step)``, warmup included."""
    settings = normalize(settings or "constant")
    warmup = settings.get("warmup")
    if not warmup:
        return SCHEDULES.create(settings, base_lr=base_lr, total_steps=total_steps)
    n, start = warmup["steps"], warmup.get("start_factor", 0.0)
    main = SCHEDULES.create(settings, base_lr=base_lr, total_steps=max(1, total_steps - n))
    return lambda step: base_lr * (start + (1 - start) * step / n) if step < n else main(step - n)
