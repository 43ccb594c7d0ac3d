"""Run the specgrad CLI in a subprocess and measure that process's own peak memory: VmHWM of its address space,
read by the child itself as it exits. (ru_maxrss would not do: Linux carries it across fork and exec, so a
child of a large pytest process reports the parent's size.)"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass

_CHILD = """
import atexit, os, resource, runpy, sys
peak_file, limit = os.environ.pop("MEASURE_PEAK_FILE"), int(os.environ.pop("MEASURE_ADDRESS_LIMIT"))
def report():
    with open("/proc/self/status") as status, open(peak_file, "w") as out:
        out.write(next(line.split()[1] for line in status if line.startswith("VmHWM:")))
atexit.register(report)
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
sys.argv = ["specgrad", *sys.argv[1:]]
runpy.run_module("specgrad.cli", run_name="__main__")
"""


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_kib: int  # the child's peak resident memory (VmHWM)


def run_measured(*cli_args, timeout: float = 60, address_limit: int = 0) -> Measured:
    """``specgrad *cli_args``, optionally under an address-space limit (bytes)."""
    with tempfile.TemporaryDirectory() as folder:
        peak_file = os.path.join(folder, "peak")
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "MEASURE_PEAK_FILE": peak_file,
            "MEASURE_ADDRESS_LIMIT": str(address_limit),
        }
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, *map(str, cli_args)],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            check=False,
        )
        with open(peak_file) as f:
            peak = int(f.read())
    return Measured(proc.returncode, proc.stdout, proc.stderr, peak)
