"""Large products in row blocks (specgrad/engine/blocks.py, the thread policy's rule 5) against OpenBLAS's own
threads: wide's matrix products, on a quiet machine and beside one competing CPU-bound process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/row_blocks.py [--repeat 300]

The products are those of one training step of benchmarks/specs/wide.yaml (float32, batch 256; three of them
take a transposed operand, as the backward pass does), run three ways: OpenBLAS on two threads, on one, and
specgrad's row blocks (two fixed blocks of rows per product, each a one-thread BLAS call, claimed by the
caller and a helper thread). Each is timed back to back and with some numpy work between the products
(as in a training step: activations, their gradients), ``--repeat`` steps after a warm-up; the figure is
milliseconds per step. OpenBLAS's threads spin waiting for each other, so beside a busy process every
product waits for whichever thread the OS has descheduled; a thread waiting for a block gives its core away.
On a quiet machine the blocks pay two thread wake-ups per product instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from specgrad.base.sharing import Sharing  # noqa: E402
from specgrad.engine.blocks import matmul, row_blocks  # noqa: E402


def wide_products(batch: int = 256):
    rng = np.random.default_rng(0)

    def array(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x, h, g = array(batch, 784), array(batch, 512), array(batch, 10)
    w1, w2, w3 = array(784, 512), array(512, 512), array(512, 10)
    # forward, then the weight gradients (a transposed activation) and the input gradients (a transposed weight)
    pairs = [(x, w1), (h, w2), (h, w3), (x.T, h), (h.T, h), (h.T, g), (g, w3.T), (h, w2.T)]
    return [(a, b, np.empty((a.shape[0], b.shape[1]), np.float32)) for a, b in pairs]


def timed(step, repeat: int) -> float:
    step()
    t0 = time.perf_counter()
    for _ in range(repeat):
        step()
    return 1e3 * (time.perf_counter() - t0) / repeat


def measure(repeat: int) -> dict[str, float]:
    products = wide_products()
    filler = np.random.default_rng(1).standard_normal(300_000).astype(np.float32)

    def step(product, between: bool):
        def run():
            for a, b, out in products:
                product(a, b, out=out)
                if between:  # ~30 µs of elementwise work, as a step has between its products
                    np.multiply(filler, 1.0, out=filler)

        return run

    sharing = Sharing(1)
    result = {}
    try:
        for between in (False, True):
            label = " (numpy work between)" if between else ""
            with threadpool_limits(2, user_api="blas"):
                result["OpenBLAS, 2 threads" + label] = timed(step(np.matmul, between), repeat)
            with threadpool_limits(1, user_api="blas"):
                result["OpenBLAS, 1 thread" + label] = timed(step(np.matmul, between), repeat)
                with row_blocks(sharing, 2, 0.0):
                    result["row blocks, 2 threads" + label] = timed(step(matmul, between), repeat)
    finally:
        sharing.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=300)
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs; ms per step of wide's 8 products")
    quiet = measure(args.repeat)
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.5)
        busy = measure(args.repeat)
    finally:
        spinner.kill()
    for name in quiet:
        print(
            f"  {name:50s} quiet {quiet[name]:6.2f} ms   busy {busy[name]:6.2f} ms   "
            f"busy/quiet speed {quiet[name] / busy[name]:.2f}"
        )


if __name__ == "__main__":
    main()
