"""Learning-rate schedules: ``lr(step)`` for step = 0, 1, ... from the optimizer's base rate, as closed
forms of the step (no state), so a resumed run is at the same point of its schedule by construction.

Every schedule accepts ``warmup: {steps: N, start_factor: f}``: for the first N steps the lr rises linearly
from ``f * lr`` towards ``lr`` (torch.optim.lr_scheduler.LinearLR), then the schedule itself runs over the
remaining steps as if they were the whole run (torch's SequentialLR).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from specgrad.base.components import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE,
    Registry,
    normalize,
)

WARMUP = {
    "type": "object",
    "additionalProperties": False,
    "required": ["steps"],
    "properties": {
        "steps": {"type": "integer", "minimum": 1, "description": "length of the linear warmup"},
        "start_factor": {
            "type": "number",
            "minimum": 0,
            "maximum": 1,
            "description": "the first step's lr as a fraction of lr (default 0)",
        },
    },
    "description": "linear warmup from start_factor * lr to lr over the first steps, before the schedule",
}
SCHEDULES = Registry("schedule", common={"warmup": WARMUP})
GAMMA = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}


@SCHEDULES.register("constant")
def constant(base_lr, total_steps):
    """the optimizer's lr at every step"""
    return lambda step: base_lr


@SCHEDULES.register("step", {"step_size": {"type": "integer", "minimum": 1}, "gamma": GAMMA}, required=["step_size"])
def step_decay(base_lr, total_steps, step_size, gamma=0.1):
    """lr * gamma ** (step // step_size) (torch StepLR)"""
    return lambda step: base_lr * gamma ** (step // step_size)


@SCHEDULES.register(
    "multistep",
    {"milestones": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1}, "gamma": GAMMA},
    required=["milestones"],
)
def multistep(base_lr, total_steps, milestones, gamma=0.1):
    """lr * gamma ** (number of milestones <= step) (torch MultiStepLR)"""
    return lambda step: base_lr * gamma ** sum(1 for m in milestones if m <= step)


@SCHEDULES.register("exponential", {"gamma": GAMMA}, required=["gamma"])
def exponential(base_lr, total_steps, gamma):
    """lr * gamma ** step (torch ExponentialLR)"""
    return lambda step: base_lr * gamma**step


@SCHEDULES.register("cosine", {"min_lr": NON_NEGATIVE})
def cosine(base_lr, total_steps, min_lr=0.0):
    """half a cosine from lr down to the floor min_lr over the run (torch CosineAnnealingLR, T_max = steps)"""
    return lambda step: (
        min_lr + 0.5 * (base_lr - min_lr) * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    )


@dataclass(frozen=True)
class Schedule:
    """``lr(step)``, and, for a schedule that also drives the optimizer's momentum (onecycle), the momentum
    (SGD's and RMSprop's ``momentum``, Adam's ``beta1``) of each step; both closed forms of the step."""

    lr: Callable[[int], float]
    momentum: Callable[[int], float] | None = None

    def __call__(self, step: int) -> float:
        return self.lr(step)


MOMENTUM = {"type": "number", "minimum": 0, "maximum": 1}


@SCHEDULES.register(
    "onecycle",
    {
        "max_lr": POSITIVE,
        "pct_start": FRACTION,
        "div_factor": {"type": "number", "minimum": 1},
        "final_div_factor": {"type": "number", "minimum": 1},
        "cycle_momentum": {
            "type": "boolean",
            "description": "cycle the optimizer's "
            "momentum (SGD, RMSprop) or beta1 (Adam, AdamW) inversely to "
            "the lr, from max_momentum to base_momentum and back (default true)",
        },
        "base_momentum": {**MOMENTUM, "description": "the momentum at the lr's peak (default 0.85)"},
        "max_momentum": {**MOMENTUM, "description": "the momentum at the start and the end (default 0.95)"},
    },
)
def onecycle(
    base_lr,
    total_steps,
    max_lr=None,
    pct_start=0.3,
    div_factor=25.0,
    final_div_factor=1e4,
    cycle_momentum=True,
    base_momentum=0.85,
    max_momentum=0.95,
):
    """one cycle (torch OneCycleLR, cosine annealing): max_lr / div_factor rising to max_lr (default: the
    optimizer's lr) over pct_start of the run, then down to that / final_div_factor; the momentum cycles the
    other way, from max_momentum down to base_momentum and back (torch's defaults, cycle_momentum: true)"""
    peak = base_lr if max_lr is None else max_lr
    initial = peak / div_factor
    final = initial / final_div_factor
    up_end = float(pct_start * total_steps) - 1
    down_end = float(total_steps - 1)

    def anneal(start, end, pct):
        return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)

    def cycle(start, middle, end):
        """torch's two phases: start -> middle until step up_end, then middle -> end at the last step"""

        def value(step):
            if step <= up_end:
                return anneal(start, middle, step / up_end) if up_end > 0 else middle
            return anneal(middle, end, min(1.0, (step - up_end) / (down_end - up_end)))

        return value

    momentum = cycle(max_momentum, base_momentum, max_momentum) if cycle_momentum else None
    return Schedule(cycle(initial, peak, final), momentum)


def make_schedule(settings, base_lr: float, total_steps: int) -> Schedule:
    """The spec's ``schedule`` (a name or a mapping; default constant) as a ``Schedule`` (called: ``lr(step)``),
    warmup included. During a warmup the momentum a schedule cycles holds at its first value."""
    settings = normalize(settings or "constant")
    warmup = settings.get("warmup")
    if not warmup:
        return _schedule(SCHEDULES.create(settings, base_lr=base_lr, total_steps=total_steps))
    n, start = warmup["steps"], warmup.get("start_factor", 0.0)
    main = _schedule(SCHEDULES.create(settings, base_lr=base_lr, total_steps=max(1, total_steps - n)))
    main_momentum = main.momentum
    momentum = None if main_momentum is None else (lambda step: main_momentum(max(0, step - n)))
    return Schedule(lambda step: base_lr * (start + (1 - start) * step / n) if step < n else main(step - n), momentum)


def _schedule(made) -> Schedule:
    return made if isinstance(made, Schedule) else Schedule(made)
