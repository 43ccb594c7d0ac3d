"""Formula expressions such as ``powers(x, 5) @ k`` or ``sin(3*x)``, parsed with Python's ``ast`` under a
whitelist and mapped onto registered ops. Nothing is ever evaluated by Python: names resolve only to
nodes in scope, calls only to registered ops."""
from __future__ import annotations

import ast

from specgrad.engine.ir import Graph, Node
from specgrad.engine.ops.registry import REGISTRY, ArgumentError, ShapeError, fmt_shape
from specgrad.base.diagnostics import did_you_mean

BINARY = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow", ast.MatMult: "matmul"}
UNARY = {ast.USub: "neg"}


class FormulaError(ValueError):
    """A problem at ``col`` (0-based offset into the formula text)."""

    def __init__(self, message: str, col: int = 0):
        super().__init__(message)
        self.col = col


class Scope(dict):
    """The names defined so far (name -> Node), and ``later``: name -> location of those defined further down,
    so that using one reads as what it is, an ordering mistake or a cycle, not a typo."""

    def __init__(self, later=None):
        super().__init__()
        self.later = dict(later or {})


def undefined(name: str, scope: dict, col: int = 0) -> FormulaError:
    later = getattr(scope, "later", {})
    if name in later:
        return FormulaError(f"'{name}' is used before its definition at {later[name]}; nodes are computed in "
                            "the order they are listed, so they cannot form a cycle", col)
    return FormulaError(f"undefined name '{name}'{did_you_mean(name, scope)}", col)


def public_ops() -> list[str]:
    return sorted(name for name, op in REGISTRY.items() if not op.internal)


def _constant(node: ast.AST):
    """A literal attribute value: number, string, bool, None, or a list/tuple of those (negatives allowed)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return node.value
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant) \
            and isinstance(node.operand.value, (int, float)) and not isinstance(node.operand.value, bool):
        return -node.operand.value
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_constant(e) for e in node.elts]
    raise FormulaError("expected a constant here", getattr(node, "col_offset", 0))


def apply_call(graph: Graph, name: str, args: list, attrs: dict, col: int = 0, labels: dict | None = None) -> Node:
    """``name(*args, **attrs)`` on nodes, where positional arguments past the op's inputs fill its attributes
    in order (``powers(x, 5)`` is ``powers(x, degree=5)``). Shared by formulas and the mapping form.
    ``labels`` (node id -> how the spec writes it) lets a shape error say where each input came from."""
    op = REGISTRY.get(name)
    if op is None or op.internal:
        raise FormulaError(f"unknown op '{name}'{did_you_mean(name, public_ops())}", col)
    n_inputs = op.arity if op.arity is not None else len(args)
    inputs, extra = list(args[:n_inputs]), list(args[n_inputs:])
    if len(extra) > len(op.attrs):
        raise FormulaError(f"{name} takes at most {n_inputs + len(op.attrs)} arguments, got {len(args)}", col)
    for attr, value in zip(op.attrs, extra):
        if isinstance(value, Node):
            raise FormulaError(f"argument '{attr}' of {name} must be a constant", col)
        if attr in attrs:
            raise FormulaError(f"{name} got argument '{attr}' twice", col)
        attrs[attr] = value
    if len(inputs) < n_inputs:
        raise FormulaError(f"{name} takes {n_inputs} input(s), got {len(inputs)}", col)
    try:
        return graph.apply(name, *inputs, **attrs)
    except ArgumentError as e:
        raise FormulaError(str(e), col) from None
    except ShapeError as e:                         # where each input's shape came from
        raise FormulaError(f"{e}{_origins(inputs, labels or {})}", col) from None


def _origins(inputs: list, labels: dict) -> str:
    """`` ('h' is [B, 3], from spec.yaml:12:7; 'w' is [4, 8], from spec.yaml:9:5)``: each input's shape and
    the spec line that made it."""
    parts = []
    for node in inputs:
        if not isinstance(node, Node) or node.op == "const":
            continue
        label = labels.get(node.id) or node.name or node.op
        parts.append(f"'{label}' is {fmt_shape(node.shape)}" + (f", from {node.loc}" if node.loc else ""))
    return f" ({'; '.join(parts)})" if parts else ""


def build_formula(text: str, graph: Graph, scope: dict[str, Node]) -> Node:
    """Parse ``text`` and append its ops to ``graph``; names resolve in ``scope``."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"invalid formula: {e.msg}", max((e.offset or 1) - 1, 0)) from None
    lead = len(text) - len(text.lstrip())
    source = text.strip()
    labels = {n.id: name for name, n in scope.items()}

    def visit(node: ast.AST):
        out = _visit(node)
        if isinstance(out, Node) and out.id not in labels:
            labels[out.id] = ast.get_source_segment(source, node)
        return out

    def _visit(node: ast.AST):
        col = lead + getattr(node, "col_offset", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return node.value
        if isinstance(node, ast.Name):
            if node.id not in scope:
                raise undefined(node.id, scope, col)
            return scope[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            return apply_call(graph, BINARY[type(node.op)], [visit(node.left), visit(node.right)], {}, col, labels)
        if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
            operand = visit(node.operand)
            if not isinstance(operand, Node):          # fold -3 into a constant
                return -operand
            return apply_call(graph, UNARY[type(node.op)], [operand], {}, col, labels)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return visit(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            values = [_constant(a) if isinstance(a, (ast.List, ast.Tuple))
                      or (isinstance(a, ast.Constant) and isinstance(a.value, (str, bool, type(None))))
                      else visit(a) for a in node.args]
            attrs = {}
            for kw in node.keywords:
                if kw.arg is None:
                    raise FormulaError("'**' is not allowed in formulas", col)
                attrs[kw.arg] = _constant(kw.value)
            return apply_call(graph, node.func.id, values, attrs, col, labels)
        raise FormulaError(f"'{ast.unparse(node)}' is not allowed in a formula "
                           "(use numbers, names, + - * / ** @ and op calls)", col)

    out = visit(tree.body)
    return out if isinstance(out, Node) else graph.const(out)
