"""specgrad's side of each benchmark: a spec from benchmarks/specs, compiled and trained by specgrad's own
trainer. Each function does the preparation (load the spec, write the data) and returns the run: a function
returning (steps, seconds of the training loop, as the trainer measures it).

digits and wide train on the reference's arrays (written to an .npz that the spec's ``data.path`` is set
to), so that all frameworks see the same data. Where this checkout cannot load those specs yet (they use
the ``cross_entropy`` loss and the ``npz`` source, which other branches add), the same network is built
from the registry's ops and run by the engine's plan with specgrad's Adam in the trainer's loop shape; a
note on stderr says so.
"""
from __future__ import annotations

import atexit
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml


def _load(spec_path: Path, overrides=()):
    from specgrad.spec import SpecError, load_spec
    try:
        return load_spec(spec_path, list(overrides))
    except SpecError as e:
        print(f"note: {spec_path.name} does not load on this checkout ({e.diagnostics[0].message}); "
              "running its network on the engine directly", file=sys.stderr)
        return None


def _trainer_run(spec) -> tuple[int, float]:
    from specgrad.run.trainer import Trainer
    with tempfile.TemporaryDirectory() as tmp:
        summary = Trainer(spec, Path(tmp) / "run").run()
    return summary["steps"], summary["seconds"]


def specgrad_poly(spec_path: Path):
    """Load the spec; return the run (trainer built and run on it)."""
    spec = _load(spec_path)
    return lambda: _trainer_run(spec)


def specgrad_mlp(spec_path: Path, X: np.ndarray, y: np.ndarray):
    """Write X, y to an .npz and load the spec with ``data.path`` pointed at it; return the run."""
    folder = Path(tempfile.mkdtemp(prefix="specgrad-bench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    np.savez(folder / "data.npz", x=X, y=y)
    spec = _load(spec_path, [f"data.path={folder / 'data.npz'}"])
    if spec is not None:
        run = lambda: _trainer_run(spec)              # noqa: E731
        run.loads_bytes = X.nbytes + y.nbytes         # the trainer reads the data itself, inside the run
        return run
    cfg = yaml.safe_load(spec_path.read_text())
    return lambda: _engine_mlp(cfg, X, y)


def _engine_mlp(cfg: dict, X: np.ndarray, y: np.ndarray) -> tuple[int, float]:
    """The spec's MLP (relu(h @ w + b) layers, then softmax cross-entropy) on the engine, in the trainer's
    loop shape: a permutation per epoch, one gather per batch, plan, Adam step."""
    from specgrad.graph.autodiff import gradients
    from specgrad.graph.ir import Graph
    from specgrad.graph.plan import Plan
    from specgrad.init import INITIALIZERS
    from specgrad.optim.optimizers import make_optimizer

    g = Graph(cfg.get("dtype", "float64"))
    params = cfg["model"]["params"]
    x, labels = g.input("x", ("B", X.shape[1])), g.input("y", ("B",), "int64")
    nodes = {name: g.param(name, tuple(p["shape"])) for name, p in params.items()}
    layers = len(params) // 2
    h = x
    for i in range(1, layers + 1):
        h = h @ nodes[f"w{i}"] + nodes[f"b{i}"]
        if i < layers:
            h = g.apply("relu", h)
    loss = g.apply("softmax_cross_entropy", h, labels)
    plan = Plan([loss, *gradients(loss, list(nodes.values()))], [x, labels, *nodes.values()])

    rng = np.random.default_rng(cfg.get("seed", 0))
    values = {name: INITIALIZERS.create(p.get("init", "zeros"))(tuple(p["shape"]), rng, g.dtype)
              for name, p in params.items()}
    optimizer = make_optimizer(cfg["optimizer"], values)
    lr = cfg["optimizer"]["lr"]
    X, y = X.astype(g.dtype), y.astype(np.int64)
    n, bs = len(X), cfg["train"]["batch_size"]
    steps = cfg["train"]["epochs"] * math.ceil(n / bs)
    names, order = list(values), None
    t0 = time.perf_counter()
    for step in range(steps):
        pos = step % math.ceil(n / bs)
        if pos == 0:
            order = rng.permutation(n)
        idx = order[pos * bs:(pos + 1) * bs]
        value, *grads = plan(X[idx], y[idx], *values.values())
        float(value)
        optimizer.step(dict(zip(names, grads)), lr)
    return steps, time.perf_counter() - t0
