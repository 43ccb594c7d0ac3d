"""Crash-safe, pickle-free checkpoints.

Layout under a checkpoint root::

    root/step-00000500/arrays.npz     # .npy members in an uncompressed zip (np.savez format)
    root/step-00000500/state.json     # everything that is not an array, RNG state included
    root/step-00000500/manifest.json  # {"format": 1, "step": 500, "files": {name: sha256}}
    root/latest                       # "step-00000500\\n": the newest complete checkpoint

A training run keeps its checkpoints in ``<run dir>/checkpoints`` (:func:`checkpoints_dir`), and the keys of
``arrays.npz`` say what each array is (:class:`TrainingArrays` packs and unpacks them)::

    params/<name>     # a trainable parameter
    optim/<name>      # the optimizer's state ("optim/t", "optim/m/<param>", ...)
    state/<name>      # non-trainable model state (batchnorm's running statistics)
    order             # the batch order of the current epoch

This module is the only place these names are spelled: the trainer, evaluation, export and the tests use
its helpers, so the layout can never drift between a writer and a reader.

Why it is built this way:

* No pickle anywhere, so loading a checkpoint can never execute code: arrays are read with
  ``allow_pickle=False`` and object arrays are refused; everything else is JSON.
* A checkpoint is assembled in ``root/.tmp-<name>-<pid>``, every file and the folder are fsynced,
  the manifest is written last and the folder is renamed into place.  A folder named
  ``step-*`` with a manifest is therefore complete; anything else is debris from a killed
  writer, ignored by readers and swept by the next save.
* The manifest's sha256 sums are checked on load, so a damaged file is reported by name instead
  of producing garbage weights, and :func:`latest_checkpoint` falls back to an older good
  checkpoint (with a warning) rather than letting training silently restart from step 0.
* Every failure surfaces as :class:`CheckpointError` naming the folder, the file and the problem,
  so callers need exactly one ``except``.
* A checkpoint may come from untrusted hands (copied between machines), so loading is bounded: only
  regular files are opened, never through a symlink (a ``latest`` pointing at /dev/zero or a FIFO is
  refused, not read); JSON files have a size cap; every ``.npy`` member is checked from its zip and npy
  headers -- stored uncompressed, a plain numeric dtype, and, when the caller says what the model
  expects (:class:`Expected`), exactly that shape and dtype -- before a byte of its data is read.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import shutil
import stat
import warnings
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specgrad.base.fileio import open_regular, own_dir, parse_json, read_regular, why_refused, write_durably, write_npz

__all__ = [
    "Checkpoint",
    "CheckpointError",
    "Expected",
    "FORMAT_VERSION",
    "TrainingArrays",
    "checkpoint_dir",
    "checkpoints_dir",
    "expected_arrays",
    "optim_key",
    "param_key",
    "state_key",
    "latest_checkpoint",
    "list_checkpoints",
    "load_checkpoint",
    "prune_checkpoints",
    "save_checkpoint",
]

FORMAT_VERSION = 1
ARRAYS_FILE = "arrays.npz"
STATE_FILE = "state.json"
MANIFEST_FILE = "manifest.json"
LATEST_FILE = "latest"
CHECKPOINTS_DIR = "checkpoints"  # a run directory's checkpoint root
ORDER_KEY = "order"
_PARAMS, _OPTIM, _STATE = "params/", "optim/", "state/"

_STEP_DIR = re.compile(r"step-(\d{8,})")
# Debris of a killed (or failed) writer: ".tmp-step-00000500-1234", ".old-step-00000500-1234".
_DEBRIS_DIR = re.compile(r"\.(?:tmp|old)-step-\d{8,}-(\d+)")
_DEBRIS_LATEST = re.compile(r"\.latest-(\d+)\.tmp")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20
# Caps on what a loader reads from files that are small by construction; a larger one is damage or hostile.
_LATEST_MAX_BYTES = 4096
_MANIFEST_MAX_BYTES = 1 << 20
_STATE_MAX_BYTES = 64 << 20  # holds the resolved spec, itself capped at 10 MiB as a file
_NPY_HEADER_MAX_BYTES = 1 << 16  # numpy's own limit for a version 1.0 header
_ZIP_ENTRY_OVERHEAD = 1024  # local + central headers, zip64 extras, per member, beyond its name
_NUMERIC_KINDS = "biuf"  # bool, signed, unsigned, float: all a checkpoint ever holds


class CheckpointError(Exception):
    """A checkpoint that cannot be written or loaded; the message names the file and the problem."""


@dataclass(frozen=True)
class Expected:
    """What one array of a checkpoint must be for the model that loads it; ``check`` may look at the values
    (a batch order must be a permutation) and returns the problem, or None. With ``grows``, ``shape`` is the
    largest the array gets and its first dimension may be anything up to that (L-BFGS's history)."""

    shape: tuple[int, ...]  # the largest shape it may have: exact unless ``varies`` says which axes
    dtype: np.dtype
    check: Callable[[np.ndarray], str | None] | None = None
    grows: bool = False

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * np.dtype(self.dtype).itemsize

    def admits(self, shape: tuple[int, ...]) -> bool:
        if not self.grows:
            return tuple(shape) == tuple(self.shape)
        return (
            len(shape) == len(self.shape)
            and 0 <= shape[0] <= self.shape[0]
            and tuple(shape[1:]) == tuple(self.shape[1:])
        )


@dataclass
class Checkpoint:
    """A loaded checkpoint: its folder, step, arrays (keys may contain '/') and JSON state."""

    path: Path
    step: int
    arrays: dict[str, np.ndarray]
    state: dict


def _dir_name(step: int) -> str:
    return f"step-{step:08d}"


def checkpoints_dir(run_dir: Path) -> Path:
    """Where a run directory keeps its checkpoints."""
    return Path(run_dir) / CHECKPOINTS_DIR


def checkpoint_dir(root: Path, step: int) -> Path:
    """The folder of checkpoint ``step`` under the checkpoint root ``root``."""
    return Path(root) / _dir_name(step)


# --------------------------------------------------------------------------- array keys


def param_key(name: str) -> str:
    return _PARAMS + name


def optim_key(name: str) -> str:
    return _OPTIM + name


def state_key(name: str) -> str:
    return _STATE + name


def _section(arrays: Mapping[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    return {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}


@dataclass
class TrainingArrays:
    """The arrays of a training checkpoint, by kind, each a plain name -> array dict; ``order`` is None
    where the checkpoint was read without it (evaluation reads only parameters and model state)."""

    params: dict[str, np.ndarray]
    optim: dict[str, np.ndarray]
    state: dict[str, np.ndarray]
    order: np.ndarray | None = None

    def pack(self) -> dict[str, np.ndarray]:
        """The ``arrays.npz`` keys and arrays that hold these."""
        arrays = {param_key(k): v for k, v in self.params.items()}
        arrays.update({optim_key(k): np.asarray(v) for k, v in self.optim.items()})
        if self.order is not None:
            arrays[ORDER_KEY] = self.order
        arrays.update({state_key(k): v for k, v in self.state.items()})
        return arrays

    @classmethod
    def unpack(cls, arrays: Mapping[str, np.ndarray]) -> TrainingArrays:
        """Sort a checkpoint's arrays by kind; keys of no kind are left out."""
        return cls(_section(arrays, _PARAMS), _section(arrays, _OPTIM), _section(arrays, _STATE), arrays.get(ORDER_KEY))


def _described(value) -> Expected:
    """The shape and dtype of an array, or of anything that declares them (a graph node)."""
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        value = np.asarray(value)
    return Expected(tuple(value.shape), np.dtype(value.dtype))


def expected_arrays(
    params: Mapping,
    state: Mapping,
    optim: Mapping | None = None,
    order: Expected | None = None,
    optim_limits: Mapping[str, tuple[int, ...]] | None = None,
) -> dict[str, Expected]:
    """What a checkpoint must hold for a model, checked before any of its data is read: ``params`` and
    ``state`` map names to arrays or graph nodes (anything with a shape and a dtype), ``optim`` the
    optimizer's state arrays (None: not read, as in evaluation), ``order`` the batch order, and
    ``optim_limits`` the largest shapes of the optimizer's arrays that grow (``Optimizer.state_limits``)."""
    limits = optim_limits or {}
    expected = {param_key(k): _described(v) for k, v in params.items()}
    for k, v in (optim or {}).items():
        described = _described(v)
        expected[optim_key(k)] = Expected(tuple(limits[k]), described.dtype, grows=True) if k in limits else described
    if order is not None:
        expected[ORDER_KEY] = order
    expected.update({state_key(k): _described(v) for k, v in state.items()})
    return expected


def _step_of(name: str) -> int | None:
    """Step encoded in a canonical checkpoint folder name, else None (so 'step-1' is not one)."""
    match = _STEP_DIR.fullmatch(name)
    if match is None:
        return None
    step = int(match.group(1))
    return step if _dir_name(step) == name else None


# --------------------------------------------------------------------------- durability helpers


def _fsync_dir(path: Path) -> None:
    """Persist a directory's entries (new/renamed files); a no-op where the OS cannot do it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):  # e.g. platforms without directory fds
            return
        raise
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some filesystems refuse fsync on directories; real I/O errors still propagate.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _pid_alive(pid: int) -> bool:
    """Whether another live process could still be writing debris tagged with ``pid``."""
    if pid == os.getpid():
        return False  # our own leftovers: this process is not writing them any more
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # exists but not ours / cannot tell: leave it alone
    except OSError:
        return True
    return True


def _remove_tree_quietly(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _sweep_debris(root: Path) -> None:
    """Delete temp folders/files left by writers that died mid-save (best effort)."""
    try:
        entries = list(os.scandir(root))
    except OSError:
        return
    for entry in entries:
        match = _DEBRIS_DIR.fullmatch(entry.name) or _DEBRIS_LATEST.fullmatch(entry.name)
        if match is None or _pid_alive(int(match.group(1))):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            _remove_tree_quietly(path)
        else:
            try:
                path.unlink()
            except OSError:
                pass


# --------------------------------------------------------------------------- save


def _check_inputs(where: Path, arrays: dict, state: dict) -> tuple[dict[str, np.ndarray], bytes]:
    """Validate before touching the disk so a bad call leaves nothing behind."""
    if not isinstance(arrays, dict):
        raise CheckpointError(f"checkpoint {where}: arrays must be a dict, got {type(arrays).__name__}")
    clean: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        if not isinstance(key, str) or not key or "\x00" in key:
            raise CheckpointError(f"checkpoint {where}: {ARRAYS_FILE}: invalid array key {key!r}")
        if not isinstance(value, (np.ndarray, np.generic)):
            raise CheckpointError(
                f"checkpoint {where}: {ARRAYS_FILE}: {key!r} is {type(value).__name__}, not a numpy array"
            )
        array = np.asarray(value)
        if array.dtype.hasobject:
            raise CheckpointError(f"checkpoint {where}: {ARRAYS_FILE}: {key!r} is an object array (would need pickle)")
        clean[key] = array
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {where}: {STATE_FILE}: state must be a dict, got {type(state).__name__}")
    try:
        # NaN/inf are allowed (a diverged loss must not make saving fail); Python's json reads them back.
        state_text = json.dumps(state, indent=2, sort_keys=True)
    except (TypeError, ValueError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint {where}: {STATE_FILE}: state is not JSON-serialisable ({exc})") from exc
    return clean, (state_text + "\n").encode("utf-8")


def move_into_place(tmp: Path, final: Path) -> None:
    """Publish a checkpoint written in ``tmp`` as ``final`` by renaming it; an existing ``final`` is moved aside
    first and restored on failure."""
    if not final.exists():
        os.replace(tmp, final)
        return
    aside = final.with_name(f".old-{final.name}-{os.getpid()}")
    _remove_tree_quietly(aside)
    os.replace(final, aside)
    try:
        os.replace(tmp, final)
    except OSError:
        try:
            os.replace(aside, final)  # put the previous good checkpoint back
        except OSError:
            pass
        raise
    _fsync_dir(final.parent)
    _remove_tree_quietly(aside)


def _write_latest(root: Path, name: str) -> None:
    tmp = root / f".latest-{os.getpid()}.tmp"
    try:
        write_durably(tmp, (name + "\n").encode("ascii"))
        os.replace(tmp, root / LATEST_FILE)
    except OSError:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    _fsync_dir(root)


def save_checkpoint(root: Path, step: int, arrays: dict[str, np.ndarray], state: dict) -> Path:
    """Atomically write checkpoint ``step`` under ``root`` and point ``root/latest`` at it.

    Returns the final folder.  On any failure raises :class:`CheckpointError`; previously completed
    checkpoints (including an older one of the same step) are left intact and loadable.
    """
    root = Path(root)
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise CheckpointError(f"checkpoint root {root}: step must be a non-negative int, got {step!r}")
    step = int(step)
    name = _dir_name(step)
    final = root / name
    clean, state_bytes = _check_inputs(final, arrays, state)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    stage = "create folder"
    try:
        own_dir(root)  # never through a link planted in the run directory
        _sweep_debris(root)
        _remove_tree_quietly(tmp)
        tmp.mkdir()
        stage = f"write {ARRAYS_FILE}"
        write_npz(tmp / ARRAYS_FILE, clean)
        stage = f"write {STATE_FILE}"
        write_durably(tmp / STATE_FILE, state_bytes)
        stage = f"write {MANIFEST_FILE}"
        _fsync_dir(tmp)
        manifest = {
            "format": FORMAT_VERSION,
            "step": step,
            "files": {fname: _sha256_of(tmp / fname) for fname in (ARRAYS_FILE, STATE_FILE)},
        }
        # The manifest goes last: its presence is what marks the folder complete.
        write_durably(tmp / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
        _fsync_dir(tmp)
        stage = "move into place"
        move_into_place(tmp, final)
        _fsync_dir(root)
        stage = f"update {root / LATEST_FILE}"
        _write_latest(root, name)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {final}: cannot {stage}: {exc}") from exc
    except (ValueError, TypeError) as exc:  # e.g. numpy refusing an exotic dtype
        raise CheckpointError(f"checkpoint {final}: cannot {stage}: {exc}") from exc
    finally:
        _remove_tree_quietly(tmp)  # no-op after a successful rename
    return final


# --------------------------------------------------------------------------- load


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"checkpoint {path}: {problem}")


def _is_real_dir(path: Path) -> bool:
    """A directory, not a symlink to one (a planted link could point anywhere on the machine)."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _read_manifest(path: Path) -> tuple[int, dict[str, str]]:
    manifest_path = path / MANIFEST_FILE
    try:
        raw = read_regular(manifest_path, _MANIFEST_MAX_BYTES)
    except FileNotFoundError:
        raise _fail(path, f"{MANIFEST_FILE}: missing (incomplete or damaged checkpoint)") from None
    except OSError as exc:
        raise _fail(path, f"{MANIFEST_FILE}: {why_refused(exc)}") from exc
    except ValueError as exc:
        raise _fail(path, f"{MANIFEST_FILE}: {exc} (damaged)") from exc
    try:
        manifest = parse_json(raw)
    except ValueError as exc:
        raise _fail(path, f"{MANIFEST_FILE}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise _fail(path, f"{MANIFEST_FILE}: not a JSON object")
    if manifest.get("format") != FORMAT_VERSION:
        raise _fail(path, f"{MANIFEST_FILE}: unsupported format {manifest.get('format')!r}")
    step = manifest.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise _fail(path, f"{MANIFEST_FILE}: bad step {step!r}")
    named_step = _step_of(path.name)
    if named_step is not None and named_step != step:
        raise _fail(path, f"{MANIFEST_FILE}: step {step} does not match folder name")
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise _fail(path, f"{MANIFEST_FILE}: 'files' is not an object")
    for fname, digest in files.items():
        if fname in ("", ".", "..") or Path(fname).name != fname or "\\" in fname:
            raise _fail(path, f"{MANIFEST_FILE}: unsafe file name {fname!r}")
        if not isinstance(digest, str) or _SHA256_HEX.fullmatch(digest) is None:
            raise _fail(path, f"{MANIFEST_FILE}: bad sha256 for {fname}")
    for required in (ARRAYS_FILE, STATE_FILE):
        if required not in files:
            raise _fail(path, f"{MANIFEST_FILE}: does not list {required}")
    return step, files


def _verify_files(path: Path, files: dict[str, str], limits: dict[str, int]) -> None:
    """Each listed file is a regular file within its size limit whose sha256 is the manifest's."""
    for fname, expected in files.items():
        try:
            fd = open_regular(path / fname)
        except FileNotFoundError:
            raise _fail(path, f"{fname}: missing") from None
        except OSError as exc:
            raise _fail(path, f"{fname}: {why_refused(exc)}") from exc
        with os.fdopen(fd, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            limit = limits.get(fname, _STATE_MAX_BYTES)
            if size > limit:
                raise _fail(path, f"{fname}: {size} bytes, more than the {limit} this model's checkpoint can take")
            digest = hashlib.sha256()
            try:
                while chunk := f.read(_CHUNK):
                    digest.update(chunk)
            except OSError as exc:
                raise _fail(path, f"{fname}: unreadable ({exc})") from exc
        if digest.hexdigest() != expected:
            raise _fail(path, f"{fname}: sha256 mismatch (file damaged)")


def _read_member(path: Path, zf: zipfile.ZipFile, info: zipfile.ZipInfo, expected: Expected | None) -> np.ndarray:
    """Read one ``.npy`` member, after its zip entry and npy header have been checked: nothing is decompressed
    and nothing is allocated for an array that is not what it should be."""
    name = f"{ARRAYS_FILE}: {info.filename!r}"
    if info.compress_type != zipfile.ZIP_STORED:
        # specgrad never compresses; a deflated member is how a 2 MB file becomes gigabytes in memory
        raise _fail(path, f"{name} is compressed (refused: checkpoints are stored uncompressed)")
    if expected is not None and info.file_size > expected.nbytes + _NPY_HEADER_MAX_BYTES:
        raise _fail(path, f"{name}: {info.file_size} bytes, but {_show(expected)} takes {expected.nbytes}")
    with zf.open(info) as member:
        version = np.lib.format.read_magic(member)
        if version not in ((1, 0), (2, 0)):
            raise _fail(path, f"{name}: unsupported npy format version {version}")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, _fortran, dtype = read_header(member)
        if dtype.hasobject:
            raise _fail(path, f"{name} is an object array (pickle refused)")
        if dtype.kind not in _NUMERIC_KINDS or dtype.fields is not None or dtype.subdtype is not None:
            raise _fail(path, f"{name} has dtype {dtype.str!r} (refused: only plain numbers are stored)")
        if expected is not None and (not expected.admits(tuple(shape)) or dtype != np.dtype(expected.dtype)):
            raise _fail(path, f"{name} is {_show(Expected(tuple(shape), dtype))}; this model expects {_show(expected)}")
        if info.file_size - member.tell() != math.prod(shape) * dtype.itemsize:
            raise _fail(path, f"{name}: data size does not match its header")
        # Re-read from the start: read_array parses the header itself.
        member.seek(0)
        array = np.lib.format.read_array(member, allow_pickle=False)
    problem = expected.check(array) if expected is not None and expected.check is not None else None
    if problem is not None:
        raise _fail(path, f"{name}: {problem}")
    return array


def _show(expected: Expected) -> str:
    if expected.grows:
        return f"{np.dtype(expected.dtype).name}[up to {expected.shape[0]}, {', '.join(map(str, expected.shape[1:]))}]"
    return f"{np.dtype(expected.dtype).name}{list(expected.shape)}"


def _read_arrays(path: Path, fd: int, expected: dict[str, Expected] | None, partial: bool) -> dict[str, np.ndarray]:
    """Parse ``arrays.npz`` (the format ``np.savez`` writes, read from the open ``fd``), never unpickling.

    Members are read by their exact names with ``np.lib.format.read_array(allow_pickle=False)``
    (what ``np.load`` uses) because ``NpzFile`` lookup is ambiguous for keys such as ``"a"`` and
    ``"a.npy"``.  With ``expected``, every member must be one of them with its shape and dtype, and every
    one must be there; ``partial`` skips (without reading) members not in ``expected``.  Any parser
    exception is turned into :class:`CheckpointError`: a damaged file never leaks another exception type.
    """
    arrays: dict[str, np.ndarray] = {}
    try:
        with os.fdopen(os.dup(fd), "rb") as f, zipfile.ZipFile(f) as zf:
            seen: set[str] = set()
            for info in zf.infolist():
                if not info.filename.endswith(".npy") or info.is_dir():
                    raise _fail(path, f"{ARRAYS_FILE}: unexpected member {info.filename!r}")
                key = info.filename[: -len(".npy")]
                if key in seen:
                    raise _fail(path, f"{ARRAYS_FILE}: duplicate member {info.filename!r}")
                seen.add(key)
                if expected is not None and key not in expected:
                    if partial:
                        continue
                    raise _fail(path, f"{ARRAYS_FILE}: unexpected member {info.filename!r} (not part of this model)")
                arrays[key] = _read_member(path, zf, info, None if expected is None else expected[key])
    except CheckpointError:
        raise
    except Exception as exc:  # zipfile/numpy raise many types on garbage; report them all the same way
        raise _fail(path, f"{ARRAYS_FILE}: not a readable npz archive ({type(exc).__name__}: {exc})") from exc
    missing = sorted(set(expected or ()) - set(arrays))
    if missing:
        raise _fail(
            path,
            f"{ARRAYS_FILE}: has no {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} (this model needs it)",
        )
    return arrays


def _read_state(path: Path) -> dict:
    try:
        state = parse_json(read_regular(path / STATE_FILE, _STATE_MAX_BYTES))
    except OSError as exc:
        raise _fail(path, f"{STATE_FILE}: {why_refused(exc)}") from exc
    except ValueError as exc:
        raise _fail(path, f"{STATE_FILE}: not valid JSON ({exc})") from exc
    if not isinstance(state, dict):
        raise _fail(path, f"{STATE_FILE}: not a JSON object")
    return state


def load_checkpoint(path: Path, expected: dict[str, Expected] | None = None, partial: bool = False) -> Checkpoint:
    """Load and verify one checkpoint folder; any problem raises :class:`CheckpointError`.

    ``expected``: the arrays the loading model needs, by key, with their shapes and dtypes; each member is
    checked against it before its data is read, and arrays.npz may be no larger than they take. Without
    ``partial`` the archive must hold exactly these; with it, other members are skipped unread (``eval``
    needs the parameters, not the optimizer's moments)."""
    path = Path(path)
    if not _is_real_dir(path):
        raise _fail(path, "not a checkpoint folder (missing, not a directory, or a symbolic link)")
    step, files = _read_manifest(path)
    limits = {MANIFEST_FILE: _MANIFEST_MAX_BYTES, STATE_FILE: _STATE_MAX_BYTES}
    if expected is not None and not partial:
        limits[ARRAYS_FILE] = 1024 + sum(
            e.nbytes + _NPY_HEADER_MAX_BYTES + _ZIP_ENTRY_OVERHEAD + 2 * len(k) for k, e in expected.items()
        )
    _verify_files(path, files, limits)
    try:
        fd = open_regular(path / ARRAYS_FILE)
    except OSError as exc:
        raise _fail(path, f"{ARRAYS_FILE}: {why_refused(exc)}") from exc
    try:
        arrays = _read_arrays(path, fd, expected, partial)
    finally:
        os.close(fd)
    state = _read_state(path)
    return Checkpoint(path=path, step=step, arrays=arrays, state=state)


# --------------------------------------------------------------------------- discovery


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders (canonical name + manifest present), ascending by step.

    Completeness is cheap to check here; integrity is verified by :func:`load_checkpoint`.
    """
    root = Path(root)
    try:
        entries = list(os.scandir(root))
    except OSError:
        return []
    found: list[tuple[int, Path]] = []
    for entry in entries:
        step = _step_of(entry.name)
        if step is None or not entry.is_dir(follow_symlinks=False):
            continue
        path = Path(entry.path)
        if (path / MANIFEST_FILE).is_file():
            found.append((step, path))
    return [path for _, path in sorted(found)]


def _read_latest_name(root: Path) -> tuple[str | None, str | None]:
    """The folder name in ``root/latest`` and, if the file is present but unusable, why."""
    try:
        text = read_regular(root / LATEST_FILE, _LATEST_MAX_BYTES).decode("utf-8")
    except FileNotFoundError:
        return None, None
    except OSError as exc:
        return None, why_refused(exc)
    except ValueError as exc:
        return None, f"unreadable ({exc})"
    name = text.strip()
    if _step_of(name) is None:
        return None, f"does not name a checkpoint folder ({name[:80]!r})"
    return name, None


def _default_warn(message: str) -> None:
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def latest_checkpoint(
    root: Path,
    warn: Callable[[str], None] = _default_warn,
    expected: dict[str, Expected] | None = None,
    partial: bool = False,
) -> Checkpoint | None:
    """Load the newest good checkpoint under ``root``, or None if there are none at all.

    Tries the folder named by ``root/latest`` first, then every other complete folder newest
    first; each failure is passed to ``warn`` naming the folder and the problem.  If checkpoints
    exist but none loads, raises :class:`CheckpointError` rather than letting a run restart from 0.
    """
    root = Path(root)
    if os.path.islink(root):
        raise CheckpointError(
            f"checkpoint root {root}: a symbolic link (refused: only folders inside the run directory are read)"
        )
    complete = list_checkpoints(root)
    candidates = list(reversed(complete))
    latest_name, latest_problem = _read_latest_name(root)
    if latest_name is not None:
        named = root / latest_name
        if _is_real_dir(named):
            # Even without a manifest it goes first: its load error is what the user must see.
            candidates = [named] + [p for p in candidates if p.name != latest_name]
        elif os.path.islink(named):
            latest_problem = f"names {latest_name}, a symbolic link (refused: only folders inside the run directory)"
        else:
            latest_problem = f"names {latest_name}, which does not exist"
    if not candidates:
        return None
    if latest_problem is not None:
        warn(f"checkpoint {root / LATEST_FILE}: {latest_problem}; using {candidates[0]}")
    problems: list[str] = []
    for index, path in enumerate(candidates):
        try:
            return load_checkpoint(path, expected, partial)
        except CheckpointError as exc:
            problems.append(str(exc))
            if index + 1 < len(candidates):
                warn(f"{exc}; falling back to {candidates[index + 1]}")
    raise CheckpointError(f"no loadable checkpoint in {root}:\n  " + "\n  ".join(problems))


def checkpoint_at(
    root: Path, step: int, expected: dict[str, Expected] | None = None, partial: bool = False
) -> Checkpoint:
    """Load the checkpoint of ``step`` under ``root`` (checked as ``load_checkpoint`` checks); a CheckpointError
    lists the steps there are if none."""
    path = Path(root) / _dir_name(step)
    if not path.is_dir():
        steps = [_step_of(p.name) for p in list_checkpoints(root)]
        raise CheckpointError(
            f"{root} has no checkpoint of step {step} (it has {', '.join(map(str, steps)) or 'none'})"
        )
    return load_checkpoint(path, expected, partial)


def prune_checkpoints(root: Path, keep: Iterable[Path]) -> None:
    """Delete complete checkpoints not in ``keep``; the one ``root/latest`` names is always kept.

    Each victim is renamed aside before deletion so a half-deleted folder can never look like a
    (damaged) checkpoint.
    """
    root = Path(root)
    keep_set = {Path(p).resolve() for p in keep}
    latest_name, _ = _read_latest_name(root)
    for path in list_checkpoints(root):
        if path.resolve() in keep_set or path.name == latest_name:
            continue
        aside = root / f".old-{path.name}-{os.getpid()}"
        try:
            _remove_tree_quietly(aside)
            os.replace(path, aside)
            shutil.rmtree(aside)
        except OSError as exc:
            raise CheckpointError(f"checkpoint {path}: cannot delete: {exc}") from exc
    try:
        _fsync_dir(root)
    except OSError as exc:
        raise CheckpointError(f"checkpoint root {root}: cannot sync after pruning: {exc}") from exc
