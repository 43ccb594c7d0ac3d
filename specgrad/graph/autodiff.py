"""Reverse mode: the backward pass is built as graph nodes, once, when a model is compiled.

Walk the nodes that lie on a path from a parameter to the loss in reverse topological order. Each node's
cotangent is the sum of the contributions from the branches it feeds; its op's VJPs turn that into a
contribution for each input. Where an input was broadcast, its contribution is summed back to the input's
shape here, in one place, so no op re-derives broadcasting. Nothing is emitted for data inputs or for
branches that do not reach the loss.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from specgrad.graph.ir import SOURCE_KINDS, Node, ancestors
from specgrad.ops.registry import REGISTRY


class NotDifferentiable(ValueError):
    pass


def gradients(loss: Node, wrt: Sequence[Node]) -> list[Node]:
    """Nodes computing d loss / d w for each w in ``wrt``; ``loss`` must be a scalar."""
    if loss.shape != ():
        raise ValueError(f"the loss must be a scalar, got shape {list(loss.shape)}")
    graph = loss.graph
    order = ancestors([loss])
    wrt_ids = {w.id for w in wrt}
    on_path = set()                      # nodes that depend on something in wrt
    for n in order:
        if n.id in wrt_ids or any(i.id in on_path for i in n.inputs):
            on_path.add(n.id)

    contributions: dict[int, list[Node]] = {loss.id: [graph.const(np.ones((), loss.dtype))]}
    grads: dict[int, Node] = {}
    for node in reversed(order):
        parts = contributions.pop(node.id, None)
        if parts is None or node.id not in on_path:
            continue
        with graph.at(node.loc):
            g = parts[0]
            for p in parts[1:]:
                g = g + p
            if node.id in wrt_ids:
                grads[node.id] = g
            if node.op in SOURCE_KINDS:
                continue
            op = REGISTRY[node.op]
            for k, x in enumerate(node.inputs):
                if x.id not in on_path:
                    continue
                vjp = op.vjps[k] if op.vjps and k < len(op.vjps) else op.vjps[-1] if op.vjps else None
                if vjp is None:
                    raise NotDifferentiable(f"op {node.op!r} is not differentiable with respect to input {k + 1}")
                ct = vjp(g, node, *node.inputs, **node.attrs)
                if ct.shape != x.shape:
                    ct = graph.apply("sum_to", ct, shape=x.shape)
                contributions.setdefault(x.id, []).append(ct)
    return [grads[w.id] if w.id in grads else graph.const(np.zeros(w.shape, w.dtype)) for w in wrt]
