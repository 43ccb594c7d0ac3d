"""Formula expressions such as ``powers(x, 5) @ k`` or ``sin(3*x)``, parsed with Python's ``ast`` under a
whitelist and mapped onto registered ops. Nothing is ever evaluated by Python: names resolve only to
nodes in scope, calls only to registered ops."""

from __future__ import annotations

import ast
import math

from specgrad.base.diagnostics import did_you_mean, excerpt
from specgrad.engine.ir import Graph, Node
from specgrad.engine.ops.registry import REGISTRY, ArgumentError, ShapeError, fmt_shape

BINARY: dict[type[ast.operator], str] = {
    ast.Add: "add",
    ast.Sub: "sub",
    ast.Mult: "mul",
    ast.Div: "div",
    ast.Pow: "pow",
    ast.MatMult: "matmul",
}
UNARY: dict[type[ast.unaryop], str] = {ast.USub: "neg"}
MAX_DEPTH = 100
"""Deepest nesting of a formula's syntax tree (``-(-(-x))``, ``a + b + c`` chains): the tree is walked
recursively, so its depth is bounded before anything walks it."""
MAX_LENGTH = 10_000
"""Longest formula, in characters."""
LARGEST = 2**63
"""Integers in formulas are 64-bit: a larger literal (or a constant expression) is an error, not an overflow
at train."""


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
        return FormulaError(
            f"'{name}' is used before its definition at {later[name]}; nodes are computed in "
            "the order they are listed, so they cannot form a cycle",
            col,
        )
    return FormulaError(f"undefined name {excerpt(name)}{did_you_mean(name, scope)}", col)


