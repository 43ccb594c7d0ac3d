"""Loading a spec's ``data`` section: the source's fields, reshaped, then split into train / val / test."""

from __future__ import annotations

import inspect
import math
from pathlib import Path

import numpy as np

from specgrad.base.rng import SPLIT, stream
from specgrad.data import datasets, files, synthetic  # noqa: F401  (each registers its sources)
from specgrad.data.registry import SOURCES, DataError


def load_data(settings: dict, seed: int, base_dir: Path | str = ".") -> dict[str, np.ndarray]:
    """All rows of the source, as named arrays, with ``reshape`` applied. A source receives the data seed and
    the folder that relative paths resolve against only if it asks for them."""
    source = SOURCES[settings["source"]]
    wanted = inspect.signature(source.factory).parameters
    context = {"seed": settings.get("seed", seed), "base_dir": Path(base_dir)}
    fields = SOURCES.create(settings, **{k: v for k, v in context.items() if k in wanted})
    for name, a in fields.items():
        if np.ndim(a) == 0:
            raise DataError(f"field '{name}' is a single value, not one row per sample")
        if np.asarray(a).dtype.kind not in "biuf":
            raise DataError(f"field '{name}' holds {np.asarray(a).dtype} values, not numbers")
    sizes = {name: len(a) for name, a in fields.items()}
    if not any(sizes.values()):
        raise DataError("the data holds no rows")
    if len(set(sizes.values())) > 1:
        raise DataError("fields have different numbers of rows: " + ", ".join(f"{k} {v}" for k, v in sizes.items()))
    for name, shape in (settings.get("reshape") or {}).items():
        if name not in fields:
            raise DataError(
                f"reshape: the data has no field '{name}' (it has {', '.join(sorted(fields))})", ("reshape", name)
            )
        fields[name] = reshape_rows(fields[name], shape, name, ("reshape", name))
    return fields


def reshape_rows(array: np.ndarray, shape, name: str, key: tuple = ()) -> np.ndarray:
    """``array`` with each row given the per-sample ``shape`` (same number of values)."""
    check_reshape(name, array.shape[1:], shape, key)
    return array.reshape((len(array), *shape))


def check_reshape(name: str, have, to, key: tuple = ()) -> None:
    """DataError unless a sample of per-sample shape ``have`` holds as many values as one of shape ``to``."""
    if math.prod(have) != math.prod(to):
        raise DataError(
            f"field '{name}' has per-sample shape {list(have)}, which cannot be reshaped to {list(to)}", key
        )


def batch_rows(n: int, batch_size: int | str) -> int:
    """Rows of a batch of ``n`` rows of data: ``full`` is all of them, a size is at most them."""
    return n if batch_size == "full" else min(int(batch_size), n)


def batches_per_epoch(n: int, batch_size: int | str, drop_last: bool) -> int:
    """Batches in an epoch of ``n`` rows: ``full`` is one; the last, smaller batch counts unless dropped."""
    size = batch_rows(n, batch_size)
    return n // size if drop_last else math.ceil(n / size)


def split_sizes(n: int, split: dict) -> dict[str, int]:
    """Rows of each split of ``n`` rows (``train`` 0 when ``split`` leaves none)."""
    n_val, n_test = int(round(split.get("val", 0) * n)), int(round(split.get("test", 0) * n))
    return {"train": max(n - n_val - n_test, 0), "val": n_val, "test": n_test}


def no_training_rows(n: int, sizes: dict[str, int]) -> str:
    """What a split that leaves no training rows (``split_sizes``) is told, at load or at validate."""
    return f"split leaves no training rows ({n} rows, {sizes['val']} val, {sizes['test']} test)"


def no_validation_rows(n: int) -> str:
    """What a split without validation rows is told where ``train.validation`` needs them."""
    return f"data.split.val leaves no rows for validation out of the data's {n}"


def load_splits(settings: dict, seed: int, base_dir: Path | str = ".") -> dict[str, dict[str, np.ndarray]]:
    """``{"train": fields, "val": fields, "test": fields}``; val and test only when ``split`` asks for them.
    Rows are assigned by a permutation drawn from the data seed, so the split is reproducible."""
    fields = load_data(settings, seed, base_dir)
    split = settings.get("split") or {}
    if not split:
        return {"train": fields}
    n = len(next(iter(fields.values())))
    order = stream(settings.get("seed", seed), SPLIT).permutation(n)
    sizes = split_sizes(n, split)
    n_val, n_test = sizes["val"], sizes["test"]
    if not sizes["train"]:
        raise DataError(no_training_rows(n, sizes), ("split",))
    parts = {"test": order[:n_test], "val": order[n_test : n_test + n_val], "train": order[n_test + n_val :]}
    return {
        name: {k: v[np.sort(idx)] for k, v in fields.items()}
        for name, idx in parts.items()
        if name == "train" or len(idx)
    }
