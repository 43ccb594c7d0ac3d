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
from specgrad.data.registry import SOURCES, DataError, Field

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


def read_csv(path: Path, key: tuple = ("path",), delimiter: str = ",", only=None) -> dict[str, np.ndarray]:
    """The columns of a csv file with a header row, as float64 arrays by column name: every column, or those
    named in ``only`` (the others are not read: they may hold anything). A blank line is skipped; any other
    row is a sample, and a cell that is not a number is an error naming its line and column."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            rows = [(reader.line_num, row) for row in reader]
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not UTF-8 text (byte {e.start}: {e.object[e.start : e.start + 1]!r})", key
        ) from None
    except csv.Error as e:  # a field over the csv module's limit (131,072 characters), a NUL byte...
        raise DataError(f"{path}:{reader.line_num}: not a csv file of numbers ({e})", key) from None
    if not rows:
        raise DataError(f"{path} is empty; expected a header row of column names", key)
    header = [h.strip() for h in rows[0][1]]
    body = [(line, row) for line, row in rows[1:] if row and (len(row) > 1 or row[0].strip())]
    while body and not any(cell.strip() for cell in body[-1][1]):  # ",,": a spreadsheet's trailing empty rows
        body.pop()
    if len(set(header)) != len(header):
        raise DataError(f"{path}: repeated column name in the header", key)
    read = [j for j, name in enumerate(header) if only is None or name in only]
    values = np.empty((len(body), len(read)))
    for i, (line, row) in enumerate(body):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: {len(row)} values, the header has {len(header)} columns", key)
        for k, j in enumerate(read):
            cell = row[j]
            try:
                if "_" in cell:  # Python's float() reads 1_000; no csv writer does
                    raise ValueError(cell)
                values[i, k] = float(cell)
            except ValueError:
                raise DataError(
                    f"{path}:{line}: column {excerpt(header[j])} holds {excerpt(cell.strip())}, not a number", key
                ) from None
    return {header[j]: values[:, k] for k, j in enumerate(read)}


def csv_header(path: Path, key: tuple = ("path",), delimiter: str = ",") -> list[str]:
    """The column names of a csv file's header row ([] for an empty file)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            first = next(csv.reader(f, delimiter=delimiter), [])
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a csv file of numbers ({e})", key) from None
    return [h.strip() for h in first]


def select_columns(table: dict[str, np.ndarray], columns: dict, where: str, header=None) -> dict[str, np.ndarray]:
    """Fields from named columns: a name gives a [n] array, a list of names a [n, k] one. ``header``: every
    column the file has (what a misspelt name is compared with), when ``table`` holds only some."""
    out = {}
    for field, names in columns.items():
        for name in [names] if isinstance(names, str) else names:
            if name not in table:
                known = list(table) if header is None else header
                raise DataError(f"{where} has no column '{name}'{did_you_mean(name, known)}", ("columns", field))
        out[field] = table[names] if isinstance(names, str) else np.stack([table[n] for n in names], axis=1)
    return out


@SOURCES.register(
    "csv",
    {"path": PATH, "columns": COLUMNS, "delimiter": {"type": "string", "minLength": 1, "maxLength": 1}},
    required=["path", "columns"],
    # a column's values may be read as class labels or real values: only the file says which
    fields=lambda settings: {
        field: Field(None, () if isinstance(names, str) else (len(names),))
        for field, names in settings["columns"].items()
    },
)
def csv_(path, columns, delimiter=",", base_dir="."):
    """a csv file with a header row; fields are columns chosen by name"""
    return read_columns(resolve(path, base_dir, ("path",)), columns, path, delimiter)


def read_columns(path: Path, columns: dict, where: str, delimiter: str = ",") -> dict[str, np.ndarray]:
    """``select_columns`` of a csv file, reading only the columns ``columns`` names."""
    wanted = {n for names in columns.values() for n in ([names] if isinstance(names, str) else names)}
    table = read_csv(path, ("path",), delimiter, only=wanted)
    return select_columns(table, columns, where, csv_header(path, ("path",), delimiter))


# A compressed member expanding to more than this, at more than BOMB_RATIO times its compressed size, is
# refused unread (a zip bomb: 4 MB of deflated zeros declaring 4 GB); large arrays belong in np.savez's
# uncompressed members, which are memory-mapped
BOMB_BYTES = 256 << 20
BOMB_RATIO = 100


