"""The study: one Optuna study in a database, shared by every worker process on every machine. Nothing of
our own coordinates workers -- no scheduler, queue or RPC -- only the database's transactions and the rules
here, which every worker applies:

* A trial's run directory is named by the trial that first ran it (``trial-0003``) and kept in its user
  attributes, so a trial retried after its worker was killed resumes that directory's checkpoints.
* A trial is *orphaned* when its worker died: still RUNNING in the database after a restart of the sweep
  on its own machine (the default SQLite study, which one ``specgrad sweep`` owns at a time), or without a
  heartbeat for ``GRACE_S`` seconds (any storage). An orphan is failed and re-enqueued with the same
  parameters and run directory -- once: the retry is only enqueued where no other trial holds that
  directory.
* The study has ``trials`` *slots*: every trial counts except an orphan (its retry counts instead) and a
  surplus trial (one that two workers' concurrent asks made one too many, failed at once). So trials
  finished are never rerun and nothing is counted twice.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path

from specgrad.base.diagnostics import excerpt
from specgrad.base.fileio import open_own
from specgrad.run.sweep.file import Sweep
from specgrad.run.sweep.options import optuna_module

# A running trial's heartbeat, and how long without one makes it an orphan (the environment variables let a
# test make a machine's death show within seconds)
HEARTBEAT_S = int(os.environ.get("SPECGRAD_SWEEP_HEARTBEAT_S", "5"))
GRACE_S = int(os.environ.get("SPECGRAD_SWEEP_GRACE_S", "30"))
ATTEMPTS = 5
RUN_DIR, ERROR, SURPLUS, RETRY_OF = "run_dir", "error", "surplus", "retry_of"
# The sweep folder's lock that this machine's workers take turns on to ask for trials, and that
# ``specgrad sweep`` holds while it opens the study
ASK_LOCK = ".ask.lock"


def default_dir(sweep: Sweep, root: Path = Path("runs") / "sweeps") -> Path:
    return root / sweep.name


def default_storage(sweep_dir: Path) -> str:
    """The embedded SQLite database in the sweep's folder."""
    return f"sqlite:///{Path(sweep_dir).resolve() / 'study.db'}"


def open_study(sweep: Sweep, storage_url: str):
    """The sweep's study in ``storage_url``, created on first use. Heartbeats let any worker anywhere fail
    and retry the trials of a worker that died."""
    import warnings

    optuna = optuna_module()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats are marked experimental; they are what lets a killed worker's trial be retried
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    storage_url = _with_driver(storage_url)
    # Several machines starting at once race to create the tables and the study; the loser of such a race
    # sees an IntegrityError from the database and simply tries again.
    for attempt in range(ATTEMPTS):
        try:
            _prepare_sqlite(storage_url)
            storage = optuna.storages.RDBStorage(
                storage_url,
                heartbeat_interval=HEARTBEAT_S,
                grace_period=GRACE_S,
                heartbeat_stale_trial_callback=retry_orphan,
                engine_kwargs=_engine_kwargs(storage_url),
            )
            _fast_commits(storage)
            return optuna.create_study(
                study_name=sweep.name,
                storage=storage,
                sampler=sweep.make_sampler(),
                pruner=sweep.make_pruner(),
                direction=sweep.direction,
                load_if_exists=True,
            )
        except ImportError as e:  # a driver for the URL's database (psycopg2 for postgresql://...)
            raise StudyError(f"cannot open {_shown(storage_url)}: {e}") from None
        except Exception as e:  # sqlalchemy's errors: a bad URL, a server that does not answer
            if attempt + 1 == ATTEMPTS or "IntegrityError" not in type(e).__name__ + str(e)[:200]:
                raise StudyError(
                    f"cannot open the study storage {_shown(storage_url)}: {type(e).__name__}: "
                    f"{str(e).splitlines()[0] if str(e) else ''}"
                ) from None
            time.sleep(0.2 * (attempt + 1))


def _with_driver(url: str) -> str:
    """``postgresql://`` with the driver that is installed: SQLAlchemy 2.1 means psycopg (3) by it, 2.0
    psycopg2; either works, so a URL without a driver takes whichever is there."""
    if not url.startswith("postgresql://"):
        return url
    import importlib.util

    for module, dialect in (("psycopg", "psycopg"), ("psycopg2", "psycopg2")):
        if importlib.util.find_spec(module) is not None:
            return f"postgresql+{dialect}://" + url[len("postgresql://") :]
    raise StudyError("a postgresql:// storage needs a driver: pip install psycopg2-binary (or psycopg)")


def _prepare_sqlite(url: str) -> None:
    """Write-ahead logging for a SQLite study (a setting of the file, kept): readers (the progress view)
    never block the workers' writes."""
    if url.startswith("sqlite:///"):
        import sqlite3

        path = url[len("sqlite:///") :]
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        if Path(path).is_symlink():  # SQLite would write wherever a link planted in the sweep's folder points
            raise StudyError(f"{path} is a symbolic link: refused")
        with sqlite3.connect(path, timeout=60) as conn:
            conn.execute("PRAGMA journal_mode=WAL")


