"""Data-parallel training over MPI on the "wide" benchmark (benchmarks/specs/wide.yaml: MLP 784-512-512-10,
float32, batches of 256, random data), measured three ways on this machine:

    1 process x 1 BLAS thread      the baseline
    1 process x 2 BLAS threads     the same cores used by threads instead of processes
    2 processes x 1 BLAS thread    mpiexec -n 2: each computes half of every batch, one Allreduce per step

    python benchmarks/distributed.py                  # 3 interleaved rounds, 4 epochs (64 steps) each
    python benchmarks/distributed.py --rounds 5 --epochs 8

Each configuration runs in fresh processes, the configurations taking turns round after round so that a
busy machine slows them alike; the figure is the median steps/s of the training loop (first step to last,
as the trainer's hooks mark them). In the 2-process runs every rank also times its step's Allreduce (which
includes waiting for the slower rank) and, after training, the same Allreduce alone in a loop (the
transport itself). A 1-process run on half batches (128 rows, one thread) splits a step's time into a fixed
part and a part per row, from which docs/distributed.md projects 8 and 64 processes. Two such half-batch
runs side by side, without MPI, are what 2 ranks compute with nothing exchanged: the ceiling of 2 processes
on this machine, printed with the optimizer update's time (every run times it) and the ceiling if that update
were sharded between the ranks (ZeRO stage 1). The machine's load
average is recorded before and after: on a shared machine, read the figures with it. Results are printed
and appended as one JSON line to benchmarks/results.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SPEC = BENCH / "specs" / "wide.yaml"


# ------------------------------------------------------------------------------------------ one process
def worker(data: Path, epochs: int, batch_size: int) -> None:
    """Train wide (under mpiexec: data-parallel); rank 0 prints one JSON line of timings."""
    sys.path.insert(0, str(ROOT))
    from specgrad.run.distributed import connect
    from specgrad.run.trainer import Hooks, Trainer
    from specgrad.spec import load_spec

    comm = connect()
    spec = load_spec(
        SPEC,
        [f"data.path={data}", f"train.epochs={epochs}", f"train.batch_size={batch_size}", "train.log_every=1000"],
        [data.parent],  # the generated data's folder: a root the spec may read from
    )
    marks: dict[str, float] = {}
    hooks = Hooks(
        on_start=lambda start, total: marks.setdefault("start", time.perf_counter()),
        on_step=lambda step, loss: marks.__setitem__("last", time.perf_counter()),
    )
    waited = []
    if comm.size > 1:  # time the step's Allreduce where the trainer calls it
        plain = comm.allreduce

        def timed(buffer):
            t0 = time.perf_counter()
            plain(buffer)
            waited.append(time.perf_counter() - t0)

        comm.allreduce = timed
    run_dir = Path(tempfile.mkdtemp(prefix="specgrad-dist-")) if comm.is_root else None
    run_dir = Path(comm.broadcast_text(str(run_dir)))
    try:
        trainer = Trainer(spec, run_dir / "run", hooks=hooks, comm=comm)
        updates = []  # the optimizer's update, timed where the trainer calls it
        plain_step = trainer.optimizer.step

        def timed_step(*args, **kwargs):
            t0 = time.perf_counter()
            plain_step(*args, **kwargs)
            updates.append(time.perf_counter() - t0)

        trainer.optimizer.step = timed_step
        summary = trainer.run()
        alone, size = _allreduce_alone(comm, run_dir) if comm.size > 1 else (None, None)
    finally:
        if comm.is_root:
            shutil.rmtree(run_dir, ignore_errors=True)
    if comm.is_root:
        steps = summary["steps"]
        seconds = marks["last"] - marks["start"]
        print(
            json.dumps(
                {
                    "steps": steps,
                    "seconds": seconds,
                    "steps_per_s": (steps - 1) / seconds,
                    "allreduce_in_step_ms": 1e3 * statistics.median(waited) if waited else None,
                    "allreduce_alone_ms": alone,
                    "allreduce_bytes": size,
                    "update_ms": 1e3 * statistics.median(updates),
                }
            )
        )


def _allreduce_alone(comm, run_dir) -> tuple[float, int]:
    """Median ms of the step's Allreduce (same size, the gradients and a few scalars), ranks in step."""
    params = 784 * 512 + 512 + 512 * 512 + 512 + 512 * 10 + 10
    buffer = np.zeros(params + 3, np.float32)
    times = []
    for _ in range(30):
        comm.comm.Barrier()
        t0 = time.perf_counter()
        comm.allreduce(buffer)
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times[5:]), buffer.nbytes


