"""Reverse mode: the backward pass is built as graph nodes, once, when a model is compiled.

Walk the nodes that lie on a path from a parameter to the loss in reverse topological order. Each node's
cotangent is the sum of the contributions from the branches it feeds; its op's VJPs turn that into a
contribution for each input. Where an input was broadcast, its contribution is summed back to the input's
shape here, in one place, so no op re-derives broadcasting. Nothing is emitted for data inputs or for
branches that do not reach the loss. A contribution is added to its value's running sum as soon as it is
emitted, so the plan can accumulate it in place (``add`` writes over the dying partial sum) and drop it.

Gradient checkpointing (``remat=True``): the forward values the VJPs read are not kept; only every k-th
forward node (k ~ sqrt(number of forward ops)) is, and the VJPs read copies recomputed from the nearest
kept values, emitted lazily during the reverse walk so that each copy lives only while its segment of the
backward pass runs. The copies apply the same ops to the same values, so the gradients are bitwise those
of the plain backward pass; the price is about one more forward pass.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from specgrad.engine.ir import SOURCE_KINDS, Graph, Node, ancestors
from specgrad.engine.ops.registry import REGISTRY


class NotDifferentiable(ValueError):
    """An op on the path to the loss without a VJP for that input; ``op`` and ``loc`` say which, and where."""

    def __init__(self, message: str, op: str | None = None, loc=None):
        super().__init__(message)
        self.op, self.loc = op, loc


def gradients(loss: Node, wrt: Sequence[Node], remat: bool = False) -> list[Node]:
    """Nodes computing d loss / d w for each w in ``wrt``; ``loss`` must be a scalar."""
    if loss.shape != ():
        raise ValueError(f"the loss must be a scalar, got shape {list(loss.shape)}")
    graph = loss.graph
    order = ancestors([loss])
    wrt_ids = {w.id for w in wrt}
    on_path = set()  # nodes that depend differentiably on something in wrt
    for n in order:
        if n.id in wrt_ids or any(i.id in on_path for i in _smooth_inputs(n)):
            on_path.add(n.id)

    kept = recompute(order, on_path) if remat else (lambda n: n)
    cotangent: dict[int, Node] = {loss.id: graph.const(np.ones((), loss.dtype))}
    grads: dict[int, Node] = {}
    for node in reversed(order):
        g = cotangent.pop(node.id, None)
        if g is None or node.id not in on_path:
            continue
        with graph.at(node.loc):
            if node.id in wrt_ids:
                grads[node.id] = g
            if node.op in SOURCE_KINDS:
                continue
            inert = REGISTRY[node.op].inert
            for k, x in enumerate(node.inputs):
                if x.id not in on_path or k in inert:
                    continue
                ct = vjp_of(node, k)(g, kept(node), *map(kept, node.inputs), **node.attrs)
                if ct.shape != x.shape:
                    ct = graph.apply("sum_to", ct, shape=x.shape)
                cotangent[x.id] = cotangent[x.id] + ct if x.id in cotangent else ct
    # a parameter the loss does not read has a zero gradient: one zero, broadcast (nothing allocated however
    # large the parameter: the memory check judges its size)
    return [grads[w.id] if w.id in grads else graph.const(np.broadcast_to(np.zeros((), w.dtype), w.shape)) for w in wrt]


def _smooth_inputs(node: Node) -> tuple[Node, ...]:
    """The inputs ``node``'s value depends on differentiably: none for an op that is locally constant (a
    step, a sign, a size), all but the inert ones (read for their shape, or a condition) otherwise."""
    op = REGISTRY.get(node.op)
    if op is None:
        return node.inputs
    if op.constant:
        return ()
    return tuple(x for k, x in enumerate(node.inputs) if k not in op.inert) if op.inert else node.inputs


def vjp_of(node: Node, k: int):
    """The VJP builder of ``node``'s op for its k-th input (the last one serves variadic ops)."""
    vjps = REGISTRY[node.op].vjps
    vjp = (vjps[k] if k < len(vjps) else vjps[-1]) if vjps else None
    if vjp is None:
        raise NotDifferentiable(
            f"op {node.op!r} is not differentiable with respect to input {k + 1}", node.op, node.loc
        )
    return vjp


def saved_values(order: list[Node], on_path: set[int]) -> set[int]:
    """The forward nodes the backward pass reads, found by building each VJP once on placeholders in a
    scratch graph and seeing which placeholders the result depends on."""
    saved: set[int] = set()
    scratch = Graph()
    for n in order:
        if n.id not in on_path or n.op in SOURCE_KINDS:
            continue
        args = (n, *n.inputs)
        stand_ins = [scratch.param(f"a{i}", a.shape, a.dtype) for i, a in enumerate(args)]
        g = scratch.param("g", n.shape, n.dtype)
        for k, x in enumerate(n.inputs):
            if x.id in on_path and k not in REGISTRY[n.op].inert:
                read = {m.id for m in ancestors([vjp_of(n, k)(g, *stand_ins, **n.attrs)])}
                saved.update(a.id for a, s in zip(args, stand_ins) if s.id in read)
    return saved


def recompute(order: list[Node], on_path: set[int]):
    """For checkpointing: a function giving, for a forward node, the node the backward pass should read.

    Of the N forward values the backward pass reads, every sqrt(N)-th is kept; any other forward node is
    recomputed from kept ones, once (the copy is memoized), at the point of the reverse walk where a VJP
    first asks for it. About sqrt(N) kept values plus one segment of sqrt(N) are alive at a time."""
    read = saved_values(order, on_path)
    saved = [n for n in order if n.id in read and n.op not in SOURCE_KINDS]
    every = max(1, math.isqrt(len(saved)))
    kept_ids = {n.id for n in saved[every - 1 :: every]}
    copies: dict[int, Node] = {}

    def kept(n: Node) -> Node:
        if n.op in SOURCE_KINDS or n.id in kept_ids:
            return n
        if n.id not in copies:
            with n.graph.at(n.loc):
                copies[n.id] = n.graph.apply(n.op, *map(kept, n.inputs), **n.attrs)
        return copies[n.id]

    return kept
