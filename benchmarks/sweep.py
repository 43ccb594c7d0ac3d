"""Sweeps: throughput with 2 worker processes against 1, and what a trial costs beyond its own training in a
warm worker.

    python benchmarks/sweep.py [--trials 16] [--steps 6000,24000] [--rounds 3] [--overhead-trials 20] [--record]

Throughput: the same random sweep (a small MLP on synthetic data, every trial the same work) run by
``run_sweep`` with 1 and then 2 workers, each into a fresh folder; trials per second over the whole command,
worker start-up included. It is measured for each trial length that ``--steps`` lists (about 0.7 s and
2.7 s of training a trial here): a sweep pays a fixed cost (starting the workers: Python, numpy, Optuna,
SQLAlchemy; the study's database), which 2 workers cannot halve, so the speedup grows with the work per
trial. The fixed cost is printed beside it: the command's wall time less its trials' training time divided
among the workers. Overhead: one warm worker in this process runs trials of a tiny spec (poly, 20 steps);
a trial's overhead is its wall time from ask to tell minus the seconds its training loop took
(summary.json's ``seconds``): composing and validating the trial's spec, compiling it, preparing the data,
the run directory's files, the final evaluation, and the database. The load average is printed beside the
figures: on a shared machine it says how much the figures can be trusted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(name, "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
)

from specgrad.run.sweep.file import load_sweep
from specgrad.run.sweep.launch import run_sweep

MLP = """\
specgrad: 1
name: bench_mlp
data: {source: synthetic, function: "sin(3*x)", x: {low: -1, high: 1}, n: 512, noise: 0.05, split: {val: 0.25}}
model:
  inputs: {x: []}
  nodes:
    - phi: powers(x, 7)
    - h: {layer: linear, input: phi, units: 128}
    - a: tanh(h)
    - y_hat: {layer: linear, input: a, units: 1}
    - out: reshape(y_hat, [-1])
  output: out
loss: mse
optimizer: {type: adam, lr: 1.0e-3}
train: {steps: STEPS, batch_size: 64}
"""
POLY = (Path(__file__).resolve().parents[1] / "models" / "poly.yaml").read_text()


def sweep_file(folder: Path, spec: str, params: str, trials: int) -> Path:
    (folder / "base.yaml").write_text(spec)
    path = folder / "bench.yaml"
    path.write_text(
        f"sweep: 1\nspec: base.yaml\nparams:\n{params}\nobjective: {{metric: val.loss, mode: min}}\n"
        f"sampler: random\ntrials: {trials}\n"
    )
    return path


def throughput(trials: int, steps: int, workers: int) -> tuple[float, float, float]:
    """(trials per second, cores used by the workers, fixed seconds) of one sweep."""
    with tempfile.TemporaryDirectory() as tmp:
        path = sweep_file(
            Path(tmp), MLP.replace("STEPS", str(steps)), "  optimizer.lr: {float: [1.0e-3, 2.0e-3]}", trials
        )
        t0, c0 = time.perf_counter(), os.times()
        outcome = run_sweep(load_sweep(path), workers=workers, sweep_dir=Path(tmp) / "out")
        seconds, c1 = time.perf_counter() - t0, os.times()
        assert outcome.counts["done"] == trials, outcome.counts
        training = sum(
            json.loads((run / "summary.json").read_text())["seconds"] for run in (Path(tmp) / "out").glob("trial-*")
        )
    cpu = c1.children_user - c0.children_user + c1.children_system - c0.children_system
    return trials / seconds, cpu / seconds, seconds - training / workers


def overhead(trials: int) -> list[float]:
    from specgrad.run.sweep.study import default_storage
    from specgrad.run.sweep.worker import Worker, one_blas_thread

    one_blas_thread()
    with tempfile.TemporaryDirectory() as tmp:
        spec = POLY.replace("steps: 2000", "steps: 1").replace("checkpoint: {every: 500}", "checkpoint: {every: 1}")
        spec = spec.replace("  noise: 0.05", "  noise: 0.05\n  split: {val: 0.2}")
        path = sweep_file(Path(tmp), spec, "  optimizer.lr: {float: [1.0e-4, 1.0e-3]}", trials + 3)
        out = Path(tmp) / "out"
        out.mkdir()
        worker = Worker(load_sweep(path), out, default_storage(out), trials + 3)
        result = []
        for i in range(trials + 3):
            t0, c0 = time.perf_counter(), time.process_time()
            trial = worker.next_trial()
            worker.run_trial(trial)
            total, cpu = time.perf_counter() - t0, time.process_time() - c0
            summary = json.loads((out / f"trial-{trial.number:04d}" / "summary.json").read_text())
            if i >= 3:  # the first trials import and warm everything
                # wall: beyond the training loop; cpu: this process's CPU time beyond the loop's
                # wall time, a lower bound that a loaded machine inflates less
                result.append((total - summary["seconds"], max(cpu - summary["seconds"], 0.0)))
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument(
        "--steps", type=lambda text: [int(x) for x in text.split(",")], default=[6000, 24000], help="trial lengths"
    )
    parser.add_argument("--overhead-trials", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--record", action="store_true", help="append the figures to benchmarks/results.jsonl")
    args = parser.parse_args()
    load = os.getloadavg()
    pairs = overhead(args.overhead_trials)
    costs, cpu = [w for w, _ in pairs], [c for _, c in pairs]
    print(
        f"per-trial overhead in a warm worker: median {1000 * statistics.median(costs):.1f} ms wall "
        f"(min {1000 * min(costs):.1f} ms), CPU beyond the loop median {1000 * statistics.median(cpu):.1f} ms, "
        f"over {len(costs)} trials"
    )
    # 1 and 2 workers take turns, round after round, so that a neighbour's job that comes and goes on a
    # shared machine hits both alike; the median of the rounds' ratios is the figure
    # the cores the workers actually got (their CPU seconds per wall second) say whether a shortfall is the
    # sweep's or the machine's
    speedups = {}
    for steps in args.steps:
        ratios = []
        for _ in range(args.rounds):
            (one, cores1, fixed1), (two, cores2, fixed2) = (throughput(args.trials, steps, n) for n in (1, 2))
            ratios.append(two / one)
            print(
                f"  {steps} steps a trial: 1 worker {one:.3f} trials/s on {cores1:.2f} cores (fixed {fixed1:.2f} s), "
                f"2 workers {two:.3f} trials/s on {cores2:.2f} cores (fixed {fixed2:.2f} s): {two / one:.2f}x  "
                f"(load {os.getloadavg()[0]:.2f})"
            )
        speedups[steps] = ratios
        print(
            f"throughput, {args.trials} trials of {steps} steps: 2 workers / 1 worker {statistics.median(ratios):.2f}x "
            f"(median of {len(ratios)} rounds)"
        )
    print(
        f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
        + f" on {os.cpu_count()} CPUs"
    )
    record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        "benchmark": "sweep",
        "overhead_ms_median": round(1000 * statistics.median(costs), 2),
        "overhead_ms_min": round(1000 * min(costs), 2),
        "overhead_cpu_ms_median": round(1000 * statistics.median(cpu), 2),
        "trials": args.trials,
        "speedup": {steps: round(statistics.median(r), 3) for steps, r in speedups.items()},
        "speedups": {steps: [round(x, 3) for x in r] for steps, r in speedups.items()},
        "load_avg": load[0],
        "cpus": os.cpu_count(),
    }
    if args.record:
        with open(Path(__file__).resolve().parent / "results.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
