"""``specgrad sweep``: open (or create) the study, retry what a killed sweep left running, start the worker
processes and watch the study until they are done. The workers do the work (specgrad/run/sweep/worker.py);
this process only starts them and reads the database, so the same command run on several machines against
one ``--storage`` is a sweep across machines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from specgrad.base.fileio import open_own
from specgrad.run.sweep.file import Sweep
from specgrad.run.sweep.study import (
    ASK_LOCK,
    ERROR,
    default_dir,
    default_storage,
    file_lock,
    open_study,
    repair_owned,
    run_dir_of,
    tally,
    trial_states,
)

POLL_S = 0.5


@dataclass
class Outcome:
    sweep_dir: Path
    counts: dict
    best: dict | None  # {"number", "value", "params", "run_dir"}
    worker_codes: list[int]
    retried: int  # orphans of a killed sweep, retried on this start


def best_trial(trials, sweep: Sweep, sweep_dir: Path) -> dict | None:
    S = trial_states()
    done = [t for t in trials if t.state == S.COMPLETE and t.value is not None]
    if not done:
        return None
    best = (max if sweep.mode == "max" else min)(done, key=lambda t: t.value)
    return {
        "number": best.number,
        "value": best.value,
        "params": best.params,
        "run_dir": str(sweep_dir / run_dir_of(best)),
    }


def run_sweep(
    sweep: Sweep,
    workers: int | None = None,
    storage: str | None = None,
    sweep_dir: Path | None = None,
    on_update: Callable[[list, dict, dict | None], None] = lambda trials, counts, best: None,
) -> Outcome:
    """Run ``sweep`` to its number of trials with ``workers`` processes here (default: the sweep file's)."""
    sweep_dir = Path(sweep_dir or default_dir(sweep))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    url = storage or default_storage(sweep_dir)
    workers = workers or sweep.workers
    with file_lock(sweep_dir / ".owner.lock", blocking=False) as owner:
        procs: list[subprocess.Popen] = []
        forward: Callable[[], object] = lambda: None
        try:
            # The workers start at once (their imports take as long as opening the study here) and open it
            # when this process lets go of the ask lock: by then it exists, and a killed sweep's trials have
            # been put back.
            with file_lock(sweep_dir / ASK_LOCK):
                procs = _start_workers(sweep, sweep_dir, url, workers)
                forward = _forward_signals(procs)  # from now on SIGTERM reaches the workers
                study = open_study(sweep, url)
                # The default study lives in this folder, and we hold its lock: nobody else runs it, so
                # whatever it shows RUNNING is a killed sweep's, to retry now (other storages wait for the
                # heartbeats to lapse).
                retried = repair_owned(study) if owner and storage is None else 0
            while True:
                trials = study.get_trials(deepcopy=False)
                on_update(trials, tally(trials, sweep.trials), best_trial(trials, sweep, sweep_dir))
                if _wait_all(procs, POLL_S):
                    break
        finally:
            forward()
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                p.wait()
        trials = study.get_trials(deepcopy=False)
        counts = tally(trials, sweep.trials)
        on_update(trials, counts, best_trial(trials, sweep, sweep_dir))
        return Outcome(sweep_dir, counts, best_trial(trials, sweep, sweep_dir), [p.returncode for p in procs], retried)


def _wait_all(procs: list[subprocess.Popen], seconds: float) -> bool:
    """Wait up to ``seconds`` for every worker to exit; True once they all have. Returns as soon as the last
    one exits, so a finished sweep does not wait out a polling interval."""
    deadline = time.monotonic() + seconds
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
    return True


def _start_workers(sweep: Sweep, sweep_dir: Path, url: str, n: int) -> list[subprocess.Popen]:
    env = {
        **os.environ,
        "SPECGRAD_SWEEP_PARENT": str(os.getpid()),
        "PYTHONUNBUFFERED": "1",
    }
    command = [
        sys.executable,
        "-m",
        "specgrad.run.sweep.worker",
        sweep.file,
        "--dir",
        str(sweep_dir),
        "--storage",
        url,
        "--trials",
        str(sweep.trials),
    ]
    # a worker's own errors, if it has any; never through a link or into a FIFO planted in the sweep's folder
    log = os.fdopen(open_own(sweep_dir / "workers.log", os.O_WRONLY | os.O_APPEND), "a", encoding="utf-8")
    try:
        return [subprocess.Popen(command, env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL) for _ in range(n)]
    finally:
        log.close()


def _forward_signals(procs):
    """SIGTERM to the sweep reaches its workers, which checkpoint their trials and stop. (Ctrl-C reaches
    them from the terminal already.) Returns the function that restores the handlers."""

    def handle(signum, frame):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    try:
        previous = signal.signal(signal.SIGTERM, handle)
    except ValueError:  # not the main thread
        return lambda: None
    return lambda: signal.signal(signal.SIGTERM, previous)


def failures(trials) -> list[tuple[int, str]]:
    """(trial number, error) of the trials that failed for a reason of their own."""
    S = trial_states()
    return [(t.number, t.user_attrs[ERROR]) for t in trials if t.state == S.FAIL and ERROR in t.user_attrs]
