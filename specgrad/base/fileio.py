"""Writing files so that a reader never sees half of one: shared by the run directory, the data state and
``predict``. (Checkpoints add fsynced folders and a manifest on top: specgrad/run/checkpoint.py.)"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)     # fixed, so identical arrays give byte-identical archives


def write_atomic(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` in one step: written beside it, fsynced, then renamed over it."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
