"""One writer per run directory: an OS lock held for the whole of ``specgrad train``.

``flock`` on ``RUN_DIR/.lock`` rather than a "pid file exists" convention, because the kernel drops the
lock when its holder dies, however it dies (SIGKILL included): a killed run never blocks its own resume, and
no stale-lock heuristics are needed. The holder writes its pid, host and start time into the file so that a
second writer's error can say who holds the directory; that text is only ever shown, never trusted.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
from datetime import datetime, timezone
from pathlib import Path

from specgrad.base.fileio import WriteError, parse_json, write_error

LOCK_FILE = ".lock"
_HOLDER_MAX_BYTES = 4096  # the holder's note is a short JSON line; never read more of a planted file


class RunLocked(Exception):
    """Another live process is writing this run directory."""


class RunLock:
    """Context manager: ``with RunLock(run_dir): ...`` holds the directory's lock or raises RunLocked."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / LOCK_FILE
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        # O_NOFOLLOW: a planted symlink (to /dev/zero, to someone else's file) is refused, not locked or truncated
        flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            raise WriteError(e.errno, f"{e.strerror} (the run directory's lock file)", str(self.path)) from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise RunLocked(f"{self.path} is not a regular file; remove it to train into this run directory")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                raise RunLocked(
                    f"the run directory {self.path.parent} is in use by another specgrad train "
                    f"({_describe(_read_holder(fd))}); wait for it to finish or train into another "
                    "--run-dir"
                ) from None
            try:
                _write_holder(fd)
            except OSError as e:  # a full disk: say which file, as for every file of the run
                raise write_error(self.path, e) from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            # the note is left behind: it is harmless, and deleting it would race a writer that just opened it
            os.close(self.fd)  # closing releases the flock
            self.fd = None


def _write_holder(fd: int) -> None:
    note = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(note) + "\n").encode(), 0)


def _read_holder(fd: int) -> dict:
    try:
        note = parse_json(os.pread(fd, _HOLDER_MAX_BYTES, 0))
    except (OSError, ValueError):
        return {}
    return note if isinstance(note, dict) else {}


def _describe(note: dict) -> str:
    def field(key: str) -> str:
        value = note.get(key)
        return str(value)[:64] if isinstance(value, (str, int)) and not isinstance(value, bool) else "unknown"

    return f"pid {field('pid')} on host {field('host')}, started {field('started')}"
