"""Cost as work grows: training steps/s of an MLP against batch size, width and depth, for specgrad, hand-written
numpy and PyTorch, beside the BLAS bound (the step's matrix products alone), in one command:

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/scaling.py          # tables, plots, docs
    python benchmarks/scaling.py --quick                                             # a smaller grid

The MLP: ReLU layers of the given width (the input has that width too), 10 classes, softmax cross-entropy,
Adam, float32, every framework at its default threads (specgrad's thread policy; numpy's and PyTorch's
own). One axis varies at a time around batch 256, width 256, depth 4 (weight layers). The three loops are
those of benchmarks/run.py: specgrad's trainer on a generated spec, ``baselines.mlp_numpy`` and
``baselines.mlp_torch``; each point runs as many steps as fit in about ``--seconds`` (at least 3), after a
warm-up, in one process per point. It prints the tables, writes the plots to docs/img/scaling-*.png and
replaces the section between the scaling markers in docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

import baselines  # noqa: E402
from blas_bound import blas_bound, spec_products  # noqa: E402
from specgrad_loops import specgrad_mlp  # noqa: E402

BASE = {"batch": 256, "width": 256, "depth": 4}
GRID = {"batch": [16, 64, 256, 1024, 4096], "width": [64, 256, 1024, 4096], "depth": [2, 8, 32, 64]}
QUICK = {"batch": [16, 256, 4096], "width": [64, 1024], "depth": [2, 32]}
FRAMEWORKS = ("specgrad", "numpy", "torch", "bound")
DOC = ROOT / "docs" / "performance.md"
BEGIN, END = "<!-- scaling:begin (benchmarks/scaling.py writes this section) -->", "<!-- scaling:end -->"


def mlp_spec(width: int, depth: int, batch: int) -> str:
    """A spec of the MLP, as YAML text (data.path is set by the loop)."""
    params, nodes, h = [], [], "x"
    for i in range(1, depth + 1):
        fan_out = 10 if i == depth else width
        params.append(
            f"    w{i}: {{shape: [{width}, {fan_out}], init: {{type: normal, std: {(2 / width) ** 0.5:.6g}}}}}"
        )
        params.append(f"    b{i}: {{shape: [{fan_out}], init: zeros}}")
        if i < depth:
            nodes.append(f"    - h{i}: relu({h} @ w{i} + b{i})")
            h = f"h{i}"
        else:
            nodes.append(f"    - logits: {h} @ w{i} + b{i}")
    return "\n".join(
        [
            "specgrad: 1",
            "name: scaling",
            "seed: 0",
            "dtype: float32",
            "data: {source: npz, path: unused.npz}",
            "model:",
            f"  inputs: {{x: [{width}]}}",
            "  params:",
            *params,
            "  nodes:",
            *nodes,
            "  output: logits",
            "loss: cross_entropy",
            "optimizer: {type: adam, lr: 1.0e-3}",
            f"train: {{epochs: 1, batch_size: {batch}, log_every: 100}}",
            "",
        ]
    )


def point(batch: int, width: int, depth: int, seconds: float) -> dict:
    """steps/s of each framework at one point (in this process)."""
    folder = Path(tempfile.mkdtemp(prefix="specgrad-scaling-"))
    spec = folder / "mlp.yaml"
    spec.write_text(mlp_spec(width, depth, batch))
    products = spec_products(spec, batch)
    probe = blas_bound(products, np.float32, 2)  # the bound's step time sizes the runs
    steps = int(max(3, min(400, seconds / max(probe[1] / 2, 1e-6) / 3)))
    rng = np.random.default_rng(1)
    X = rng.standard_normal((batch * steps, width)).astype(np.float32)
    y = rng.integers(0, 10, batch * steps)
    sizes = [width] * depth + [10]
    out = {"batch": batch, "width": width, "depth": depth, "steps": steps}
    # warm-ups: a step or two of each, so that imports, first allocations and thread pools are done
    baselines.mlp_numpy(X[:batch], y[:batch], X[:batch], y[:batch], sizes, 1, batch, 1e-3)
    baselines.mlp_torch(X[:batch], y[:batch], X[:batch], y[:batch], sizes, 1, batch, 1e-3)
    specgrad_mlp(spec, X[: 2 * batch], y[: 2 * batch])()
    run = specgrad_mlp(spec, X, y)
    n, loop_seconds, _ = run()
    out["specgrad"] = n / loop_seconds
    t0 = time.perf_counter()
    n = baselines.mlp_numpy(X, y, X[:batch], y[:batch], sizes, 1, batch, 1e-3)[0]
    out["numpy"] = n / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = baselines.mlp_torch(X, y, X[:batch], y[:batch], sizes, 1, batch, 1e-3)[0]
    out["torch"] = n / (time.perf_counter() - t0)
    n, bound_seconds, out["bound_threads"] = blas_bound(products, np.float32, steps)
    out["bound"] = n / bound_seconds
    out["gflop_per_step"] = sum(2.0 * c * m * k * n for c, m, k, n in products) / 1e9
    return out


def in_process(batch, width, depth, seconds) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--point",
        str(batch),
        str(width),
        str(depth),
        "--seconds",
        str(seconds),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"point batch={batch} width={width} depth={depth} failed:\n{done.stderr}")
    return json.loads(done.stdout.splitlines()[-1])


def table(axis: str, rows: list[dict]) -> str:
    head = (
        f"| {axis} | GFLOP/step | specgrad | numpy | PyTorch | BLAS bound | specgrad / bound | "
        "specgrad / numpy | specgrad / PyTorch |"
    )
    lines = [head, "|" + "---|" * 9]

    def rate(x):  # steps/s: whole numbers, but 3 digits below 10 (width 4096)
        return f"{x:,.0f}" if x >= 10 else f"{x:.3g}"

    for r in rows:
        lines.append(
            f"| {r[axis]} | {r['gflop_per_step']:.3g} | {rate(r['specgrad'])} | {rate(r['numpy'])} | "
            f"{rate(r['torch'])} | {rate(r['bound'])} | {r['specgrad'] / r['bound']:.2f} | "
            f"{r['specgrad'] / r['numpy']:.2f} | {r['specgrad'] / r['torch']:.2f} |"
        )
    return "\n".join(lines)


def plot(axis: str, rows: list[dict], path: Path) -> None:
    import matplotlib  # the plot extra, for this script only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=110)
    xs = [r[axis] for r in rows]
    styles = {"specgrad": "o-", "numpy": "s--", "torch": "^--", "bound": "k:"}
    names = {"specgrad": "specgrad", "numpy": "numpy by hand", "torch": "PyTorch", "bound": "BLAS bound"}
    for fw in FRAMEWORKS:
        ax.plot(xs, [r[fw] for r in rows], styles[fw], label=names[fw])
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel(
        axis
        + (
            "  (width 256, depth 4)"
            if axis == "batch"
            else "  (batch 256, depth 4)"
            if axis == "width"
            else "  (batch 256, width 256)"
        )
    )
    ax.set_ylabel("training steps / s")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_doc(section: str) -> None:
    text = DOC.read_text()
    if BEGIN in text and END in text:
        start, end = text.index(BEGIN), text.index(END) + len(END)
        text = text[:start] + section + text[end:]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    DOC.write_text(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller grid")
    parser.add_argument("--seconds", type=float, default=0.4, help="about how long each framework runs a point")
    parser.add_argument("--no-docs", action="store_true", help="print only: no plots, docs/performance.md untouched")
    parser.add_argument("--point", nargs=3, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.point:
        print(json.dumps(point(*args.point, args.seconds)))
        return
    grid = QUICK if args.quick else GRID
    started, load = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), [os.getloadavg()[0]]
    results = {}
    for axis, values in grid.items():
        results[axis] = []
        for value in values:
            r = in_process(**{**BASE, axis: value}, seconds=args.seconds)
            results[axis].append(r)
            load.append(os.getloadavg()[0])
            print(f"{axis}={value}: " + "  ".join(f"{fw} {r[fw]:,.1f}/s" for fw in FRAMEWORKS), flush=True)
    tables = {axis: table(axis, rows) for axis, rows in results.items()}
    for axis, text in tables.items():
        print(f"\n{axis}\n{text}")
    with open(BENCH / "results.jsonl", "a") as f:
        f.write(json.dumps({"scaling": results, "date": started, "load_avg": load}) + "\n")
    if args.no_docs:
        return
    (ROOT / "docs" / "img").mkdir(exist_ok=True)
    parts = [
        BEGIN,
        "",
        f"`python benchmarks/scaling.py` ({started}, load average {min(load):.2f}-{max(load):.2f} while it "
        f"ran; steps/s, higher is better; every framework at its default threads):",
        "",
    ]
    for axis, text in tables.items():
        plot(axis, results[axis], ROOT / "docs" / "img" / f"scaling-{axis}.png")
        parts += [f"**{axis}**", "", text, "", f"![steps/s against {axis}](img/scaling-{axis}.png)", ""]
    parts.append(END)
    write_doc("\n".join(parts))
    print(f"\nwrote docs/img/scaling-*.png and the scaling section of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
