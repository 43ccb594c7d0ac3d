"""A trained model's evaluation graph as an ONNX model: the emitter the ops' lowerings write through, and
the walk over the graph that calls them.

The exported graph takes what ``specgrad predict`` takes: the model's inputs, raw (the standardization the
run fitted, from its data.json, is folded in), with a dynamic batch dimension. Its outputs are named as in
the spec: the model's output node, and for a classifier the ``label`` and ``probability`` that predict adds.
Parameters and batchnorm's running statistics are initializers named after them; the graph is the
evaluation-mode one (no dropout, running statistics).

This module imports onnx; ``specgrad.run.export`` imports it only once the ``onnx`` extra is known to be there.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
from onnx import helper, numpy_helper

from specgrad.base.diagnostics import Diagnostic, SpecError
from specgrad.engine.ir import Node, ancestors
from specgrad.engine.ops.onnx_lowerings import NotExportable
from specgrad.engine.ops.registry import REGISTRY

BATCH = "batch"  # the ONNX name of the dynamic batch dimension (the graph's symbolic "B")


class Emitter:
    """Collects ONNX nodes and initializers; what an op's lowering calls (specgrad/engine/ops/onnx_lowerings.py)."""

    def __init__(self, opset: int):
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._constants: dict[tuple, str] = {}
        self._count = 0

    def fresh(self, hint: str = "") -> str:
        # '%' cannot start a spec name, so internal values never take the name of an input or output
        self._count += 1
        return f"%{hint}{self._count}"

    def op(self, op_type: str, *inputs: str | None, **attributes) -> str:
        """One ONNX node with one output, whose name is returned; ``None`` marks an omitted optional input."""
        given = list(inputs)
        while given and given[-1] is None:
            given.pop()
        out = self.fresh()
        self.nodes.append(helper.make_node(op_type, ["" if x is None else x for x in given], [out], **attributes))
        return out

    def initializer(self, name: str, value: np.ndarray) -> str:
        # np.array, not np.ascontiguousarray, which makes a scalar a [1] vector
        self.initializers.append(numpy_helper.from_array(np.array(value, order="C"), name))
        return name

    def const(self, value, dtype) -> str:
        """A constant tensor of ``dtype`` (one initializer per distinct value)."""
        array = np.asarray(value, dtype=np.dtype(dtype))
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._constants:
            self._constants[key] = self.initializer(self.fresh("c"), array)
        return self._constants[key]

    def ints(self, values) -> str:
        return self.const(list(values), np.int64)

    def cast(self, x: str, dtype, from_dtype=None) -> str:
        """x as ``dtype``; nothing to do when ``from_dtype`` is already that."""
        if from_dtype is not None and np.dtype(from_dtype) == np.dtype(dtype):
            return x
        return self.op("Cast", x, to=helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))

    def reduce(self, op_type: str, x: str, axes, keepdims) -> str:
        """A Reduce* node over ``axes`` (None: all). ReduceSum takes its axes as an input from opset 13, the
        others from opset 18, as an attribute before."""
        keepdims = int(bool(keepdims))
        if axes is None:
            return self.op(op_type, x, keepdims=keepdims)
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, x, self.ints(axes), keepdims=keepdims)
        return self.op(op_type, x, axes=list(axes), keepdims=keepdims)

    def count(self, x: str, shape, axes, dtype) -> str:
        """The number of elements of x over ``axes``, as a ``dtype`` scalar: a constant when the sizes are
        known, else read from x's runtime shape (the batch dimension)."""
        sizes = [shape[a] for a in axes]
        if all(isinstance(d, int) for d in sizes):
            return self.const(float(np.prod(sizes)), dtype)
        product = self.op("ReduceProd", self.op("Gather", self.op("Shape", x), self.ints(axes)), keepdims=0)
        return self.cast(product, dtype)


def _tensor_type(dtype) -> int:
    return helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _dims(shape) -> list:
    return [BATCH if isinstance(d, str) else d for d in shape]


# --------------------------------------------------------------------------------- classifier readings
def _decode_labels(b: Emitter, pred: str, node: Node) -> dict:
    """cross_entropy: the arg max and the softmax of the logits, as predict's ``decode`` gives them."""
    return {
        "label": (b.op("ArgMax", pred, axis=-1, keepdims=0), np.dtype(np.int64), node.shape[:-1]),
        "probability": (b.op("Softmax", pred, axis=-1), node.dtype, node.shape),
    }


def _decode_binary(b: Emitter, pred: str, node: Node) -> dict:
    """binary_cross_entropy: logit > 0, and the sigmoid as predict computes it, (1 + tanh(z / 2)) / 2."""
    c = lambda v: b.const(v, node.dtype)  # noqa: E731
    label = b.cast(b.op("Greater", pred, c(0)), np.int64)
    probability = b.op("Mul", c(0.5), b.op("Add", c(1), b.op("Tanh", b.op("Div", pred, c(2)))))
    return {"label": (label, np.dtype(np.int64), node.shape), "probability": (probability, node.dtype, node.shape)}


