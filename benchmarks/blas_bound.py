"""The BLAS bound of a training step: its matrix products alone, timed back to back on preallocated arrays.

No framework that computes those products can take a step faster than this, so specgrad's steps/s over the
bound's says how much of a step is spent outside BLAS (activations, loss, optimizer, Python). The products
are those the plan declares (``Plan.products``), in the same shapes; each is timed with one thread and with
every usable CPU, and the faster setting is the bound (the best the BLAS does for them), unless a thread
variable is set, in which case BLAS keeps it (as it does for every framework in the comparison).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from specgrad.run.threads import usable_cpus, user_setting
from specgrad.spec import load_spec


def spec_products(spec_path, batch: int) -> list[tuple[int, int, int, int]]:
    """The matrix products of one training step of the spec at this batch size."""
    with tempfile.TemporaryDirectory() as folder:  # validate checks a data file is there; it is never read
        data = Path(folder) / "unused.npz"
        np.savez(data, x=np.zeros(1))
        spec = load_spec(spec_path, [f"data.path={data}"], [folder])
    model = spec.model
    return model.plan([model.loss, *model.grads]).products({"B": batch})


def _operands(products, dtype, rng):
    return [
        (
            rng.standard_normal((calls, m, k)).astype(dtype).squeeze(0)
            if calls == 1
            else rng.standard_normal((calls, m, k)).astype(dtype),
            rng.standard_normal((k, n)).astype(dtype),
            np.empty((m, n) if calls == 1 else (calls, m, n), dtype),
        )
        for calls, m, k, n in products
    ]


def _time(operands, steps) -> float:
    matmul = np.matmul
    for a, b, out in operands:  # warm-up: pages touched, BLAS threads started
        matmul(a, b, out=out)
    t0 = time.perf_counter()
    for _ in range(steps):
        for a, b, out in operands:
            matmul(a, b, out=out)
    return time.perf_counter() - t0


def blas_bound(products, dtype, steps: int, environ=os.environ):
    """The loop: (steps, seconds of the faster thread setting, its thread count) for ``steps`` steps."""
    operands = _operands(products, dtype, np.random.default_rng(0))

    def run():
        if user_setting(environ):
            return steps, _time(operands, steps), None
        best = None
        for n in sorted({1, usable_cpus()}):
            with threadpool_limits(limits=n, user_api="blas"):
                seconds = _time(operands, steps)
            if best is None or seconds < best[1]:
                best = (steps, seconds, n)
        return best

    return run()
