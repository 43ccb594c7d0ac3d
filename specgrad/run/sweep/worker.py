"""A sweep worker: one process, one BLAS thread, kept warm across trials. It asks the study for a trial,
trains it as an ordinary run directory, reports each validation to the pruner, and tells the result --
until the study has its trials. Run by ``specgrad sweep`` (``python -m specgrad.run.sweep.worker``); on several
machines, each machine's ``specgrad sweep`` starts its own workers on the same storage."""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
import threading
import time
from pathlib import Path

from specgrad.base.diagnostics import SpecError
from specgrad.base.fileio import json_text, own_dir, parse_json, read_small_text, write_atomic
from specgrad.run import threads
from specgrad.run.checkpoint import checkpoints_dir, list_checkpoints
from specgrad.run.runlog import metrics_lines, spec_hash
from specgrad.run.sweep.file import Sweep, load_sweep
from specgrad.run.sweep.study import (
    ASK_LOCK,
    ERROR,
    HEARTBEAT_S,
    RETRY_OF,
    RUN_DIR,
    SURPLUS,
    file_lock,
    open_study,
    run_dir_of,
    takes_slot,
    trial_states,
)
from specgrad.run.trainer import Hooks, Trainer
from specgrad.spec import Spec
from specgrad.spec.validate import validate

FINISHED = ("completed", "pruned", "diverged")
# How often a worker with nothing to ask for looks again while other trials still run (one may fail and need
# a retry): often on this machine's own SQLite study, where a look is cheap and the sweep ends at the first
# look after its last trial; once a second on a shared server, which many machines' workers may poll at once
WAIT_S, SERVER_WAIT_S = 0.2, 1.0


def die_with_parent() -> None:
    """Linux: SIGKILL this worker when ``specgrad sweep`` dies, however it dies (even by SIGKILL), so a
    killed sweep leaves no worker training on behind its back."""
    if not sys.platform.startswith("linux") or os.environ.get("SPECGRAD_SWEEP_PARENT") is None:
        return
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != int(os.environ["SPECGRAD_SWEEP_PARENT"]):  # the parent died before prctl
        os._exit(1)


