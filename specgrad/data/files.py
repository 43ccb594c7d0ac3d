"""Data read from files: csv (columns by name), npz (arrays by name), npy (one file per field).

Relative paths resolve against the folder of the spec file (``base_dir``), so a spec and its data travel
together. Arrays are read with ``allow_pickle=False``: a data file can never run code.
"""

from __future__ import annotations

import csv
import os
import zipfile
from pathlib import Path

import numpy as np

from specgrad.base.components import NAME
from specgrad.base.diagnostics import did_you_mean, excerpt
from specgrad.base.fileio import not_regular
from specgrad.data.registry import SOURCES, DataError

PATH = {"type": "string", "minLength": 1, "description": "file path, relative to the spec file"}
COLUMNS = {
    "type": "object",
    "propertyNames": NAME,
    "minProperties": 1,
    "additionalProperties": {
        "if": {"type": "string"},
        "then": {"type": "string", "minLength": 1},
        "else": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    },
    "description": "field -> one column name (per-sample shape []) or a list of names (shape [k])",
}


def resolve(path: str, base_dir: Path, key: tuple) -> Path:
    """The data file ``path`` names; only a regular file (a FIFO or /dev/zero would block or never end)."""
    full = (Path(base_dir) / path) if not Path(path).is_absolute() else Path(path)
    try:
        what = not_regular(os.stat(full).st_mode)
    except (OSError, ValueError):
        raise DataError(f"data file '{path}' not found (looked for {full})", key) from None
    if what is not None:
        raise DataError(f"data file '{path}' is {what}, not a regular file", key)
    return full


def read_csv(path: Path, key: tuple = ("path",), delimiter: str = ",") -> dict[str, np.ndarray]:
    """Every column of a csv file with a header row, as float64 arrays by column name."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter=delimiter))
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r})", key
        ) from None
    if not rows:
        raise DataError(f"{path} is empty; expected a header row of column names", key)
    header, body = [h.strip() for h in rows[0]], [r for r in rows[1:] if any(c.strip() for c in r)]
    if len(set(header)) != len(header):
        raise DataError(f"{path}: repeated column name in the header", key)
    values = np.empty((len(body), len(header)))
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise DataError(f"{path}:{i + 2}: {len(row)} values, the header has {len(header)} columns", key)
        for j, cell in enumerate(row):
            try:
                values[i, j] = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}:{i + 2}: column {excerpt(header[j])} holds {excerpt(cell.strip())}, not a number", key
                ) from None
    return {name: values[:, j] for j, name in enumerate(header)}


def select_columns(table: dict[str, np.ndarray], columns: dict, where: str) -> dict[str, np.ndarray]:
    """Fields from named columns: a name gives a [n] array, a list of names a [n, k] one."""
    out = {}
    for field, names in columns.items():
        for name in [names] if isinstance(names, str) else names:
            if name not in table:
                raise DataError(f"{where} has no column '{name}'{did_you_mean(name, list(table))}", ("columns", field))
        out[field] = table[names] if isinstance(names, str) else np.stack([table[n] for n in names], axis=1)
    return out


@SOURCES.register(
    "csv",
    {"path": PATH, "columns": COLUMNS, "delimiter": {"type": "string", "minLength": 1, "maxLength": 1}},
    required=["path", "columns"],
)
def csv_(path, columns, delimiter=",", base_dir="."):
    """a csv file with a header row; fields are columns chosen by name"""
    full = resolve(path, base_dir, ("path",))
    return select_columns(read_csv(full, ("path",), delimiter), columns, path)


def load_npz(path: Path, key: tuple = ("path",)) -> dict[str, np.ndarray]:
    """Every array of an .npz archive. An array stored uncompressed (``np.savez``) is memory-mapped, not read:
    a process reads only the rows it indexes, and processes on one machine share the pages (a data-parallel
    run: docs/distributed.md). Compressed ones (``np.savez_compressed``) are read whole."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            mapped = {name: _mapped_member(path, archive.zip, name) for name in archive.files}
            return {name: archive[name] if array is None else array for name, array in mapped.items()}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} as .npz: {e}", key) from None


def _mapped_member(path: Path, archive: zipfile.ZipFile, name: str) -> np.ndarray | None:
    """The array ``name`` of an .npz archive as a read-only memory map, if it is stored uncompressed and
    holds plain numbers; None otherwise (the caller then reads it, with numpy's own checks and errors)."""
    import numpy.lib.format as npy

    try:
        info = archive.getinfo(name + ".npy")
        if info.compress_type != zipfile.ZIP_STORED:
            return None
        with open(path, "rb") as f:
            f.seek(info.header_offset)
            local = f.read(30)  # the member's local header: 30 bytes, then name and extra
            if len(local) != 30 or local[:4] != b"PK\x03\x04":
                return None
            f.seek(
                info.header_offset
                + 30
                + int.from_bytes(local[26:28], "little")
                + int.from_bytes(local[28:30], "little")
            )
            version = npy.read_magic(f)
            read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
            shape, fortran, dtype = read_header(f)
            offset = f.tell()
        if dtype.hasobject or offset + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize > Path(path).stat().st_size:
            return None
        return np.memmap(path, dtype, "r", offset, shape, "F" if fortran else "C")
    except (KeyError, ValueError, OSError):
        return None


@SOURCES.register(
    "npz",
    {
        "path": PATH,
        "fields": {
            "type": "object",
            "propertyNames": NAME,
            "additionalProperties": {"type": "string"},
            "description": "field -> array name in the archive (default: every array, under its own name)",
        },
    },
    required=["path"],
)
def npz(path, fields=None, base_dir="."):
    """a NumPy .npz archive; fields are its arrays, by name"""
    arrays = load_npz(resolve(path, base_dir, ("path",)))
    fields = fields or {name: name for name in arrays}
    for field, name in fields.items():
        if name not in arrays:
            raise DataError(f"{path} has no array '{name}' (it has {', '.join(sorted(arrays))})", ("fields", field))
    return {field: arrays[name] for field, name in fields.items()}


@SOURCES.register(
    "npy",
    {
        "fields": {
            "type": "object",
            "propertyNames": NAME,
            "minProperties": 1,
            "additionalProperties": PATH,
            "description": "field -> .npy file holding it",
        }
    },
    required=["fields"],
)
def npy(fields, base_dir="."):
    """one NumPy .npy file per field"""
    out = {}
    for field, path in fields.items():
        full = resolve(path, base_dir, ("fields", field))
        try:
            out[field] = _mapped_npy(full)
        except (ValueError, OSError) as e:
            raise DataError(f"cannot read {path} as .npy: {e}", ("fields", field)) from None
    return out


def _mapped_npy(path: Path) -> np.ndarray:
    """An .npy file memory-mapped (read-only: pages are read when indexed, and shared between processes), or
    read whole where it cannot be mapped, which gives numpy's own error for a file that is not a plain array."""
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError):
        return np.load(path, allow_pickle=False)