def parse_formula(text: str) -> ast.Expression:
    """The syntax tree of ``text``, refused (as a FormulaError) when too long or nested deeper than MAX_DEPTH.

    Python's own parser recurses per level and its limits differ between versions (a RecursionError, a
    MemoryError or "too many nested parentheses"), so the text's length is bounded first and the depth of
    the tree is measured without recursion."""
    if len(text) > MAX_LENGTH:
        raise FormulaError(f"formula too long: {len(text)} characters, at most {MAX_LENGTH}")
    _check_ascii(text)
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise FormulaError(f"invalid formula: {e.msg}", max((e.offset or 1) - 1, 0)) from None
    except (RecursionError, MemoryError, ValueError):
        raise FormulaError(f"formula nested deeper than {MAX_DEPTH} levels") from None
    stack: list[tuple[ast.AST, int]] = [(tree.body, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise FormulaError(
                f"formula nested deeper than {MAX_DEPTH} levels; split it over several nodes",
                getattr(node, "col_offset", 0),
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return tree


def _number(value, col: int = 0):
    """A numeric literal a formula may hold: finite, and a 64-bit integer when an integer."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    if isinstance(value, int) and not -LARGEST <= value < LARGEST:
        raise FormulaError(
            f"integer too large: {len(str(abs(value))) if value.bit_length() < 14000 else 'over 4000'}"
            " digits, outside the 64-bit integers",
            col,
        )
    if isinstance(value, float) and not math.isfinite(value):
        raise FormulaError("number too large: not a finite float64", col)
    return value


def _fold(op: str, a, b, col: int):
    """``a op b`` for two constants, computed here with bounds (``9 ** 9 ** 9 ** 9`` would take the machine)
    rather than left to the run: integers while they fit 64 bits, else float64; an overflow is an error."""
    try:
        if isinstance(a, int) and isinstance(b, int) and op in ("add", "sub", "mul", "pow"):
            if op == "pow" and (b < 0 or (abs(a) > 1 and b > 64)):
                value = float(a) ** float(b)
            else:
                value = {"add": a + b, "sub": a - b, "mul": a * b}[op] if op != "pow" else a**b
            if -LARGEST <= value < LARGEST:
                return value
            value = float(value)
        else:
            x, y = float(a), float(b)
            value = {"add": x + y, "sub": x - y, "mul": x * y, "div": x / y, "pow": x**y}[op]
    except ZeroDivisionError:
        raise FormulaError("division by zero in a constant expression", col) from None
    except OverflowError:
        raise FormulaError("a constant expression overflows float64", col) from None
    if isinstance(value, complex):
        raise FormulaError("a constant expression has no real value", col)
    if not math.isfinite(value):
        raise FormulaError("a constant expression overflows float64", col)
    return value


def public_ops() -> list[str]:
    return sorted(name for name, op in REGISTRY.items() if not op.internal)


def _constant(node: ast.AST):
    """A literal attribute value: number, string, bool, None, or a list/tuple of those (negatives allowed)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        return _number(node.value, node.col_offset)
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and isinstance(node.operand.value, (int, float))
        and not isinstance(node.operand.value, bool)
    ):
        return _number(-node.operand.value, node.col_offset)
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_constant(e) for e in node.elts]
    raise FormulaError("expected a constant here", getattr(node, "col_offset", 0))


def apply_call(graph: Graph, name: str, args: list, attrs: dict, col: int = 0, labels: dict | None = None) -> Node:
    """``name(*args, **attrs)`` on nodes, where positional arguments past the op's inputs fill its attributes
    in order (``powers(x, 5)`` is ``powers(x, degree=5)``). Shared by formulas and the mapping form.
    ``labels`` (node id -> how the spec writes it) lets a shape error say where each input came from."""
    op = REGISTRY.get(name)
    if op is None or op.internal:
        raise FormulaError(f"unknown op {excerpt(name)}{did_you_mean(name, public_ops())}", col)
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
    except ShapeError as e:  # where each input's shape came from
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


def _check_ascii(text: str) -> None:
    """Names are ASCII, as in the keys that define them. Python's parser would fold look-alikes into them
    (NFKC: fullwidth 'ｐｈｉ' reads as 'phi'), so a formula could use a name that is not written anywhere."""
    for i, ch in enumerate(text):
        if not ch.isascii():
            raise FormulaError(
                f"invalid character '{ch}' (U+{ord(ch):04X}): formulas are ASCII, and a "
                "look-alike of a name (fullwidth, NFKC) is not that name",
                i,
            )


def build_formula(text: str, graph: Graph, scope: dict[str, Node]) -> Node:
    """Parse ``text`` and append its ops to ``graph``; names resolve in ``scope``."""
    tree = parse_formula(text)
    lead = len(text) - len(text.lstrip())
    source = text.strip()
    labels: dict[int, str | None] = {n.id: name for name, n in scope.items()}  # None: no source segment

    def visit(node: ast.AST):
        out = _visit(node)
        if isinstance(out, Node) and out.id not in labels:
            labels[out.id] = ast.get_source_segment(source, node)
        return out

    def _visit(node: ast.AST):
        col = lead + getattr(node, "col_offset", 0)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return _number(node.value, col)
        if isinstance(node, ast.Name):
            if node.id not in scope:
                raise undefined(node.id, scope, col)
            return scope[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in BINARY:
            left, right = visit(node.left), visit(node.right)
            op = BINARY[type(node.op)]
            if not isinstance(left, Node) and not isinstance(right, Node) and op != "matmul":
                return _fold(op, left, right, col)
            return apply_call(graph, op, [left, right], {}, col, labels)
        if isinstance(node, ast.UnaryOp) and type(node.op) in UNARY:
            operand = visit(node.operand)
            if not isinstance(operand, Node):  # fold -3 into a constant
                return _number(-operand, col)
            return apply_call(graph, UNARY[type(node.op)], [operand], {}, col, labels)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.UAdd):
            return visit(node.operand)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            values = [
                _constant(a)
                if isinstance(a, (ast.List, ast.Tuple))
                or (isinstance(a, ast.Constant) and isinstance(a.value, (str, bool, type(None))))
                else visit(a)
                for a in node.args
            ]
            attrs = {}
            for kw in node.keywords:
                if kw.arg is None:
                    raise FormulaError("'**' is not allowed in formulas", col)
                attrs[kw.arg] = _constant(kw.value)
            return apply_call(graph, node.func.id, values, attrs, col, labels)
        raise FormulaError(
            f"{excerpt(ast.unparse(node))} is not allowed in a formula (use numbers, names, + - * / ** @ and op calls)",
            col,
        )

    out = visit(tree.body)
    return out if isinstance(out, Node) else graph.const(out)