class Worker:
    def __init__(self, sweep: Sweep, sweep_dir: Path, storage_url: str, trials: int):
        self.sweep, self.dir, self.target = sweep, Path(sweep_dir), trials
        with file_lock(self.dir / ASK_LOCK):  # ``specgrad sweep`` holds it until the study is ready
            self.study = open_study(sweep, storage_url)
        self.local = storage_url.startswith("sqlite")

    # ----------------------------------------------------------------- choosing a trial
    def next_trial(self):
        """The next trial to run, or None when the study has all its trials finished or running. Local
        workers take turns (a file lock) so their asks do not race; across machines a surplus trial is
        failed at once."""
        from optuna.storages import fail_stale_trials

        S = trial_states()
        while True:
            with file_lock(self.dir / ASK_LOCK):
                fail_stale_trials(self.study)  # orphans of dead workers anywhere: failed, retried
                trials = self.study.get_trials(deepcopy=False)
                waiting = any(t.state == S.WAITING for t in trials)
                if waiting or sum(takes_slot(t) for t in trials) < self.target:
                    trial = self.study.ask()
                    if trial.user_attrs.get(RETRY_OF) is not None:
                        self._take_over(trial)
                    # SQLite is one machine's: its workers' asks are serialized by the lock, never surplus
                    if not self.local and trial.user_attrs.get(RUN_DIR) is None and self._surplus(trial):
                        continue
                    return trial
                running = any(t.state == S.RUNNING for t in trials)
            if not running:
                return None
            time.sleep(WAIT_S if self.local else SERVER_WAIT_S)  # a running trial may still fail and need a retry

    def _take_over(self, trial) -> None:
        """A retry stands for its orphan in the sampler's bookkeeping too: the grid sampler marks which grid
        point a trial covers in system attributes, which an enqueued trial does not get (and without which
        Optuna's grid sampler fails when the retry is told)."""
        original = self.study._storage.get_trial(
            self.study._storage.get_trial_id_from_study_id_trial_number(
                self.study._study_id, trial.user_attrs[RETRY_OF]
            )
        )
        for key in ("search_space", "grid_id"):
            if key in original.system_attrs:
                self.study._storage.set_trial_system_attr(trial._trial_id, key, original.system_attrs[key])

    def _surplus(self, trial) -> bool:
        earlier = self.study.get_trials(deepcopy=False)
        if sum(takes_slot(t) for t in earlier if t.number < trial.number) < self.target:
            return False
        self.study._storage.set_trial_user_attr(trial._trial_id, SURPLUS, True)
        self._tell(trial, state=trial_states().FAIL)
        return True

    def _tell(self, trial, value=None, state=None) -> None:
        try:
            self.study.tell(trial, value, state=state)
        except RuntimeError as e:
            # the grid sampler calls study.stop() once its grid is covered, which Optuna allows only inside
            # study.optimize; the trial is stored by then (tell stores it in a finally), and our workers stop
            # by counting trials instead
            if "Study.stop" not in str(e):
                raise

    # ----------------------------------------------------------------- running it
    def run_trial(self, trial) -> str:
        """Train one trial in its run directory; returns its final state's name."""
        S = trial_states()
        stop_heartbeat = self._heartbeat(trial)
        self.reported: set[int] = set()  # the steps whose value the pruner has been told
        try:
            assignment = {p.name: p.suggest(trial) for p in self.sweep.params}
            try:
                run_name = run_dir_of(trial)
                if trial.user_attrs.get(RUN_DIR) is None:
                    trial.set_user_attr(RUN_DIR, run_name)
                summary = self._train(trial, assignment, self.dir / run_name)
            except Exception as e:  # a trial's failure is the study's to record; the worker goes on
                message = str(e) if isinstance(e, SpecError) else f"{type(e).__name__}: {e}"
                trial.set_user_attr(ERROR, message[:2000])
                self._tell(trial, state=S.FAIL)
                return "failed"
            status = summary["status"]
            if status == "interrupted":  # SIGTERM: an orphan to retry, not a failure
                self._tell(trial, state=S.FAIL)
                return "interrupted"
            value = summary.get(self.sweep.split, {}).get(self.sweep.metric_name)
            if status == "pruned":
                self._tell(trial, state=S.PRUNED)
                return "pruned"
            if status != "completed" or not isinstance(value, (int, float)) or not math.isfinite(value):
                trial.set_user_attr(ERROR, f"run {status}; {self.sweep.metric} = {value}")
                self._tell(trial, state=S.FAIL)
                return "failed"
            self._tell(trial, float(value))
            return "completed"
        finally:
            stop_heartbeat()

    def _train(self, trial, assignment: dict, run_dir: Path) -> dict:
        """The run's summary: read back when the run already finished (a kill between the end of training
        and the tell), else trained -- resumed from its checkpoints when it has some."""

        doc = self.sweep.compose(assignment)
        diags, model = validate(doc)
        if model is None:
            raise SpecError([d for d in diags if d.severity == "error"])
        spec = Spec(doc, model, diags)
        data = doc.data
        assert isinstance(data, dict)  # validate() built a model from it: a mapping
        summary = _read_summary(run_dir)
        if (
            summary
            and summary.get("status") in FINISHED
            and summary.get("spec_hash") == spec_hash({**data, "seed": data.get("seed", 0)})
        ):
            return summary
        resume = bool(list_checkpoints(checkpoints_dir(run_dir)))
        _write_trial(run_dir, self.sweep, trial, assignment)

        def on_start(start, total):
            # a resumed trial tells the pruner again what its run reported before the checkpoint
            if resume and (run_dir / "metrics.jsonl").exists():
                for _, record in metrics_lines(run_dir / "metrics.jsonl"):
                    if "val" in record and record["step"] <= start:
                        self._report(trial, record["step"], record["val"])

        def on_validation(step, results):
            return self._report(trial, step, results) and trial.should_prune()

        hooks = Hooks(on_start=on_start, on_validation=on_validation)
        return Trainer(spec, run_dir, hooks).run(resume=resume)

    def _report(self, trial, step: int, results: dict) -> bool:
        value = results.get(self.sweep.metric_name)
        if isinstance(value, (int, float)) and math.isfinite(value) and step not in self.reported:
            self.reported.add(step)
            trial.report(float(value), step)
            return True
        return False

    def _heartbeat(self, trial):
        """Record the trial's heartbeat every HEARTBEAT_S seconds, in a thread, until the returned stop."""
        storage, stop = self.study._storage, threading.Event()

        def beat():
            while not stop.is_set():
                try:
                    storage.record_heartbeat(trial._trial_id)
                except Exception:  # a missed beat only risks a retry; never kill the trial for it
                    pass
                stop.wait(HEARTBEAT_S)

        thread = threading.Thread(target=beat, daemon=True)
        thread.start()

        def stop_beating():
            stop.set()
            thread.join()

        return stop_beating

    def loop(self) -> int:
        done = 0
        while (trial := self.next_trial()) is not None:
            done += 1
            if self.run_trial(trial) == "interrupted":  # SIGTERM / Ctrl-C: stop after the checkpoint
                break
        return done


def _read_summary(run_dir: Path) -> dict | None:
    try:
        summary = parse_json(read_small_text(run_dir / "summary.json"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def _write_trial(run_dir: Path, sweep: Sweep, trial, assignment: dict) -> None:
    """trial.json beside the run's files: which study, trial and values made this run directory."""
    own_dir(run_dir)  # never through a link planted in the sweep's folder
    record = {
        "study": sweep.name,
        "sweep": os.path.abspath(sweep.file),
        "trial": trial.number,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "retry_of": trial.user_attrs.get(RETRY_OF),
        "params": assignment,
        "objective": {"metric": sweep.metric, "mode": sweep.mode},
    }
    write_atomic(run_dir / "trial.json", json_text(record, indent=2) + "\n")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m specgrad.run.sweep.worker", description=__doc__)
    parser.add_argument("sweep")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--storage", required=True)
    parser.add_argument("--trials", type=int, required=True)
    args = parser.parse_args(argv)
    die_with_parent()
    # workers share the machine's cores by process: one BLAS thread each (a thread variable the user set
    # still wins: docs/performance.md, "Threads")
    threads.limit(1)
    worker = Worker(load_sweep(args.sweep), Path(args.dir), args.storage, args.trials)
    worker.loop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
