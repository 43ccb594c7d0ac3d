"""specgrad against hand-written numpy (and PyTorch, when installed), side by side, in one invocation.

    python benchmarks/run.py                      # poly, digits, wide; 5 interleaved runs each
    python benchmarks/run.py --tasks poly --repeat 9
    python benchmarks/run.py --threads 1          # one BLAS thread for every framework
    python benchmarks/run.py --busy               # each round also beside one competing CPU-bound process

On a machine that sets OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE (to work around old OpenBLAS builds), run it as
``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/run.py`` so that numpy uses the kernel
it would pick itself; the BLAS kernel in use is printed and recorded (threadpoolctl).

For each task the frameworks take turns (numpy, specgrad, torch, numpy, ...), each run in a fresh process
of its own, so that a busy machine slows them alike and no framework's thread pool competes with another's.
The figure is the median steps/s of the training loop, after a warm-up as in benchmarks/baselines.py;
for specgrad from the trainer's first step to the end of its last, as its hooks mark them (the whole run,
with the final checkpoint that the hand-written loops do not write, is reported beside it). Each ratio is
the median of the per-round ratios of this one invocation. Peak memory is traced (tracemalloc) over one
more run of the numpy and specgrad loops, less the training data (the baselines are handed theirs);
PyTorch allocates outside tracemalloc's reach. Then the whole-process time (wall and CPU) of
``specgrad train models/poly.yaml`` and ``specgrad validate models/``, and what ``import specgrad`` and
``specgrad --help`` import. Everything is printed; the record (one JSON line with the date, the commit and
the BLAS in use) is appended to a file only when asked, so a run leaves the repository as it found it:

    python benchmarks/run.py --record                  # append to benchmarks/results.jsonl
    python benchmarks/run.py --record --results FILE   # append to FILE
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path[:0] = [str(ROOT), str(BENCH)]

import baselines  # noqa: E402
from blas_bound import blas_bound, spec_products  # noqa: E402
from specgrad_loops import specgrad_mlp, specgrad_poly  # noqa: E402

HEAVY = ("numpy", "yaml", "jsonschema", "typer", "rich", "sklearn", "torch")


# ---------------------------------------------------------------------------------------------- tasks
def poly_task():
    x, y = baselines.poly_data()
    steps = 2000
    return {
        "numpy": lambda: (steps, baselines.poly_numpy(x, y, steps, 1e-3)),
        "specgrad": lambda: specgrad_poly(BENCH / "specs" / "poly.yaml"),
        "torch": lambda: (steps, baselines.poly_torch(x, y, steps, 1e-3)),
    }, {
        "numpy": lambda: baselines.poly_numpy(x, y, 10, 1e-3),
        "torch": lambda: baselines.poly_torch(x, y, 10, 1e-3),
    }


def mlp_task(name, X, y, Xt, yt, sizes, epochs, bs):
    spec = BENCH / "specs" / f"{name}.yaml"
    steps = epochs * -(-len(X) // bs)
    return {
        "numpy": lambda: baselines.mlp_numpy(X, y, Xt, yt, sizes, epochs, bs, 1e-3)[0],
        "specgrad": lambda: specgrad_mlp(spec, X, y),
        "torch": lambda: baselines.mlp_torch(X, y, Xt, yt, sizes, epochs, bs, 1e-3)[0],
        "bound": lambda: blas_bound(spec_products(spec, bs), np.float32, steps),
    }, {
        "numpy": lambda: baselines.mlp_numpy(X[:bs], y[:bs], Xt, yt, sizes, 1, bs, 1e-3),
        "specgrad": lambda: specgrad_mlp(spec, X[:bs], y[:bs]),
        "torch": lambda: baselines.mlp_torch(X[:bs], y[:bs], Xt, yt, sizes, 1, bs, 1e-3),
    }


def digits_task():
    X, y, Xt, yt = baselines.digits_data()
    return mlp_task("digits", X, y, Xt, yt, [64, 128, 128, 10], 20, 64)


def wide_task():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((4096, 784)).astype(np.float32)
    y = rng.integers(0, 10, 4096)
    return mlp_task("wide", X, y, X[:512], y[:512], [784, 512, 512, 10], 2, 256)


TASKS = {"poly": poly_task, "digits": digits_task, "wide": wide_task}


def peak_memory(fn) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def worker(task: str, fw: str, memory: bool) -> dict:
    """One framework on one task in this (fresh) process: warm up, run the loop once, time it."""
    loops, warmups = TASKS[task]()
    loop = loops[fw]
    if fw == "bound":  # the products alone: the loop times itself (its best thread count)
        steps, seconds, threads = loop()
        return {"steps": steps, "seconds": seconds, "threads": threads}
    if fw == "specgrad":  # specgrad's entries prepare (load the spec, write data), return the run
        warmups.get(fw, loop)()()
        loop = loop()
    else:
        warmups.get(fw, loop)()
    if memory:  # the baselines get their data from outside; so is it counted for specgrad
        return {"peak_bytes": peak_memory(loop) - getattr(loop, "loads_bytes", 0)}
    t0 = time.perf_counter()
    result = loop()
    seconds = time.perf_counter() - t0
    if fw == "specgrad":  # the loop's own time (the trainer's hooks), and the whole run's
        steps, seconds, run_seconds = result
        return {"steps": steps, "seconds": seconds, "run_seconds": run_seconds}
    steps = result[0] if isinstance(result, tuple) else result
    return {"steps": steps, "seconds": seconds}


THREAD_VARS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def in_worker(task, fw, threads=None, memory=False) -> dict:
    """Each run in its own process, so no framework's thread pools or allocator state affect another's."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", task, fw] + (["--memory"] if memory else [])
    env = {**os.environ, **({v: str(threads) for v in THREAD_VARS} if threads else {})}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{task}/{fw} failed:\n{done.stderr}")
    for line in done.stderr.splitlines():
        if line.startswith("note:"):
            print(line, file=sys.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def run_task(name, repeat, frameworks, threads, busy=False):
    """Interleaved rounds of every framework; with ``busy``, each round twice, quiet then beside one competing
    CPU-bound process, so that both sets of ratios come from the same minutes."""
    frameworks = [fw for fw in frameworks if fw != "bound" or name != "poly"]  # poly has no BLAS product
    moods = ("quiet", "busy") if busy else ("quiet",)
    rates = {mood: {fw: [] for fw in frameworks} for mood in moods}
    whole_run, bound_threads = [], []
    for _ in range(repeat):  # interleaved, so that a busy machine slows all of them alike
        for mood in moods:
            with competing_process(mood == "busy"):
                for fw in frameworks:
                    r = in_worker(name, fw, threads)
                    rates[mood][fw].append(r["steps"] / r["seconds"])
                    if "run_seconds" in r and mood == "quiet":
                        whole_run.append(r["steps"] / r["run_seconds"])
                    if "threads" in r and mood == "quiet":
                        bound_threads.append(r["threads"])
    out = {
        fw: {"steps_per_s": round(statistics.median(r), 1), "runs": [round(x, 1) for x in r]}
        for fw, r in rates["quiet"].items()
    }
    # with the final checkpoint, which the loops above do not write
    out["specgrad"]["whole_run_steps_per_s"] = round(statistics.median(whole_run), 1)
    if bound_threads:
        out["bound"]["threads"] = bound_threads
    for fw in ("numpy", "specgrad"):
        out[fw]["peak_mb"] = round(in_worker(name, fw, threads, memory=True)["peak_bytes"] / 2**20, 2)
    out["ratios"] = round_ratios(rates["quiet"], frameworks)
    if busy:
        out["busy"] = {
            fw: {"steps_per_s": round(statistics.median(r), 1), "runs": [round(x, 1) for x in r]}
            for fw, r in rates["busy"].items()
        }
        out["busy"]["ratios"] = round_ratios(rates["busy"], frameworks)
    return out


def round_ratios(rates, frameworks) -> dict:
    """specgrad over each other framework: the ratio of each round (runs moments apart), then the median,
    steadier than a ratio of medians."""
    return {
        f"specgrad/{fw}": round(statistics.median(a / b for a, b in zip(rates["specgrad"], rates[fw])), 2)
        for fw in frameworks
        if fw != "specgrad"
    }


@contextmanager
def competing_process(on: bool):
    """One CPU-bound process beside the measurement (``--busy``): another user's job on the same machine."""
    if not on:
        yield
        return
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.2)  # running before the measurement starts
        yield
    finally:
        hog.kill()
        hog.wait()


