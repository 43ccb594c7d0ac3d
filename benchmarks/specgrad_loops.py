"""specgrad's side of each benchmark: a spec from benchmarks/specs, compiled and trained by specgrad's own
trainer. Each function does the preparation (load the spec, write the data) and returns the run: a function
returning (steps, seconds of the training loop, seconds of the whole ``Trainer.run``).

digits and wide train on the reference's arrays (written to an .npz that the spec's ``data.path`` is set
to), so that all frameworks see the same data.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np


def _load(spec_path: Path, overrides=(), roots=()):
    from specgrad.spec import load_spec

    # the benchmark's data lives in a temporary folder: a root the spec may read from (issue 12's confinement)
    return load_spec(spec_path, list(overrides), roots)


def _trainer_run(spec) -> tuple[int, float, float]:
    """Steps; seconds from the loop's start to the end of its last step (the trainer's hooks mark both);
    seconds of the whole run as the trainer reports them, which adds the final checkpoint (written and
    fsynced: a few ms to tens of ms, by the disk's mood) that the hand-written loops do not have."""
    from specgrad.run.trainer import Hooks, Trainer

    marks = {}
    hooks = Hooks(
        on_start=lambda start, total: marks.setdefault("start", time.perf_counter()),
        on_step=lambda step, loss: marks.__setitem__("last", time.perf_counter()),
    )
    with tempfile.TemporaryDirectory() as tmp:
        summary = Trainer(spec, Path(tmp) / "run", hooks=hooks).run()
    return summary["steps"], marks["last"] - marks["start"], summary["seconds"]


def specgrad_poly(spec_path: Path):
    """Load the spec; return the run (trainer built and run on it)."""
    spec = _load(spec_path)
    return lambda: _trainer_run(spec)


def specgrad_mlp(spec_path: Path, X: np.ndarray, y: np.ndarray):
    """Write X, y to an .npz and load the spec with ``data.path`` pointed at it; return the run."""
    folder = Path(tempfile.mkdtemp(prefix="specgrad-bench-"))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    np.savez(folder / "data.npz", x=X, y=y)
    spec = _load(spec_path, [f"data.path={folder / 'data.npz'}"], [folder])
    run = lambda: _trainer_run(spec)  # noqa: E731
    run.loads_bytes = X.nbytes + y.nbytes  # the trainer reads the data itself, inside the run
    return run
