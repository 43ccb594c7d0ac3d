"""Data read from files: csv (columns by name), npz (arrays by name), npy (one file per field).

Relative paths resolve against the folder of the spec file (``base_dir``), so a spec and its data travel
together. Arrays are read with ``allow_pickle=False``: a data file can never run code.
"""
from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np

from specgrad.base.components import NAME
from specgrad.data.registry import SOURCES, DataError

PATH = {"type": "string", "minLength": 1, "description": "file path, relative to the spec file"}
COLUMNS = {"type": "object", "propertyNames": NAME, "minProperties": 1,
           "additionalProperties": {"if": {"type": "string"}, "then": {"minLength": 1},
                                    "else": {"type": "array", "minItems": 1, "items": {"type": "string"}}},
           "description": "field -> one column name (per-sample shape []) or a list of names (shape [k])"}


def resolve(path: str, base_dir: Path, key: tuple) -> Path:
    full = (Path(base_dir) / path) if not Path(path).is_absolute() else Path(path)
    if not full.is_file():
        raise DataError(f"data file '{path}' not found (looked for {full})", key)
    return full


def read_csv(path: Path, key: tuple = ("path",), delimiter: str = ",") -> dict[str, np.ndarray]:
    """Every column of a csv file with a header row, as float64 arrays by column name."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter=delimiter))
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text (byte {e.start}: {e.object[e.start:e.start + 1]!r})", key) from None
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
                raise DataError(f"{path}:{i + 2}: column '{header[j]}' holds {cell.strip()!r}, not a number",
                                key) from None
    return {name: values[:, j] for j, name in enumerate(header)}


def select_columns(table: dict[str, np.ndarray], columns: dict, where: str) -> dict[str, np.ndarray]:
    """Fields from named columns: a name gives a [n] array, a list of names a [n, k] one."""
    out = {}
    for field, names in columns.items():
        for name in [names] if isinstance(names, str) else names:
            if name not in table:
                from specgrad.base.diagnostics import did_you_mean
                raise DataError(f"{where} has no column '{name}'{did_you_mean(name, list(table))}",
                                ("columns", field))
        out[field] = table[names] if isinstance(names, str) else np.stack([table[n] for n in names], axis=1)
    return out


@SOURCES.register("csv", {"path": PATH, "columns": COLUMNS,
                          "delimiter": {"type": "string", "minLength": 1, "maxLength": 1}},
                  required=["path", "columns"])
def csv_(path, columns, delimiter=",", base_dir="."):
    """a csv file with a header row; fields are columns chosen by name"""
    full = resolve(path, base_dir, ("path",))
    return select_columns(read_csv(full, ("path",), delimiter), columns, path)


def load_npz(path: Path, key: tuple = ("path",)) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise DataError(f"cannot read {path} as .npz: {e}", key) from None


@SOURCES.register("npz", {"path": PATH, "fields": {
    "type": "object", "propertyNames": NAME, "additionalProperties": {"type": "string"},
    "description": "field -> array name in the archive (default: every array, under its own name)"}},
    required=["path"])
def npz(path, fields=None, base_dir="."):
    """a NumPy .npz archive; fields are its arrays, by name"""
    arrays = load_npz(resolve(path, base_dir, ("path",)))
    fields = fields or {name: name for name in arrays}
    for field, name in fields.items():
        if name not in arrays:
            raise DataError(f"{path} has no array '{name}' (it has {', '.join(sorted(arrays))})", ("fields", field))
    return {field: arrays[name] for field, name in fields.items()}


@SOURCES.register("npy", {"fields": {
    "type": "object", "propertyNames": NAME, "minProperties": 1, "additionalProperties": PATH,
    "description": "field -> .npy file holding it"}}, required=["fields"])
def npy(fields, base_dir="."):
    """one NumPy .npy file per field"""
    out = {}
    for field, path in fields.items():
        full = resolve(path, base_dir, ("fields", field))
        try:
            out[field] = np.load(full, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"cannot read {path} as .npy: {e}", ("fields", field)) from None
    return out
