"""Writing files so that a reader never sees half of one: shared by the run directory, the data state and
``predict``. (Checkpoints add fsynced folders and a manifest on top: specgrad/run/checkpoint.py.) And reading
a run directory's small files as untrusted input: regular files only, never through a link, size-capped."""

from __future__ import annotations

import errno
import json
import math
import os
import stat
import zipfile
from pathlib import Path
from typing import Any

import numpy as np


def not_regular(mode: int) -> str | None:
    """What a file that is not a regular file is, for a message; None for a regular file."""
    for test, what in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return what
    return None if stat.S_ISREG(mode) else "not a regular file"


def read_head(path, limit: int) -> bytes | None:
    """The first ``limit`` bytes of ``path`` if it is a regular file, else None. A FIFO or a device is
    refused by ``stat`` before it is opened, and the file is opened non-blocking, so nothing can hang."""
    try:
        if not_regular(os.stat(path).st_mode) is not None:
            return None
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except (OSError, ValueError):
        return None
    with os.fdopen(fd, "rb") as f:
        if not_regular(os.fstat(f.fileno()).st_mode) is not None:
            return None
        return f.read(limit)


MAX_SMALL_FILE = 64 << 20
"""Largest JSON or YAML file of a run directory read whole (summary.json, spec.yaml, trial.json...)."""


class UnreadableFile(OSError):
    """A file that is not a regular file, or larger than a reader accepts; the message names it."""


def read_small_text(path, limit: int = MAX_SMALL_FILE) -> str:
    """The text of ``path``, a regular file of at most ``limit`` bytes reached without following a symbolic
    link (a run directory may come from anyone: a FIFO there must not hang a reader, /dev/zero fill its
    memory, nor a planted link make it read another file). Undecodable bytes are replaced."""
    with os.fdopen(open_regular(path), "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UnreadableFile(f"{path} is larger than {limit} bytes")
    return data.decode("utf-8", errors="replace")


def own_dir(path: Path) -> Path:
    """``path`` as a folder this program writes into, created with its parents if missing; refused (an
    UnreadableFile) when it is a symbolic link or not a folder, as one planted in a run or sweep directory
    would be: everything written inside would land where it points."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        pass  # a link to nothing, or a file: refused below
    if path.is_symlink() or not path.is_dir():
        raise UnreadableFile(f"{path} is {'a symbolic link' if path.is_symlink() else 'not a folder'}: refused")
    return path


def open_own(path: Path, flags: int) -> int:
    """A descriptor of the regular file ``path`` opened with ``flags`` (creating it: 0o644), never through a
    symbolic link and never blocking on a FIFO; UnreadableFile for anything but a regular file."""
    fd = os.open(path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o644)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UnreadableFile(f"{path} is not a regular file: refused")
    os.set_blocking(fd, True)
    return fd


_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed, so identical arrays give byte-identical archives


class WriteError(OSError):
    """Writing a file failed (a full disk, a read-only one...): the message names the file the user knows,
    never a temporary name beside it."""

    def __str__(self) -> str:
        return f"cannot write {self.filename}: {self.strerror}"


def write_error(path: Path, exc: OSError) -> WriteError:
    return WriteError(exc.errno, exc.strerror or str(exc), str(path))


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: written beside it, fsynced, then renamed over it. On failure
    (WriteError naming ``path``) the previous ``path`` is untouched and the temporary file removed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if os.path.lexists(tmp):
            tmp.unlink()  # a leftover of a killed writer with our pid, or something planted there
        # O_EXCL | O_NOFOLLOW: never write through a link someone put in the run directory
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
        with open(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise write_error(path, exc) from None


def write_durably(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` and fsync it (the caller renames it into place)."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays exactly as ``np.savez`` lays them out (an uncompressed zip of ``<key>.npy``), fsynced.

    Written by hand rather than via ``np.savez(path, **arrays)`` because keys such as ``"file"`` collide with
    ``np.savez``'s own parameters, and never with pickle."""
    with open(path, "wb") as f:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, array in arrays.items():
                info = zipfile.ZipInfo(key + ".npy", date_time=_ZIP_DATE)
                info.compress_type = zipfile.ZIP_STORED
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asarray(array), allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())


class ReadError(OSError):
    """A run directory's file that cannot or may not be read; the message names it and says why."""

    def __str__(self) -> str:
        return f"cannot read {self.filename}: {self.strerror}"


def open_regular(path: Path) -> int:
    """A read-only descriptor of ``path`` if it is a regular file reached without following a symlink.

    O_NONBLOCK so that opening a FIFO cannot hang; O_NOFOLLOW so that a planted link to /dev/zero, a device
    or a file outside the run directory is refused instead of read. Raises ReadError (an OSError whose errno
    is ELOOP for a link, EINVAL for anything but a regular file)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise  # callers tell "missing" from "refused"
    except OSError as exc:
        raise ReadError(exc.errno, why_refused(exc), str(path)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ReadError(errno.EINVAL, why_refused(OSError(errno.EINVAL, "")), str(path))
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def json_text(value: Any, indent: int | None = None) -> str:
    """``value`` as strict JSON, what any reader (jq, a browser) parses: a float that is not finite (a
    diverged evaluation's loss) is written as null, where Python's json would write NaN or Infinity."""

    def finite(v: Any) -> Any:
        if isinstance(v, float):
            return v if math.isfinite(v) else None
        if isinstance(v, dict):
            return {k: finite(item) for k, item in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(item) for item in v]
        return v

    try:  # the common case, a value with nothing to replace (a metrics line each step): one pass
        return json.dumps(value, indent=indent, allow_nan=False)
    except ValueError:
        return json.dumps(finite(value), indent=indent, allow_nan=False)


def parse_json(text: str | bytes) -> Any:
    """``json.loads`` for a file anyone may have written (a run directory's): a document nested deeper than
    Python's recursion allows (``[`` x 200,000) is a ValueError, as any other bad JSON, not a RecursionError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def read_regular(path: Path, limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes: OSError as ``open_regular``, ValueError when
    it is larger (only ``limit + 1`` bytes are ever read)."""
    with os.fdopen(open_regular(path), "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit} bytes")
    return data


def why_refused(exc: OSError) -> str:
    """``open_regular``'s refusals in words."""
    if exc.errno == errno.ELOOP:
        return "a symbolic link (refused: only regular files inside the run directory are read)"
    if exc.errno == errno.EINVAL:
        return "not a regular file (refused)"
    return exc.strerror or str(exc)
