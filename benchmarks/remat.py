"""Gradient checkpointing on a deep MLP: memory a training step needs, and its compute cost.

    python benchmarks/remat.py [--depth 64] [--width 256] [--batch 256]

The network is built from ops directly (tanh(h @ w + b) layers, mean squared output), differentiated
with and without ``remat``, and planned. Memory: the plan's preallocated buffers plus the peak that
tracemalloc sees during a call on them, less the gradients it returns — what a step needs beyond
parameters, data and gradients. Cost: median seconds of a forward + backward call. Gradients are checked
to be bitwise equal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from specgrad.engine.autodiff import gradients  # noqa: E402
from specgrad.engine.ir import Graph  # noqa: E402
from specgrad.engine.plan import Plan  # noqa: E402


def deep_mlp_plan(depth, width, remat, dtype="float32"):
    g = Graph(dtype)
    x = g.input("x", ("B", width))
    ws = [g.param(f"w{i}", (width, width)) for i in range(depth)]
    bs = [g.param(f"b{i}", (width,)) for i in range(depth)]
    h = x
    for w, b in zip(ws, bs):
        h = g.apply("tanh", h @ w + b)
    loss = g.apply("mean", g.apply("square", h))
    return Plan([loss, *gradients(loss, ws + bs, remat=remat)], [x, *ws, *bs])


def step_memory(plan, values):
    plan(*values)  # first call: specialize, allocate buffers
    tracemalloc.start()
    grads = plan(*values)
    transient = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    (run,) = plan.specialized.values()
    return sum(b.nbytes for b in run.buffers) + transient - sum(np.asarray(g).nbytes for g in grads), grads


def interleaved_seconds(plans, values, repeat):
    """Median seconds per call of each plan, the plans taking turns so that machine load hits them alike."""
    times = [[] for _ in plans]
    for _ in range(repeat):
        for plan, t in zip(plans, times):
            t0 = time.perf_counter()
            plan(*values)
            t.append(time.perf_counter() - t0)
    return [statistics.median(t) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=64)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    d, w = args.depth, args.width
    values = [
        rng.standard_normal((args.batch, w)).astype(np.float32),
        *[(rng.standard_normal((w, w)) / np.sqrt(w)).astype(np.float32) for _ in range(d)],
        *[np.zeros(w, np.float32) for _ in range(d)],
    ]
    activation = args.batch * w * 4
    plans = [deep_mlp_plan(d, w, remat) for remat in (False, True)]
    (m0, g0), (m1, g1) = [step_memory(p, values) for p in plans]
    s0, s1 = interleaved_seconds(plans, values, args.repeat)
    matmuls = [sum(st.op == "matmul" for st in p.steps) for p in plans]
    same = all(np.array_equal(a, b) for a, b in zip(g0, g1))
    print(
        f"deep MLP: {d} tanh layers of {w}, batch {args.batch}, float32 (one activation = {activation / 2**20:.2f} MB)"
    )
    for name, mem, sec, mm in (("plain", m0, s0, matmuls[0]), ("remat", m1, s1, matmuls[1])):
        print(
            f"  {name}  step memory {mem / 2**20:7.1f} MB ({mem / activation:5.1f} activations)"
            f"   {mm} matrix products   forward+backward {sec * 1e3:7.1f} ms"
        )
    print(
        f"  checkpointing: memory x{m1 / m0:.2f}, matrix products x{matmuls[1] / matmuls[0]:.2f}, "
        f"time x{s1 / s0:.2f}; gradients bitwise equal: {same}"
    )


if __name__ == "__main__":
    main()
