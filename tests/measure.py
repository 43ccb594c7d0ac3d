"""Run a command and measure that one process's peak memory (os.wait4), not RUSAGE_CHILDREN's maximum over
every child this test process ever reaped (which an unrelated child reaped late can raise)."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass


@dataclass
class Measured:
    returncode: int
    stdout: str
    stderr: str
    peak_kib: int          # the child's own ru_maxrss


def run_measured(args, timeout: float = 60, cwd=None) -> Measured:
    """``args`` after the interpreter: ``["-m", "specgrad.cli", "eval", run]`` or ``["-c", code, ...]``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, *map(str, args)], stdout=out, stderr=err, cwd=cwd,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                raise TimeoutError(f"{args} ran past {timeout} s")
            time.sleep(0.01)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Measured(proc.returncode, out.read().decode(errors="replace"), err.read().decode(errors="replace"),
                        usage.ru_maxrss)
