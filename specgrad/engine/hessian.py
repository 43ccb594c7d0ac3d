"""Hessian-vector products: the backward pass differentiated again ("reverse over reverse").

The gradient g(θ) of a scalar loss is itself a graph of registered ops (autodiff.gradients), so for a fixed
vector v the product H v is the gradient of the scalar <g(θ), v>: one more reverse walk, this time over the
backward graph. No op needs a second-derivative rule of its own — each VJP is made of ops that have VJPs —
except the backward-only helpers that have none (``max_pool2d_grad``): a graph that needs one of them is a
``SecondDerivativeMissing`` error naming the op it belongs to. Ops that are locally constant (the step,
sign and tie-share factors of relu, abs, max...) have zero derivative and are passed over.

    from specgrad.model.hessian import hvp              # of a compiled model (the engine itself knows none)
    products = hvp(model, fields, params, vector)        # {param name: (H v) block}, H of the training loss
"""

from __future__ import annotations

from collections.abc import Sequence

from specgrad.engine.autodiff import NotDifferentiable, gradients
from specgrad.engine.ir import Node
from specgrad.engine.ops.registry import REGISTRY


class SecondDerivativeMissing(NotDifferentiable):
    """The second derivative of an op is not implemented: its backward pass uses an op without a VJP."""


def hvp_nodes(loss: Node, wrt: Sequence[Node], grads: Sequence[Node] | None = None) -> tuple[list[Node], list[Node]]:
    """Input nodes ``v`` (shaped like ``wrt``) and nodes computing H v, H the Hessian of ``loss`` in ``wrt``.
    ``grads``: the first derivatives, if already built (a compiled model's)."""
    graph = loss.graph
    grads = list(grads) if grads is not None else gradients(loss, wrt)
    vectors = [graph.input(f"hvp.v{i}.{w.name or w.id}", w.shape, w.dtype) for i, w in enumerate(wrt)]
    with graph.at(loss.loc):
        terms = [graph.apply("sum", g * v) for g, v in zip(grads, vectors)]
        inner = terms[0]
        for term in terms[1:]:
            inner = inner + term  # <g, v>
    try:
        products = gradients(inner, wrt)
    except NotDifferentiable as e:
        raise second_derivative_missing(e) from None
    return vectors, products


def second_derivative_missing(e: NotDifferentiable) -> SecondDerivativeMissing:
    op = getattr(e, "op", None)
    if op is None:
        return SecondDerivativeMissing(str(e))
    forward = op[: -len("_grad")] if op.endswith("_grad") and op[: -len("_grad")] in REGISTRY else op
    where = f" (used at {e.loc})" if getattr(e, "loc", None) is not None else ""
    return SecondDerivativeMissing(
        f"the second derivative of {forward} is not implemented: its backward pass uses "
        f"{op}, which has no derivative{where}; Hessian-vector products need a model "
        f"without it"
    )