def _fast_commits(storage) -> None:
    """SQLite in WAL mode with synchronous=NORMAL commits without an fsync (one at each WAL checkpoint):
    a killed process loses nothing committed -- only a power cut could lose the last commits, never
    consistency -- and a trial's dozen commits stop costing ~15 ms each on a slow disk."""
    if storage.engine.dialect.name != "sqlite":
        return
    from sqlalchemy import event

    def on_connect(conn, record):
        conn.execute("PRAGMA synchronous=NORMAL")

    event.listen(storage.engine, "connect", on_connect)
    storage.engine.dispose()  # connections made before the listener are closed and remade with it


def _engine_kwargs(url: str) -> dict:
    # SQLite: wait for a writer rather than fail at once when several workers tell at the same moment
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}


def _shown(url: str) -> str:
    """The URL without its password."""
    import re

    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


class StudyError(Exception):
    """The study's storage cannot be opened or used; the message says why."""


def trial_states():
    return optuna_module().trial.TrialState


def is_orphan(t) -> bool:
    S = trial_states()
    return t.state == S.FAIL and ERROR not in t.user_attrs and SURPLUS not in t.user_attrs


def takes_slot(t) -> bool:
    S = trial_states()
    return t.state != S.FAIL or (ERROR in t.user_attrs and SURPLUS not in t.user_attrs)


def retry_orphan(study, trial) -> None:
    """Enqueue ``trial`` again with its parameters and run directory, unless a trial already holds it. An
    orphan killed before it recorded its directory gets the name it would have used (and, with a grid
    sampler, keeps its grid point: the retry takes over its system attributes)."""
    if not is_orphan(trial):
        return
    try:
        run_dir = run_dir_of(trial)
    except StudyError:
        return  # a recorded directory that is no trial's: nothing to retry into
    held = any(
        t.user_attrs.get(RUN_DIR) == run_dir and t.state != trial_states().FAIL
        for t in study.get_trials(deepcopy=False)
    )
    if not held:
        study.enqueue_trial(trial.params, user_attrs={RUN_DIR: run_dir, RETRY_OF: trial.number}, skip_if_exists=False)


def run_dir_name(number: int) -> str:
    """A trial's run directory, named by the trial that first runs it."""
    return f"trial-{number:04d}"


def run_dir_of(trial) -> str:
    """The run directory a trial records (a retry names its first run's), else its own name: always one
    ``trial-NNNN`` inside the sweep's folder. A study database may come from anyone (a copied sweep
    folder): a recorded name that is anything else (``/tmp/x``, ``../..``) is refused, never written to."""
    name = trial.user_attrs.get(RUN_DIR)
    if name is None:
        return run_dir_name(trial.number)
    if not isinstance(name, str) or re.fullmatch(r"trial-[0-9]{4,12}", name) is None:
        raise StudyError(f"trial {trial.number} records the run directory {excerpt(str(name))}, not a trial-NNNN here")
    return name


def repair_owned(study) -> int:
    """On a study this process owns alone (the default SQLite study under ``owner_lock``): every RUNNING
    trial is an orphan of a killed sweep. Fail them and enqueue each orphan's retry (also those a kill
    interrupted between the two). Returns the number of trials retried."""
    S = trial_states()
    storage = study._storage
    for t in study.get_trials(deepcopy=False, states=(S.RUNNING,)):
        try:
            storage.set_trial_state_values(t._trial_id, state=S.FAIL)
        except optuna_module().exceptions.UpdateFinishedTrialError:
            pass
    before = len(study.get_trials(deepcopy=False, states=(S.WAITING,)))
    for t in study.get_trials(deepcopy=False, states=(S.FAIL,)):
        retry_orphan(study, t)
    return len(study.get_trials(deepcopy=False, states=(S.WAITING,))) - before


@contextmanager
def file_lock(path: Path, blocking: bool = True):
    """An exclusive flock on ``path`` (yields whether it was taken); released when the process dies, so a
    SIGKILL never leaves it held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_own(path, os.O_RDWR)  # never through a link planted in the sweep's folder
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            taken = True
        except BlockingIOError:
            taken = False
        yield taken
    finally:
        os.close(fd)


def tally(trials, target: int) -> dict:
    """Counts for the progress view: done, pruned, failed, running, waiting, slots used, best."""
    S = trial_states()
    count = {
        name: sum(t.state == state for t in trials)
        for name, state in (("done", S.COMPLETE), ("pruned", S.PRUNED), ("running", S.RUNNING), ("waiting", S.WAITING))
    }
    count["failed"] = sum(t.state == S.FAIL and ERROR in t.user_attrs for t in trials)
    count["retried"] = sum(is_orphan(t) for t in trials)
    count["slots"] = sum(takes_slot(t) for t in trials)
    count["target"] = target
    return count
