"""``specgrad graph``: the compiled graph as text or Graphviz dot, forward pass and (optionally) the backward
pass the engine built for it, with every node's shape as inferred before any data exists."""

from __future__ import annotations

import json

from specgrad.engine.ir import Node, ancestors
from specgrad.engine.ops.registry import fmt_shape


def graph_nodes(model, backward: bool = False) -> list[Node]:
    """The nodes that compute the loss (and, with ``backward``, the parameters' gradients), in order."""
    return ancestors([model.loss, *(model.grads if backward else [])])


def _label(node: Node) -> str:
    return node.name or f"%{node.id}"


def _call(node: Node) -> str:
    if node.op == "const":
        value = node.value
        return repr(value) if isinstance(value, (int, float)) else f"const{fmt_shape(node.shape)}"
    args = [_label(x) for x in node.inputs] + [f"{k}={v!r}" for k, v in node.attrs.items()]
    return f"{node.op}({', '.join(args)})"


def render_text(model, backward: bool = False) -> str:
    """One line per node: ``name = op(inputs, attrs)  shape dtype``; then which node is what."""
    nodes = graph_nodes(model, backward)
    width = max(len(_label(n)) for n in nodes)
    lines = []
    for n in nodes:
        kind = n.op if n.op in ("input", "param") else _call(n)
        dtype = "" if n.dtype is None else str(n.dtype)
        lines.append(f"{_label(n):>{width}} = {kind:<40} {fmt_shape(n.shape)} {dtype}".rstrip())
    lines.append(f"prediction: {_label(model.prediction)}   loss: {_label(model.loss)}")
    if backward:
        lines.append("gradients: " + ", ".join(f"{name} <- {_label(g)}" for name, g in zip(model.params, model.grads)))
    return "\n".join(lines)


def render_dot(model, backward: bool = False) -> str:
    """A Graphviz digraph: inputs as ellipses, parameters as boxes, ops as plain nodes."""
    nodes = graph_nodes(model, backward)
    shapes = {"input": "ellipse", "param": "box", "const": "plaintext"}
    out = ["digraph specgrad {", "  rankdir=TB;", '  node [fontname="monospace", fontsize=10];']
    for n in nodes:
        text = f"{_label(n)}\\n{n.op if n.op in shapes else _call(n)}\\n{fmt_shape(n.shape)}"
        style = ", style=bold" if n is model.loss or n is model.prediction else ""
        out.append(
            f"  n{n.id} [label={json.dumps(text).replace(chr(92) * 2, chr(92))}, "
            f"shape={shapes.get(n.op, 'oval' if n.op == 'input' else 'box')}{style}];"
        )
    for n in nodes:
        for x in n.inputs:
            out.append(f"  n{x.id} -> n{n.id};")
    out.append("}")
    return "\n".join(out)
