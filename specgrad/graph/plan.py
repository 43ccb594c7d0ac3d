"""The execution plan: a graph flattened once into a list of bound numpy calls over numbered slots.

Planning happens at compile time: topological order, constants bound in place, and liveness, so that a
value is dropped as soon as its last reader has run (the backward pass keeps only what its VJPs read).
"""
from __future__ import annotations

from functools import partial
from typing import Sequence

from specgrad.graph.ir import Node, ancestors
from specgrad.ops.registry import REGISTRY


class Plan:
    def __init__(self, outputs: Sequence[Node], feeds: Sequence[Node]):
        order = ancestors(outputs)
        slot = {n.id: i for i, n in enumerate(order)}
        feed_ids = {n.id for n in feeds}
        missing = [n for n in order if n.op in ("input", "param") and n.id not in feed_ids]
        if missing:
            raise ValueError("plan needs values for " + ", ".join(n.name or repr(n) for n in missing))
        self.feed_slots = [slot.get(n.id) for n in feeds]       # None: fed but unused
        self.out_slots = [slot[n.id] for n in outputs]
        self.template = [n.value if n.op == "const" else None for n in order]

        last_use = {}
        ops = [n for n in order if n.op not in ("input", "param", "const")]
        for i, n in enumerate(ops):
            for x in n.inputs:
                last_use[slot[x.id]] = i
        keep = set(self.out_slots) | {s for s in self.feed_slots if s is not None}
        frees: list[list[int]] = [[] for _ in ops]
        for s, i in last_use.items():
            if s not in keep and self.template[s] is None:
                frees[i].append(s)
        self.steps = []
        for n, free in zip(ops, frees):
            fwd = REGISTRY[n.op].forward
            fn = partial(fwd, **n.attrs) if n.attrs else fwd
            self.steps.append((fn, tuple(slot[x.id] for x in n.inputs), slot[n.id], tuple(free)))

    def __call__(self, *values) -> list:
        env = self.template.copy()
        for s, v in zip(self.feed_slots, values):
            if s is not None:
                env[s] = v
        for fn, ins, out, free in self.steps:
            env[out] = fn(*[env[i] for i in ins])
            for f in free:
                env[f] = None
        return [env[s] for s in self.out_slots]
