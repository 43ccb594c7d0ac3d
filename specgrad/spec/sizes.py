"""How much memory a run will take, estimated at validate from shapes alone (nothing is allocated), and the
check that refuses a run that would not fit: ``units: 1000000000``, ``shape: [100000, 100000]``,
``data.n: 1000000000000`` or ``powers(x, 100000000)`` are located errors at validate, not a MemoryError
(or a machine swapping) in the middle of training.

The estimate adds up what a training process holds at its peak:

* the parameters and the model state, their gradients, and the optimizer's state (its slots, counted by
  building the optimizer over one-element stand-ins and measuring what it allocates per parameter element);
* the data set, where its number of rows is known from the spec (synthetic sources' ``n``);
* the activations of a training step (forward and backward graph, at the batch size; a ``full`` batch is the
  training split) and of an evaluation (forward graph over the largest split, as ``evaluate`` does), each the
  peak of the tensors alive at once when the graph runs in order and every tensor is freed after its last
  use. The two are added, not the larger taken: the training plan keeps its buffers and its work on the
  data alone (``powers(x, 5)`` of a full batch) between steps, so an evaluation's activations come on top.

It is an estimate, within a small factor: numpy's temporaries inside one op and Python's own overhead are
not counted. The budget defaults to a fraction of the machine's memory (physical RAM, or the cgroup limit
when lower) and ``train.memory_budget`` sets it (bytes, or a string such as ``"8 GiB"``).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from specgrad.base.diagnostics import Diagnostic, Location
from specgrad.data.sources import batch_rows, split_sizes
from specgrad.engine.ir import ancestors
from specgrad.optim.optimizers import make_optimizer

Where = Callable[[tuple], Location]

DEFAULT_FRACTION = 0.75  # of the machine's memory: leaves room for the OS and numpy's temporaries
_UNITS = {
    "B": 1,
    "kB": 10**3,
    "KB": 10**3,
    "MB": 10**6,
    "GB": 10**9,
    "TB": 10**12,
    "KiB": 2**10,
    "MiB": 2**20,
    "GiB": 2**30,
    "TiB": 2**40,
}
_BUDGET_TEXT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*")
MEMORY_BUDGET: dict[str, Any] = {
    "anyOf": [
        {"type": "integer", "minimum": 1},
        {"type": "string", "pattern": r"^\s*[0-9]+(\.[0-9]+)?\s*(B|kB|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$"},
    ],
    "description": "memory the run may take, in bytes or with a unit ('8 GiB', '500 MB'); validate refuses a "
    "run estimated above it (default: 75% of this machine's memory)",
}


@dataclass(frozen=True)
class Tensor:
    """One entry of the estimate: what it is, its size in bytes, and the spec text it comes from."""

    what: str
    nbytes: int
    loc: Location | None


def parse_budget(value) -> int:
    """``train.memory_budget`` in bytes (the schema has checked its form)."""
    if isinstance(value, int):
        return value
    match = _BUDGET_TEXT.fullmatch(value)
    if match is None:
        raise ValueError(f"not a memory budget: {value!r}")  # the schema refuses this form first
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit])


def machine_memory() -> int | None:
    """Physical memory, or the cgroup (container) limit when that is lower; None where neither is known."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file, "rb") as f:
                text = f.read(64).strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            total = min(total, int(text)) if total else int(text)
    return total if total and total > 0 else None


def default_budget() -> tuple[int | None, str]:
    memory = machine_memory()
    if memory is None:
        return None, ""
    return int(memory * DEFAULT_FRACTION), f"{DEFAULT_FRACTION:.0%} of this machine's {human(memory)}"


def human(nbytes: float) -> str:
    """``nbytes`` in B, KiB ... PiB; an estimate beyond what a float holds (sizes are exact Python ints) says so."""
    if nbytes >= 1024**6 * 10**12:
        return "more than 10^12 PiB"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if nbytes < 1024 or unit == "PiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError


def _nbytes(shape, dtype, batch: int) -> int:
    """Bytes of a tensor of ``shape`` (symbolic dims are the batch) in Python ints: never overflows."""
    dims = [batch if isinstance(d, str) else int(d) for d in shape]
    return math.prod(dims) * np.dtype(dtype).itemsize


def _shape_text(shape, batch: int) -> str:
    return "[" + ", ".join(str(batch if isinstance(d, str) else d) for d in shape) + "]"


def _describe(node, batch: int, role: str) -> Tensor:
    name = f"'{node.name}'" if node.name else f"{node.op}"
    return Tensor(
        f"{role} {name} {_shape_text(node.shape, batch)} {np.dtype(node.dtype).name}",
        _nbytes(node.shape, node.dtype, batch),
        node.loc,
    )


def peak_activations(outputs, batch: int, role: str) -> tuple[int, list[Tensor]]:
    """The most bytes alive at once when the graph of ``outputs`` runs in node order, each tensor freed after
    its last use (parameters and constants excluded: counted elsewhere, or tiny); and every tensor counted."""
    nodes = [n for n in ancestors(outputs) if n.op not in ("param", "const") and n.dtype is not None]
    position = {n.id: i for i, n in enumerate(nodes)}
    last_use = {n.id: len(nodes) for n in outputs}
    for i, n in enumerate(nodes):
        for parent in n.inputs:
            if parent.id in position:
                last_use[parent.id] = max(last_use.get(parent.id, i), i)
    freed_at: dict[int, list[int]] = {}
    for node_id, i in last_use.items():
        freed_at.setdefault(i, []).append(node_id)
    sizes = {n.id: _nbytes(n.shape, n.dtype, batch) for n in nodes}
    live = peak = 0
    for i, n in enumerate(nodes):
        live += sizes[n.id]
        peak = max(peak, live)
        for node_id in freed_at.get(i, ()):
            live -= sizes.get(node_id, 0)
    return peak, [_describe(n, batch, role) for n in nodes]


