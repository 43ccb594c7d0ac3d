"""How long `specgrad validate models/` takes, as CI runs it: the whole command (interpreter start and
imports included), and the checking alone, in process. Run from the repository root:

    python benchmarks/validate_models.py [RUNS]
"""

import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def wall(args, runs):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(runs=9):
    sys.path.insert(0, str(ROOT))
    from specgrad.spec import check_spec, find_spec_files

    files, _ = find_spec_files([ROOT / "models"])
    check_spec(files[0])  # imports, schema compilation
    start = time.perf_counter()
    for _ in range(runs):
        assert all(check_spec(f)[0] for f in files)
    in_process = (time.perf_counter() - start) / runs
    baseline = wall(["-c", "pass"], runs)
    command = wall(["-m", "specgrad.cli", "validate", "models/"], runs)
    print(f"specgrad validate models/ ({len(files)} specs), median of {runs} runs:")
    print(f"  whole command      {command * 1000:7.1f} ms   (python -c pass alone: {baseline * 1000:.1f} ms)")
    print(f"  checking, in process {in_process * 1000:5.1f} ms")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:]))
