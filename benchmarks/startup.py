"""Start-up: whole ``specgrad`` processes against importing the libraries they are built on, side by side.

    python benchmarks/startup.py                 # 9 interleaved rounds
    python benchmarks/startup.py --explain       # and where the time of `specgrad train models/poly.yaml` goes

Each round runs, one after the other, ``python -c "import numpy, yaml, jsonschema, typer"`` (the baseline),
the same plus ``typer._adapters`` (what typer's parameter coercion imports: pydantic),
``specgrad train models/poly.yaml --quiet`` (2,000 steps, 4 checkpoints) and ``specgrad validate models/``,
each a fresh process; the figure of a command is the median over the rounds of its wall time divided by the
baseline's in the same round (the target is 1.3x at most), with the median wall and CPU times beside it.

Python byte-compiles specgrad's modules once, as an installed package is (pip compiles them at install):
this machine sets PYTHONDONTWRITEBYTECODE=1, under which every process would compile ~70 modules from
source again (``--no-bytecode`` measures that too).
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BASELINE = "import numpy, yaml, jsonschema, typer"
# packages a command imports beyond the baseline's, by top-level name, for --explain
COMMANDS = {
    "baseline": ["-c", BASELINE],
    # what typer's parameter coercion adds to any command with a non-boolean parameter (it imports pydantic;
    # typer 0.29 and later: earlier ones have no such module, and the line is left out)
    "typer_coercion": ["-c", BASELINE + ", typer._adapters"],
    "train": ["-m", "specgrad.cli", "train", "models/poly.yaml", "--quiet", "--run-dir"],
    "validate": ["-m", "specgrad.cli", "validate", "models/"],
}
if importlib.util.find_spec("typer._adapters") is None:
    del COMMANDS["typer_coercion"]


def run_once(args: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed:\n{done.stderr}")
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def measure(rounds: int, env: dict) -> dict:
    times = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(rounds):
            for name, args in COMMANDS.items():
                if name == "train":
                    args = [*args, str(Path(tmp) / f"run{i}")]
                times[name].append(run_once(args, env))
    out = {}
    for name, runs in times.items():
        out[name] = {
            "wall": round(statistics.median(w for w, _ in runs), 3),
            "cpu": round(statistics.median(c for _, c in runs), 3),
        }
        if name != "baseline":
            out[name]["ratio"] = round(statistics.median(w / b for (w, _), (b, _) in zip(runs, times["baseline"])), 2)
            out[name]["cpu_ratio"] = round(
                statistics.median(c / b for (_, c), (_, b) in zip(runs, times["baseline"])), 2
            )
    return out


def import_times(args: list[str], env: dict) -> dict[str, float]:
    """Self import time (ms) by top-level package, from ``python -X importtime``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    totals: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "self [us]" not in line:
            _, self_us, _, name = line.split("|", 1)[0], line.split("|")[0].split(":")[1], None, line.split("|")[-1]
            top = name.strip().split(".")[0]
            totals[top] = totals.get(top, 0.0) + int(self_us) / 1e3
    return totals


PHASES = r"""
import time, sys, tempfile
t = {"start": time.perf_counter()}
from specgrad.spec import load_spec
from specgrad.run.trainer import Trainer
t["imports"] = time.perf_counter()
spec = load_spec("models/poly.yaml", [])
t["load, compose, validate, compile"] = time.perf_counter()
tmp = tempfile.mkdtemp()
trainer = Trainer(spec, tmp + "/run")
t["trainer (data, plan, optimizer)"] = time.perf_counter()
marks = {}
from specgrad.run import checkpoint
save = checkpoint.save_checkpoint
def timed_save(*a, **k):
    s = time.perf_counter(); r = save(*a, **k); marks["ckpt"] = marks.get("ckpt", 0) + time.perf_counter() - s; return r
import specgrad.run.trainer as tr
tr.save_checkpoint = timed_save
trainer.run()
t["run"] = time.perf_counter()
import json
names = list(t)
out = {b: round(1e3 * (t[b] - t[a]), 1) for a, b in zip(names, names[1:])}
out["of which checkpoints (4, fsynced)"] = round(1e3 * marks["ckpt"], 1)
print(json.dumps(out))
"""


def explain(env: dict, rounds: int) -> None:
    base = import_times(COMMANDS["baseline"][:2], env)
    with tempfile.TemporaryDirectory() as tmp:
        train = import_times([*COMMANDS["train"], str(Path(tmp) / "run")], env)
    extra = {k: v - base.get(k, 0.0) for k, v in train.items()}
    shown = sorted(((v, k) for k, v in extra.items() if v > 0.5), reverse=True)
    print("\nimports of `specgrad train models/poly.yaml` beyond the baseline's (self time, ms, one run):")
    for v, k in shown[:12]:
        print(f"  {k:24s} {v:6.1f}")
    print(f"  {'(total)':24s} {sum(v for v in extra.values() if v > 0):6.1f}")
    phases = []
    for _ in range(rounds):
        done = subprocess.run([sys.executable, "-c", PHASES], cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr)
        phases.append(json.loads(done.stdout.splitlines()[-1]))
    print(f"\nphases of the same work in one process (ms, median of {rounds}):")
    for key in phases[0]:
        print(f"  {key:36s} {statistics.median(p[key] for p in phases):7.1f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--explain", action="store_true", help="imports and phases of the train command")
    parser.add_argument("--no-bytecode", action="store_true", help="also measure without compiled bytecode")
    args = parser.parse_args(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    compileall.compile_dir(ROOT / "specgrad", quiet=1)
    record = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "load_avg": os.getloadavg()[0],
        "with_bytecode": measure(args.rounds, env),
    }
    if args.no_bytecode:
        for cache in (ROOT / "specgrad").rglob("__pycache__"):
            shutil.rmtree(cache)
        record["without_bytecode"] = measure(args.rounds, {**env, "PYTHONDONTWRITEBYTECODE": "1"})
        compileall.compile_dir(ROOT / "specgrad", quiet=1)
    record["load_avg_end"] = os.getloadavg()[0]
    for mode in ("with_bytecode", "without_bytecode"):
        if mode not in record:
            continue
        r = record[mode]
        print(
            f"{mode.replace('_', ' ')} (load average {record['load_avg']:.2f} -> {record['load_avg_end']:.2f}, "
            f"{args.rounds} interleaved rounds):"
        )
        base = r["baseline"]
        print(f'  python -c "{BASELINE}" (typer {version("typer")}): {base["wall"]} s wall, {base["cpu"]} s CPU')
        for name, label in (
            ("typer_coercion", "the baseline + typer's coercion (pydantic), no specgrad"),
            ("train", "specgrad train models/poly.yaml"),
            ("validate", "specgrad validate models/"),
        ):
            if name not in r:
                continue
            print(
                f"  {label}: {r[name]['wall']} s wall, {r[name]['cpu']} s CPU; {r[name]['ratio']}x the baseline "
                f"(CPU {r[name]['cpu_ratio']}x; target <= 1.3x)"
            )
    with open(ROOT / "benchmarks" / "results.jsonl", "a") as f:
        f.write(json.dumps({"startup": record}) + "\n")
    if args.explain:
        explain(env, 5)


if __name__ == "__main__":
    main()