# ------------------------------------------------------------------------------------ whole processes
def process_seconds(args, repeat) -> dict:
    """Median wall-clock and CPU (user + system) seconds of a whole ``specgrad`` process. CPU time is the
    steadier figure on a machine that other jobs keep busy."""
    wall, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(repeat):
            extra = ["--run-dir", str(Path(tmp) / f"run{i}")] if args[0] == "train" else []
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-m", "specgrad.cli", *args, *extra], cwd=ROOT, capture_output=True, text=True
            )
            wall.append(time.perf_counter() - t0)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
            if done.returncode != 0:
                raise SystemExit(f"specgrad {' '.join(args)} failed:\n{done.stderr}")
    return {"wall": round(statistics.median(wall), 3), "cpu": round(statistics.median(cpu), 3)}


def heavy_imports(code_or_args) -> list[str]:
    """Top-level heavy packages a fresh interpreter imports for ``code_or_args``."""
    cmd = [sys.executable, "-X", "importtime", *code_or_args]
    err = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True).stderr
    names = {line.split("|")[-1].strip().split(".")[0] for line in err.splitlines() if line.startswith("import time:")}
    return sorted(names & set(HEAVY))


def blas() -> list[dict]:
    """The BLAS libraries numpy loaded here (threadpoolctl, when installed): which kernel runs, how many
    threads. This machine may set OPENBLAS_CORETYPE, which forces an older kernel on OpenBLAS."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return []
    return [
        {k: info.get(k) for k in ("internal_api", "architecture", "num_threads", "version")}
        for info in threadpool_info()
    ]


def commit() -> str:
    done = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    return done.stdout.strip() + ("+dirty" if dirty else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="poly,digits,wide")
    parser.add_argument("--repeat", type=int, default=5, help="interleaved runs per framework (median)")
    parser.add_argument("--no-torch", action="store_true")
    parser.add_argument(
        "--threads",
        type=int,
        help="BLAS/OpenMP threads for every framework (default: theirs); "
        "1 gives steadier figures on a machine that other jobs keep busy",
    )
    parser.add_argument(
        "--busy",
        action="store_true",
        help="run every round twice: quiet, then beside one "
        "competing CPU-bound process; prints both sets of ratios and busy / quiet",
    )
    parser.add_argument(
        "--record",
        action="store_true",
        help="append the results as one JSON line to --results (nothing is written without it)",
    )
    parser.add_argument("--results", default=str(BENCH / "results.jsonl"), help="where --record appends")
    parser.add_argument("--worker", nargs=2, metavar=("TASK", "FRAMEWORK"), help=argparse.SUPPRESS)
    parser.add_argument("--memory", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(*args.worker, args.memory)))
        return

    frameworks = ["numpy", "specgrad"]
    torch_version = None
    if not args.no_torch:
        done = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.__version__)"], capture_output=True, text=True
        )
        if done.returncode == 0:
            frameworks.append("torch")
            torch_version = done.stdout.strip()
    frameworks.append("bound")  # the step's matrix products alone (MLP tasks): the BLAS bound
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": commit(),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "numpy": np.__version__,
            "torch": torch_version,
        },
        "repeat": args.repeat,
        "threads": args.threads,
        "busy": args.busy,
        "load_avg": os.getloadavg()[0],
        "blas": blas(),
        "openblas_env": {v: os.environ[v] for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if v in os.environ},
        "tasks": {},
    }
    for lib in record["blas"]:
        print(
            f"BLAS: {lib['internal_api']} {lib['version']}, {lib['architecture']} kernel, "
            f"{lib['num_threads']} threads by default"
        )
    if record["openblas_env"]:
        print(
            f"note: {', '.join(f'{k}={v}' for k, v in record['openblas_env'].items())} is set; to benchmark "
            "numpy's own kernel, run this command under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`"
        )
    for name in args.tasks.split(","):
        record["tasks"][name] = res = run_task(name, args.repeat, frameworks, args.threads, args.busy)
        line = "  ".join(f"{fw} {res[fw]['steps_per_s']:>9,.1f}/s" for fw in frameworks if fw in res)
        mem = "  ".join(f"{fw} {res[fw]['peak_mb']} MB" for fw in ("numpy", "specgrad"))
        print(
            f"{name:7s} {line}   {'  '.join(f'{k} {v}x' for k, v in res['ratios'].items())}   peak: {mem}   "
            f"(specgrad's whole run, final checkpoint included: {res['specgrad']['whole_run_steps_per_s']:,.1f}/s)",
            flush=True,
        )
        if args.busy:
            busy = res["busy"]
            kept = "  ".join(f"{k} {v}x ({v / res['ratios'][k]:.2f} of quiet)" for k, v in busy["ratios"].items())
            line = "  ".join(f"{fw} {busy[fw]['steps_per_s']:>9,.1f}/s" for fw in frameworks if fw in busy)
            print(f"{'  busy':7s} {line}   {kept}", flush=True)
    record["process_s"] = {
        "train models/poly.yaml": process_seconds(["train", "models/poly.yaml", "--quiet"], args.repeat),
        "validate models/": process_seconds(["validate", "models/"], args.repeat),
    }
    record["heavy_imports"] = {
        "import specgrad": heavy_imports(["-c", "import specgrad"]),
        "specgrad --help": heavy_imports(["-m", "specgrad.cli", "--help"]),
    }
    for k, v in record["process_s"].items():
        print(f"specgrad {k}: {v['wall']} s wall, {v['cpu']} s CPU (whole process, median of {args.repeat})")
    for k, v in record["heavy_imports"].items():
        print(f"{k} imports: {', '.join(v) or 'nothing heavy'}")
    if not args.record:
        print("not recorded (add --record to append these results to benchmarks/results.jsonl)")
        return
    with open(args.results, "a") as f:
        f.write(json.dumps(record) + "\n")
    print(f"appended to {args.results}")


if __name__ == "__main__":
    main()