# ------------------------------------------------------------------------------------------- the driver
def _mpiexec() -> str:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.is_file() else (shutil.which("mpiexec") or "mpiexec")


def launch(processes: int, threads: int, data: Path, epochs: int, batch_size: int = 256, beside: int = 1) -> dict:
    """One run (under mpiexec for several processes); with ``beside`` > 1, that many identical one-process runs
    at once, side by side and exchanging nothing: the median of their results."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
    }
    command = [
        sys.executable,
        __file__,
        "--worker",
        str(data),
        "--epochs",
        str(epochs),
        "--batch-size",
        str(batch_size),
    ]
    if processes > 1:
        command = [_mpiexec(), "-n", str(processes), *command]
    started = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(beside)
    ]
    results = []
    for process in started:
        out, err = process.communicate(timeout=1800)
        if process.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{err[-2000:]}")
        results.append(json.loads(out.strip().splitlines()[-1]))
    if beside == 1:
        return results[0]
    return {key: statistics.median(r[key] for r in results) for key in ("steps_per_s", "update_ms")}


CONFIGS = {"1 process x 1 thread": (1, 1), "1 process x 2 threads": (1, 2), "2 processes x 1 thread": (2, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, default=256, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.epochs, args.batch_size)

    folder = Path(tempfile.mkdtemp(prefix="specgrad-dist-data-"))
    try:
        rng = np.random.default_rng(1)  # benchmarks/run.py's wide data
        np.savez(
            folder / "wide.npz", x=rng.standard_normal((4096, 784)).astype(np.float32), y=rng.integers(0, 10, 4096)
        )
        load_before = os.getloadavg()
        runs: dict[str, list[dict]] = {name: [] for name in CONFIGS}
        halves, side_by_side = [], []
        for r in range(args.rounds):
            for name, (processes, threads) in CONFIGS.items():
                runs[name].append(launch(processes, threads, folder / "wide.npz", args.epochs))
                print(f"round {r + 1}: {name}: {runs[name][-1]['steps_per_s']:.2f} steps/s", flush=True)
            halves.append(launch(1, 1, folder / "wide.npz", args.epochs, batch_size=128))
            side_by_side.append(launch(1, 1, folder / "wide.npz", args.epochs, batch_size=128, beside=2))
        load_after = os.getloadavg()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    rate = {name: statistics.median(r["steps_per_s"] for r in results) for name, results in runs.items()}
    base = rate["1 process x 1 thread"]
    two = runs["2 processes x 1 thread"]
    step_ms = 1e3 / base
    half_ms = 1e3 / statistics.median(h["steps_per_s"] for h in halves)
    per_row_ms = (step_ms - half_ms) / 128  # t(rows) = fixed + rows * per_row
    fixed_ms = step_ms - 256 * per_row_ms
    # the ceiling of 2 processes here: each computing its half of every batch, nothing exchanged
    beside_ms = 1e3 / statistics.median(s["steps_per_s"] for s in side_by_side)
    update_ms = statistics.median(r["update_ms"] for r in runs["1 process x 1 thread"])
    alone_ms = statistics.median(r["allreduce_alone_ms"] for r in two)
    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "benchmark": "distributed-wide",
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip(),
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rounds": args.rounds,
        "steps": two[0]["steps"],
        "steps_per_s": rate,
        "speedup_2_processes": rate["2 processes x 1 thread"] / base,
        "speedup_2_threads": rate["1 process x 2 threads"] / base,
        "allreduce_in_step_ms": statistics.median(r["allreduce_in_step_ms"] for r in two),
        "allreduce_alone_ms": statistics.median(r["allreduce_alone_ms"] for r in two),
        "allreduce_bytes": two[0]["allreduce_bytes"],
        "step_ms_1_process": step_ms,
        "step_ms_half_batch": half_ms,
        "step_fixed_ms": fixed_ms,
        "step_per_row_ms": per_row_ms,
        "update_ms": update_ms,
        "step_ms_half_batch_side_by_side": beside_ms,
        "ceiling_2_processes": step_ms / beside_ms,
        # the same, were the update sharded (each updating half) and the Allreduce's time alone added
        "ceiling_2_processes_sharded_update": step_ms / (beside_ms - update_ms / 2 + alone_ms),
    }
    print(json.dumps(result, indent=2))
    with open(BENCH / "results.jsonl", "a", encoding="utf-8") as f:
        f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
