"""The next lever for a busy machine (docs/performance.md, issue 17): wide's matrix products run by OpenBLAS's
own threads against the same products split into row blocks, each block a one-thread BLAS call made from
Python threads, on a quiet machine and beside one competing CPU-bound process.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/row_blocks.py [--repeat 300]

The products are those of one training step of benchmarks/specs/wide.yaml (float32, batch 256; three of them
take a transposed operand, as the backward pass does). OpenBLAS's threads wait for each other by spinning,
so when another process holds one of the two cores every product waits for the descheduled thread; a Python
thread waiting on a block releases its core. Each setting is timed ``--repeat`` times back to back after a
warm-up; the figure is milliseconds per step (the eight products).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits


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
    pool = ThreadPoolExecutor(1)

    def blas_threads():
        for a, b, out in products:
            np.matmul(a, b, out=out)

    def row_blocks():  # two halves of the rows: one on the helper thread, one here
        for a, b, out in products:
            m = a.shape[0] // 2
            helper = pool.submit(np.matmul, a[m:], b, out=out[m:])
            np.matmul(a[:m], b, out=out[:m])
            helper.result()

    with threadpool_limits(2, user_api="blas"):
        two = timed(blas_threads, repeat)
    with threadpool_limits(1, user_api="blas"):
        one = timed(blas_threads, repeat)
        blocks = timed(row_blocks, repeat)
    pool.shutdown()
    return {"OpenBLAS, 2 threads": two, "OpenBLAS, 1 thread": one, "2 row blocks on 2 Python threads": blocks}


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
            f"  {name:34s} quiet {quiet[name]:6.2f} ms   busy {busy[name]:6.2f} ms   "
            f"busy/quiet speed {quiet[name] / busy[name]:.2f}"
        )


if __name__ == "__main__":
    main()