def optimizer_copies(settings: dict, params: dict) -> int:
    """Bytes the optimizer allocates per byte of parameters (its slots, gradient buffers, scratch), measured
    on one-element stand-ins of each parameter, so that nothing the size of the model is allocated."""
    stand_ins = stand_in_params(params)
    try:
        optimizer = make_optimizer(settings, stand_ins)
    except ValueError:
        return 0  # settings the optimizer refuses: its own check (run/settings.py) says why
    seen: set[int] = set()
    owned = 0

    def visit(value):
        nonlocal owned
        if isinstance(value, np.ndarray):
            base = value
            while isinstance(base.base, np.ndarray):
                base = base.base
            if id(base) not in seen and not any(base is p for p in stand_ins.values()) and base.ndim:
                seen.add(id(base))
                owned += base.nbytes
        elif isinstance(value, dict):
            for item in value.values():
                visit(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                visit(item)

    visit(vars(optimizer))
    param_bytes = sum(p.nbytes for p in stand_ins.values())
    return math.ceil(owned / param_bytes) if param_bytes else 0


def stand_in_params(params: dict) -> dict[str, np.ndarray]:
    """One-element arrays of each parameter's dtype: enough for an optimizer to check its settings against
    the parameters' names, without allocating anything the size of the model."""
    return {name: np.zeros(1, node.dtype) for name, node in params.items()}


def data_rows(data: dict) -> int | None:
    """Rows of the data set where the spec says (synthetic sources' ``n``); None when only its files know."""
    n = data.get("n")
    if isinstance(n, float) and n.is_integer():  # JSON Schema lets 1.0e12 pass as an integer
        n = int(n)
    return n if isinstance(n, int) and not isinstance(n, bool) else None


def estimate(spec: dict, model, loc: Where) -> tuple[int, list[Tensor], str]:
    """Estimated peak bytes of training ``spec``, every tensor that makes it up, and a breakdown in words."""
    rows = data_rows(spec["data"])
    splits = split_sizes(rows, spec["data"].get("split") or {}) if rows is not None else None
    train_rows = splits["train"] if splits else None  # a full batch is the training split, not all rows
    batch_size = spec["train"].get("batch_size", "full")
    batch = batch_rows(train_rows, batch_size) if train_rows else (None if batch_size == "full" else batch_size)
    tensors = [_describe(node, 1, "parameter") for node in model.params.values()]
    tensors += [_describe(node, 1, "model state") for node in model.state.values()]
    param_bytes = sum(t.nbytes for t in tensors)
    copies = optimizer_copies(spec["optimizer"], model.params)
    parts = {
        "parameters and state": param_bytes,
        f"optimizer state and gradients ({copies}x the parameters)": copies * param_bytes,
    }
    if rows is not None:
        data_tensors = [
            Tensor(
                f"data field '{name}' {_shape_text(node.shape, rows)} {np.dtype(node.dtype).name}",
                _nbytes(node.shape, node.dtype, rows),
                loc(("data", "n")),
            )
            for name, node in model.inputs.items()
        ]
        tensors += data_tensors
        parts[f"data ({rows} rows)"] = sum(t.nbytes for t in data_tensors)
    if batch is not None:
        outputs = [model.loss, *model.grads, *model.state_updates.values()]
        peak, nodes = peak_activations(outputs, batch, "activation")
        parts[f"activations of a training step at batch {batch}"] = peak
        tensors += nodes
    if splits is not None:
        largest = max(splits.values())  # each split is evaluated whole, one at a time
        peak, nodes = peak_activations([model.eval.loss, model.eval.prediction], largest, "evaluation")
        parts[f"activations of an evaluation over {largest} rows"] = peak
        tensors += nodes
    total = sum(parts.values())
    breakdown = ", ".join(f"{what} {human(n)}" for what, n in parts.items())
    return total, tensors, breakdown


def memory_diagnostics(spec: dict, model, loc: Where) -> list[Diagnostic]:
    """A located error when the run's estimated memory exceeds its budget, naming the largest tensors."""
    setting = spec["train"].get("memory_budget")
    budget: int | None
    if setting is not None:
        budget, source = parse_budget(setting), "train.memory_budget"
    else:
        budget, source = default_budget()
        source += "; set train.memory_budget to change it"
    if budget is None:
        return []
    total, tensors, breakdown = estimate(spec, model, loc)
    if total <= budget:
        return []
    largest = sorted(tensors, key=lambda t: -t.nbytes)[:3]
    named = "; ".join(f"{t.what}: {human(t.nbytes)}" + (f" ({t.loc})" if t.loc is not None else "") for t in largest)
    # located at the largest tensor's spec text: that is what to change (or else the budget)
    where = next(
        (t.loc for t in largest if t.loc is not None),
        loc(("train", "memory_budget")) if setting is not None else loc(("train",)),
    )
    return [
        Diagnostic(
            f"the run needs about {human(total)} of memory ({breakdown}), more than its budget of "
            f"{human(budget)} ({source}); the largest tensors: {named}",
            where,
        )
    ]