# loss type -> the ONNX form of its ``decode`` (specgrad/model/losses.py); a test checks every decoding loss has one
DECODERS: dict[str, Callable] = {"cross_entropy": _decode_labels, "binary_cross_entropy": _decode_binary}


# ------------------------------------------------------------------------------------------------ the walk
def unexportable(nodes) -> list[Diagnostic]:
    """One located error per op among ``nodes`` that has no ONNX lowering, with the spec line it came from."""
    problems, seen = [], set()
    for node in nodes:
        if node.op in ("input", "param", "const"):
            continue
        lowering = REGISTRY[node.op].onnx
        if lowering is not None and not isinstance(lowering, NotExportable):
            continue
        why = lowering.reason if isinstance(lowering, NotExportable) else "it declares no ONNX lowering"
        key = (node.op, str(node.loc))
        if key not in seen:
            seen.add(key)
            problems.append(Diagnostic(f"op '{node.op}' cannot be exported to ONNX: {why}", node.loc))
    return problems


def to_onnx(
    forward,
    params: dict,
    state: dict,
    standardize: dict,
    inputs: list[str],
    output: str,
    decode: Callable | None,
    opset: int,
    metadata: dict[str, str],
) -> onnx.ModelProto:
    """The ONNX model computing ``forward.prediction`` from the raw ``inputs``.

    ``forward``: the model's evaluation-mode graph; ``params`` and ``state``: their arrays; ``standardize``:
    input name -> (mean, std) as data.json holds them; ``output``: the spec's output name; ``decode``: an
    entry of ``DECODERS`` or None. A SpecError locates every op that has no lowering."""
    nodes = ancestors([forward.prediction])
    problems = unexportable(nodes)
    if problems:
        raise SpecError(problems)
    b = Emitter(opset)
    values: dict[int, str] = {}
    graph_inputs = []
    for name in inputs:
        node = forward.inputs[name]
        stats = standardize.get(name)
        # a standardized input comes raw, in float64 as predict reads it: in a float32 model, rounding it first
        # would lose what (x - mean) / std keeps of values far from zero (1e5 + noise)
        dtype = np.float64 if stats is not None else node.dtype
        graph_inputs.append(helper.make_tensor_value_info(name, _tensor_type(dtype), _dims(node.shape)))
        values[node.id] = _standardized(b, name, node.dtype, stats)
    state_nodes = {n.id: name for name, n in forward.state.items()}
    for node in nodes:
        if node.id in values:
            continue
        if node.op == "param":
            values[node.id] = b.initializer(node.name, np.asarray(params[node.name], node.dtype))
        elif node.op == "input" and node.id in state_nodes:
            values[node.id] = b.initializer(node.name, np.asarray(state[state_nodes[node.id]], node.dtype))
        elif node.op == "input":
            raise SpecError(
                [
                    Diagnostic(
                        f"the prediction reads '{node.name}', which is not a model input, and cannot be exported",
                        node.loc,
                    )
                ]
            )
        elif node.op == "const":
            if node.dtype is not None:  # a Python number is made per use, in its user's dtype
                values[node.id] = b.const(node.value, node.dtype)
        else:
            args = [values[x.id] if x.id in values else b.const(x.value, node.dtype) for x in node.inputs]
            lowering = REGISTRY[node.op].onnx
            # unexportable() above refused every op without a lowering (None or a NotExportable)
            assert lowering is not None and not isinstance(lowering, NotExportable), node.op
            values[node.id] = lowering(b, node, *args, **node.attrs)

    pred = forward.prediction
    outs = {output: (values[pred.id], pred.dtype, pred.shape)}
    if decode is not None:
        outs.update(decode(b, values[pred.id], pred))
    graph_outputs = []
    for name, (value, dtype, shape) in outs.items():
        b.nodes.append(helper.make_node("Identity", [value], [name]))
        graph_outputs.append(helper.make_tensor_value_info(name, _tensor_type(dtype), _dims(shape)))
    graph = helper.make_graph(
        b.nodes, metadata.get("specgrad.spec_name", "model"), graph_inputs, graph_outputs, initializer=b.initializers
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph,
        opset_imports=opsets,
        producer_name="specgrad",
        producer_version=metadata.get("specgrad.version", ""),
        ir_version=helper.find_min_ir_version_for(opsets),
    )
    helper.set_model_props(model, metadata)
    return model


def _standardized(b: Emitter, name: str, dtype, stats) -> str:
    """The input as the model reads it: the raw float64 input's (x - mean) / std, computed in float64 as
    predict does, then cast to the model's dtype."""
    if stats is None:
        return name
    mean, std = stats
    z = b.op("Div", b.op("Sub", name, b.const(mean, np.float64)), b.const(std, np.float64))
    return b.cast(z, dtype, np.float64)