def load_npz(path: Path, key: tuple = ("path",), names=None) -> dict[str, np.ndarray]:
    """The arrays of an .npz archive (``names``: only these; missing ones are left out, for the caller to
    name). An array stored uncompressed (``np.savez``) is memory-mapped, not read: a process reads only the
    rows it indexes, and processes on one machine share the pages (a data-parallel run:
    docs/distributed.md). Compressed ones (``np.savez_compressed``) are read whole. Every member's header is
    checked against what the member holds before anything is allocated: the archive may come from anyone."""
    with open(path, "rb") as f:  # np.load's own test (it would read an .npy, or guess at pickled data)
        zipped = f.read(4) == b"PK\x03\x04"
    if not zipped or not zipfile.is_zipfile(path):
        raise DataError(f"cannot read {path} as .npz: not a zip archive of .npy arrays (np.savez writes one)", key)
    try:
        with np.load(path, allow_pickle=False) as archive:
            wanted = [n for n in archive.files if names is None or n in names]
            members = set(archive.zip.namelist())
            out = {}
            for name in wanted:
                # numpy names a member by its file name less ".npy" (or whole, for one without it)
                info = archive.zip.getinfo(name + ".npy" if name + ".npy" in members else name)
                if info.compress_type == zipfile.ZIP_STORED:
                    out[name] = _mapped_member(path, info, name)
                    continue
                if info.file_size > BOMB_BYTES and info.file_size > BOMB_RATIO * max(info.compress_size, 1):
                    raise ValueError(
                        f"array {excerpt(name)} expands from {info.compress_size} to {info.file_size} bytes "
                        f"(over {BOMB_RATIO}:1), refused unread; store large arrays uncompressed (np.savez)"
                    )
                with archive.zip.open(info) as member:
                    _declared(member, info.file_size, name)
                out[name] = archive[name]
            return out
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, MemoryError) as e:
        raise DataError(f"cannot read {path} as .npz: {e}", key) from None


def npz_names(path: Path, shown: int = 20) -> str:
    """The arrays an .npz archive holds, for a message: the first ``shown`` names, then how many more."""
    with np.load(path, allow_pickle=False) as archive:
        names = sorted(archive.files)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return (", ".join(excerpt(n) for n in names[:shown]) or "none") + more


def _declared(f, size: int, name: str) -> tuple[tuple, bool, np.dtype, int]:
    """(shape, fortran, dtype, offset of the data) of the .npy stream ``f`` of ``size`` bytes; ValueError
    when its header declares more data than the stream holds (a damaged or lying header: allocating what it
    declares could exhaust memory before numpy found the data missing)."""
    import numpy.lib.format as npy

    try:
        version = npy.read_magic(f)
    except ValueError:
        raise ValueError(f"{excerpt(name)} is not a .npy array") from None
    read_header = npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0
    shape, fortran, dtype = read_header(f)
    offset = f.tell()
    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if offset + declared > size:
        raise ValueError(
            f"array {excerpt(name)} declares shape {list(shape)} of {dtype} ({declared} bytes), "
            f"but holds {max(size - offset, 0)}"
        )
    return shape, fortran, dtype, offset


def _mapped_member(path: Path, info: zipfile.ZipInfo, name: str) -> np.ndarray:
    """An uncompressed .npz member as a read-only memory map; ValueError when it is not a plain array of
    numbers, or declares more than it holds."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)  # the member's local header: 30 bytes, then name and extra
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"a damaged archive (the local header of {excerpt(info.filename)})")
        start = (
            info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
        )
        f.seek(start)
        shape, fortran, dtype, offset = _declared(f, start + info.file_size, name)
    if dtype.hasobject:
        raise ValueError(f"array {excerpt(name)} holds Python objects, not numbers")
    return np.memmap(path, dtype, "r", offset, shape, "F" if fortran else "C")


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
    full = resolve(path, base_dir, ("path",))
    arrays = load_npz(full, names=set(fields.values()) if fields else None)
    fields = fields or {name: name for name in arrays}
    for field, name in fields.items():
        if name not in arrays:
            raise DataError(f"{path} has no array '{name}' (it has {npz_names(full)})", ("fields", field))
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
        except (ValueError, OSError, EOFError, MemoryError) as e:
            raise DataError(f"cannot read {path} as .npy: {e}", ("fields", field)) from None
    return out


def _mapped_npy(path: Path) -> np.ndarray:
    """An .npy file memory-mapped (read-only: pages are read when indexed, and shared between processes);
    ValueError for a file that is not a plain array of numbers, or whose header declares more than it holds."""
    with open(path, "rb") as f:
        _declared(f, os.fstat(f.fileno()).st_size, Path(path).name)
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError):
        return np.load(path, allow_pickle=False)  # numpy's own error for what cannot be mapped (objects)
