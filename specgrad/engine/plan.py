"""The execution plan: a graph flattened once into a list of bound numpy calls over numbered slots.

Compile time (``Plan(outputs, feeds)``), once per graph:
  * topological order of what the outputs need, nothing else (dead branches are never run);
  * constant folding: a node whose inputs are all constants is evaluated here, once;
  * implicit broadcasting: ``broadcast_like`` feeding an op that broadcasts anyway is skipped;
  * liveness: the step after which each value is no longer read.

First call with a new signature of feeds (shapes, strides, dtypes; in training: full batches, then maybe
a short last one): a small interpreter runs the steps, dropping each value after its last reader, and
records every value's concrete shape and dtype and which inputs it views (transpose, reshape... return
views; which ones is numpy's choice, fixed by the signature). Then the plan is *specialized*: each op that
accepts ``out=`` gets a preallocated buffer; buffers are shared between values whose lifetimes do not
overlap, where a buffer lives as long as any value that views it; an op may write over an input that dies
at that op (this is how gradient contributions are accumulated in place); and each step becomes a closure
over its slot numbers, its forward and its buffer, so a step costs one call (no code is generated: the
closures are as fast as generated source was). Every later call with that signature runs those steps on
the same buffers: no allocation for those ops, no per-op bookkeeping.

Outputs, and whatever they view, never live in a buffer: results are fresh arrays that stay valid after
the next call, and feeds are never written.

Values computed from data feeds alone (``Plan(..., data=[...])``: polynomial features of the inputs, one-hot
labels) are computed once and reused while the same data comes back: when every data feed of a call is the
very array object of the previous call and read-only (``flags.writeable`` False, which the trainer sets on
the whole-batch arrays it feeds at every step of full-batch training), those steps are skipped and their
values of the previous call are used. A caller must not change a read-only array's contents through a
writable base while feeding it; the trainer never does.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from functools import partial
from operator import is_
from typing import Any

import numpy as np

from specgrad.engine.blocks import splittable
from specgrad.engine.ir import SOURCE_KINDS, Node, ancestors
from specgrad.engine.ops.registry import REGISTRY, ShapeError, broadcast_shapes, fmt_shape

NEVER = float("inf")
MAX_SPECIALIZED = 8  # feed signatures kept specialized (each holds its own buffers)


class Plan:
    def __init__(self, outputs: Sequence[Node], feeds: Sequence[Node], data: Sequence[Node] = ()):
        inputs = implicit_broadcasts(ancestors(outputs))  # node id -> the inputs it will read
        order = reachable(outputs, inputs)
        feed_ids = {n.id for n in feeds}
        missing = [n for n in order if n.op in ("input", "param") and n.id not in feed_ids]
        if missing:
            raise ValueError("plan needs values for " + ", ".join(n.name or repr(n) for n in missing))
        self.constants = fold_constants(order, inputs)  # node id -> value, computed once
        # the shapes the graph declares for the inputs and parameters it is fed (checked: ``check_feeds``)
        self.declared = [(n.name or repr(n), n.shape) if n.op in ("input", "param") else None for n in feeds]
        slot: dict[int, int] = {}
        for n in feeds:
            slot.setdefault(n.id, len(slot))
        self.n_feeds = len(feeds)
        self.feed_slots = [slot[n.id] for n in feeds]
        nodes = [n for n in order if n.id not in self.constants and n.id not in feed_ids]
        needed = {x.id for n in nodes for x in inputs[n.id]} | {n.id for n in outputs}
        for n in order:  # constants get slots too, filled once
            if n.id not in slot and (n.id not in self.constants or n.id in needed):
                slot[n.id] = len(slot)
        self.template: list[Any] = [None] * len(slot)
        for nid, value in self.constants.items():
            if nid in slot:
                self.template[slot[nid]] = value
        self.steps = [Step(n, [slot[x.id] for x in inputs[n.id]], slot[n.id]) for n in nodes]
        # the matrix products of the steps, as their ops declare them: (rule, input shapes, attrs)
        self._products: list[tuple[Callable, list, dict]] = [
            (rule, [x.shape for x in inputs[n.id]], n.attrs)
            for n in nodes
            if (rule := REGISTRY[n.op].products) is not None
        ]
        # whether every one of them can run in row blocks (specgrad/engine/blocks.py): its op hands its
        # products over there, and they are 2-D
        self.blocked = all(
            REGISTRY[n.op].blocked and splittable(*(x.shape for x in inputs[n.id]))
            for n in nodes
            if REGISTRY[n.op].products is not None
        )
        self.outputs = [slot[n.id] for n in outputs]
        self.n_slots = len(slot)

        # steps that read data feeds (and constants) only, and the values of theirs that other steps read. A
        # step making an output, or a value an output may view (through reshape, transpose...), always runs:
        # results are fresh arrays the caller owns, and may be written into the caller's
        self.data_slots = [slot[n.id] for n in data if n.id in slot]
        fixed = {*self.data_slots, *(slot[nid] for nid in self.constants if nid in slot)}
        shown = set(self.outputs)
        for n, st in zip(reversed(nodes), reversed(self.steps)):
            if st.out in shown and REGISTRY[n.op].view:
                shown.update(st.args)
        self.data_steps = []
        for i, st in enumerate(self.steps):
            if self.data_slots and all(a in fixed for a in st.args) and st.out not in shown:
                fixed.add(st.out)
                self.data_steps.append(i)
        derived = {self.steps[i].out for i in self.data_steps}
        self.reused = sorted({a for st in self.steps if st.out not in derived for a in st.args if a in derived})

        # liveness: slot -> index of the last step that reads it; outputs, feeds, constants and values
        # derived from data alone (reused by the next call) are kept
        self.last_use: defaultdict[int, float] = defaultdict(lambda: -1)
        for i, st in enumerate(self.steps):
            for a in st.args:
                self.last_use[a] = i
        kept = {*self.outputs, *self.feed_slots, *(slot[nid] for nid in self.constants if nid in slot), *self.reused}
        for s in kept:
            self.last_use[s] = NEVER
        self.specialized: dict[tuple, Callable[..., list]] = {}
        self.output_arrays: dict[int, np.ndarray] = {}

    def write_outputs_into(self, arrays: dict[int, np.ndarray]) -> None:
        """From the next call on, output ``k`` is written straight into ``arrays[k]`` where the op producing it
        writes into an array (``out=``) of that shape and dtype, and no other value shows it; the call then
        returns that array. The caller owns these arrays: each call overwrites what the last one left there
        (a trainer's gradient buffers: no fresh result, no copy). Other outputs stay fresh arrays."""
        self.output_arrays = dict(arrays)
        self.specialized.clear()

    def products(self, dims: dict[str, int]) -> list[tuple[int, int, int, int]]:
        """The BLAS matrix products one call of the plan makes, ``(calls, m, k, n)`` each (``calls`` products
        of [m, k] by [k, n]), with the symbolic dims of the shapes given by ``dims`` (the batch: ``{"B": 64}``).
        The runner picks BLAS's thread count from these; the plan itself never changes threads."""

        def concrete(shape):
            return tuple(dims[d] if isinstance(d, str) else d for d in shape)

        return [p for rule, shapes, attrs in self._products for p in rule(*map(concrete, shapes), **attrs)]

    def __call__(self, *values) -> list:
        if len(values) != self.n_feeds:
            raise TypeError(f"plan takes {self.n_feeds} value(s), got {len(values)}")
        try:
            key = tuple([(v.shape, v.strides, v.dtype) for v in values])
        except AttributeError:
            values = tuple([np.asarray(v) for v in values])
            key = tuple([(v.shape, v.strides, v.dtype) for v in values])
        run = self.specialized.get(key)
        if run is not None:
            return run(*values)
        self.check_feeds(values)
        results, layout, views = self.interpret(values)
        if len(self.specialized) >= MAX_SPECIALIZED:  # e.g. predict on many batch sizes: keep the newest
            del self.specialized[next(iter(self.specialized))]
        self.specialized[key] = self.specialize(layout, views)
        return results

    def check_feeds(self, values) -> None:
        """Refuse values whose shapes are not the declared ones (a symbolic dim, the batch, one size across
        all of them): numpy would broadcast a [5] target against a [5, 1] prediction into [5, 5], a wrong loss
        instead of an error. Once per feed signature, on its first call."""
        sizes: dict[str, tuple[int, str]] = {}  # symbol -> (size, the feed that set it)
        for declared, value in zip(self.declared, values):
            if declared is None or value is None or value.dtype.kind == "O":  # absent: a field not needed
                continue
            name, shape = declared
            actual = np.shape(value)
            problem = None
            if len(actual) != len(shape):
                problem = f"the graph declares {fmt_shape(shape)}"
            for d, a in zip(shape, actual):
                if problem is None and isinstance(d, str):
                    size, source = sizes.setdefault(d, (a, name))
                    if size != a:
                        problem = f"the graph declares {fmt_shape(shape)} and '{source}' has {d} = {size}"
                elif problem is None and d != a:
                    problem = f"the graph declares {fmt_shape(shape)}"
            if problem:
                raise ShapeError(f"'{name}' is {fmt_shape(actual)}: {problem}")

    # ------------------------------------------------------------------ the first call: interpret, record
    def interpret(self, values) -> tuple[list, dict, dict]:
        """Run the steps one by one, dropping each value after its last reader. Record each value's shape
        and dtype, and which inputs it shares memory with (a view: transpose, reshape, ...). Shapes, strides
        and dtypes of the feeds fix numpy's choice between a view and a copy, hence the signature."""
        env = self.template.copy()
        for s, v in zip(self.feed_slots, values):
            env[s] = v
        layout, views = {}, {}
        for i, st in enumerate(self.steps):
            value = st.fn(*[env[a] for a in st.args])
            env[st.out] = value
            layout[st.out] = (value.shape, value.dtype) if type(value) is np.ndarray and value.ndim else None
            views[st.out] = [a for a in st.args if np.may_share_memory(value, env[a])]
            for a in st.args:
                if self.last_use[a] == i:
                    env[a] = None
        results = [env[s] for s in self.outputs]
        return results, layout, views

    # ------------------------------------------------------------------ buffers and bound steps
    def escaping(self, views: dict) -> set[int]:
        """Outputs and the values they view: these are allocated afresh on every call."""
        escapes = set()
        stack = list(self.outputs)
        while stack:
            s = stack.pop()
            if s not in escapes:
                escapes.add(s)
                stack.extend(views.get(s, ()))
        return escapes

    def assign_buffers(self, layout: dict, views: dict) -> tuple[dict, list]:
        """Slot -> buffer number for the steps that write into a preallocated buffer, and the buffers'
        (shape, dtype). A buffer is reused once every value that views it is dead."""
        escapes = self.escaping(views)
        buffer_of: dict[int, int] = {}
        buffers: list[tuple] = []
        free: defaultdict[tuple, list[int]] = defaultdict(list)  # (shape, dtype) -> buffers nobody can see any more
        roots: dict[int, frozenset] = {}  # slot -> buffers its value may view
        holders: defaultdict[int, int] = defaultdict(int)  # buffer -> number of live values that may view it
        for i, st in enumerate(self.steps):
            args = st.args
            if st.takes_out and layout[st.out] is not None and st.out not in escapes:
                kind = layout[st.out]
                b = self._dying_input_buffer(i, args, buffer_of, roots, holders, buffers, kind)
                if b is None:
                    b = free[kind].pop() if free[kind] else len(buffers)
                    if b == len(buffers):
                        buffers.append(kind)
                buffer_of[st.out] = b
                roots[st.out] = frozenset((b,))
            else:
                roots[st.out] = frozenset().union(*[roots.get(a, ()) for a in views[st.out]])
            for b in roots[st.out]:
                holders[b] += 1
            for a in set(args):
                if self.last_use[a] == i:
                    for b in roots.get(a, ()):
                        holders[b] -= 1
                        if holders[b] == 0:
                            free[buffers[b]].append(b)
        return buffer_of, buffers

    def _dying_input_buffer(self, i, args, buffer_of, roots, holders, buffers, kind):
        """The buffer of an input read for the last time by step i, if it fits: the op writes over it."""
        for a in args:
            b = buffer_of.get(a)
            if b is not None and self.last_use[a] == i and holders[b] == 1 and buffers[b] == kind:
                return b  # ``a`` releases it after this step; the output takes it over
        return None

    def specialize(self, layout: dict, views: dict) -> Specialized:
        buffer_of, kinds = self.assign_buffers(layout, views)
        buffers = [np.empty(shape, dtype) for shape, dtype in kinds]
        into = self._caller_arrays(layout, views)
        steps = []
        for i, st in enumerate(self.steps):
            dead = tuple(a for a in dict.fromkeys(st.args) if self.last_use[a] == i and a not in buffer_of)
            buf = buffers[buffer_of[st.out]] if st.out in buffer_of else into.get(st.out) if st.takes_out else None
            steps.append(bind(st.fn, tuple(st.args), st.out, buf, dead))
        return Specialized(self, steps, buffers, buffer_of)

    def _caller_arrays(self, layout: dict, views: dict) -> dict[int, np.ndarray]:
        """Slot -> the caller's array its output is written into (``write_outputs_into``), where that is
        safe: an output slot listed once, of the array's shape and dtype, that no other value views."""
        viewed = {a for shown in views.values() for a in shown}
        into = {}
        for k, arr in self.output_arrays.items():
            s = self.outputs[k]
            if self.outputs.count(s) == 1 and s not in viewed and layout.get(s) == (arr.shape, arr.dtype):
                into[s] = arr
        return into


class Specialized:
    """The plan for one feed signature: bound steps over an environment list, and their buffers."""

    def __init__(self, plan: Plan, steps: list, buffers: list, buffer_of: dict):
        self.template, self.feed_slots, self.outputs = plan.template, plan.feed_slots, plan.outputs
        self.steps, self.buffers, self.buffer_of = steps, buffers, buffer_of
        # the data feeds' positions among the call's values, the steps that read anything else, and the
        # values derived from data alone that those steps read (kept from the previous call)
        position = {s: i for i, s in enumerate(plan.feed_slots)}
        self.data_positions = [position[s] for s in plan.data_slots] if plan.data_steps else []
        skipped = set(plan.data_steps)
        self.other_steps = [step for i, step in enumerate(steps) if i not in skipped]
        self.reused_slots = plan.reused
        self.last_data: list = []
        self.reused_values: list = []
        n = len(plan.feed_slots)
        self.rest = plan.template[n:] if plan.feed_slots == list(range(n)) else None

    def __call__(self, *values) -> list:
        if self.rest is not None:  # feeds hold the first slots, in order: one list build
            env = [*values, *self.rest]
        else:
            env = self.template.copy()
            for s, v in zip(self.feed_slots, values):
                env[s] = v
        steps = self.steps
        if self.data_positions:
            data = [values[i] for i in self.data_positions]
            if self.last_data and all(map(is_, data, self.last_data)) and not any([a.flags.writeable for a in data]):
                steps = self.other_steps
                for s, v in zip(self.reused_slots, self.reused_values):
                    env[s] = v
            else:
                self.last_data = []
        for step in steps:
            step(env)
        if self.data_positions and steps is self.steps:
            self.last_data = data
            self.reused_values = [env[s] for s in self.reused_slots]
        return [env[s] for s in self.outputs]


def bind(fn, args: tuple, out: int, buf, dead: tuple):
    """One step as a closure over slot numbers: env[out] = fn(*env[args]) (written into ``buf`` if
    given), then the values read for the last time are dropped. Unary and binary steps without drops,
    the common case, get closures of their own: no argument list is built."""
    if not dead and len(args) == 2:
        a, b = args
        if buf is None:

            def step(env):
                env[out] = fn(env[a], env[b])
        else:

            def step(env):
                env[out] = fn(env[a], env[b], out=buf)
    elif not dead and len(args) == 1:
        (a,) = args
        if buf is None:

            def step(env):
                env[out] = fn(env[a])
        else:

            def step(env):
                env[out] = fn(env[a], out=buf)
    else:
        extra = {"out": buf} if buf is not None else {}

        def step(env):
            env[out] = fn(*[env[i] for i in args], **extra)
            for d in dead:
                env[d] = None

    return step


class Step:
    """One op application: its bound forward, its argument slots and its output slot."""

    __slots__ = ("fn", "args", "out", "takes_out", "op")

    def __init__(self, node: Node, args: list, out: int):
        op = REGISTRY[node.op]
        self.op = node.op
        self.fn = partial(op.forward, **node.attrs) if node.attrs else op.forward
        self.args = args
        self.out = out
        self.takes_out = op.writes_out


def implicit_broadcasts(order: list[Node]) -> dict[int, tuple]:
    """Each node's inputs, with ``broadcast_like(a, like)`` replaced by ``a`` where the reader broadcasts
    anyway (an op whose shape rule is broadcasting gives the same shape and dtype with ``a``). The backward
    pass of every reduction emits such a node; elided, it costs nothing."""
    inputs = {}
    for n in order:
        args = list(n.inputs)
        if REGISTRY.get(n.op) is not None and REGISTRY[n.op].infer_shape is broadcast_shapes:
            for k, x in enumerate(args):
                if x.op != "broadcast_like" or x.inputs[0].dtype != x.dtype:
                    continue
                trial = [a.shape for a in args]
                trial[k] = x.inputs[0].shape
                try:
                    if broadcast_shapes(*trial) == n.shape:
                        args[k] = x.inputs[0]
                except ShapeError:
                    pass
        inputs[n.id] = tuple(args)
    return inputs


def reachable(outputs: Sequence[Node], inputs: dict[int, tuple]) -> list[Node]:
    """The nodes the outputs read through ``inputs``, in topological (id) order."""
    seen: dict[int, Node] = {}
    stack = list(outputs)
    while stack:
        n = stack.pop()
        if n.id not in seen:
            seen[n.id] = n
            stack.extend(inputs[n.id])
    return sorted(seen.values(), key=lambda n: n.id)


def fold_constants(order: list[Node], inputs: dict[int, tuple]) -> dict[int, object]:
    """Values of constants and of every node that depends on constants only, computed once, read-only."""
    values: dict[int, object] = {}
    for n in order:
        args = inputs[n.id]
        if n.op == "const":
            values[n.id] = n.value
        elif n.op not in SOURCE_KINDS and args and all(x.id in values for x in args):
            value = REGISTRY[n.op].forward(*[values[x.id] for x in args], **n.attrs)
            if isinstance(value, np.ndarray):
                value = value.view()
                value.flags.writeable = False
            values[n.id] = value
    return values
