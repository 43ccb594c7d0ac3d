"""From a spec to the arrays a model reads: load and split (``sources.py``), standardize with statistics
fitted on the training split only, then check every field against the model's inputs and the loss's target.

The run keeps what it takes to transform new data the same way (``data.json``: the statistics and the folder
data paths resolve against), so ``eval`` and ``predict`` see exactly what training saw.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from specgrad.base.diagnostics import Diagnostic, SpecError
from specgrad.base.fileio import parse_json, read_regular, write_atomic
from specgrad.data.registry import DataError
from specgrad.data.sources import load_splits
from specgrad.model.losses import make_loss

RUN_FILE = "data.json"
DATA_STATE_MAX_BYTES = 16 << 20  # a folder and per-field mean/std: kilobytes


@dataclass
class Standardizer:
    """Per-feature (x - mean) / std for chosen fields; a feature constant on the training split keeps std 1."""

    stats: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def fit(cls, fields: dict[str, np.ndarray], names) -> Standardizer:
        stats = {}
        for i, name in enumerate(names):
            if name not in fields:
                raise DataError(
                    f"standardize: the data has no field '{name}' (it has {', '.join(sorted(fields))})",
                    ("standardize", i),
                )
            values = np.asarray(fields[name])
            if values.dtype.kind not in "fiu":
                raise DataError(f"standardize: field '{name}' does not hold real numbers", ("standardize", i))
            mean, std = values.mean(axis=0), values.std(axis=0)
            # constant: a spread no larger than the rounding of the mean over n rows (100 rows of 0.1 have a
            # std of 2e-16, not 0); such a feature keeps a divisor of 1 and becomes ~0
            constant = ~(std > len(values) * np.finfo(np.float64).eps * np.abs(mean))
            stats[name] = (mean, np.where(constant, 1.0, std))
        return cls(stats)

    def apply(self, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for name, (mean, _) in self.stats.items():
            if name in fields and mean.shape != np.shape(fields[name])[1:]:
                raise DataError(
                    f"standardize: field '{name}' has per-sample shape {list(np.shape(fields[name])[1:])}, "
                    f"its statistics {list(mean.shape)}",
                    ("standardize",),
                )
        return {
            name: (a - self.stats[name][0]) / self.stats[name][1] if name in self.stats else a
            for name, a in fields.items()
        }

    def to_json(self) -> dict:
        # Python floats print with repr, which round-trips float64 exactly: predict reproduces training's bits
        return {name: {"mean": mean.tolist(), "std": std.tolist()} for name, (mean, std) in self.stats.items()}

    @classmethod
    def from_json(cls, data: dict) -> Standardizer:
        """The statistics ``to_json`` wrote (a run directory's data.json: anyone may have written it)."""
        if not isinstance(data, dict) or not all(isinstance(s, dict) for s in data.values()):
            raise ValueError("'standardize' must map field names to {mean, std}")
        try:
            stats = {
                name: (np.asarray(s["mean"], dtype=np.float64), np.asarray(s["std"], dtype=np.float64))
                for name, s in data.items()
            }
        except OverflowError:  # an integer of 400 digits
            raise ValueError("a mean or std is not a float64 number") from None
        for name, (mean, std) in stats.items():
            if mean.shape != std.shape:
                raise ValueError(f"field '{name}': its mean and std differ in shape")
            if not (np.isfinite(mean).all() and (std > 0).all()):
                raise ValueError(f"field '{name}': a mean that is not finite or a std that is not positive")
        return cls(stats)


@dataclass
class PreparedData:
    splits: dict[str, dict[str, np.ndarray]]  # "train" always; "val" / "test" when the spec splits
    standardizer: Standardizer
    base_dir: Path  # where relative data paths resolve

    def save(self, run_dir: Path) -> None:
        state = {"base_dir": str(self.base_dir.resolve()), "standardize": self.standardizer.to_json()}
        write_atomic(Path(run_dir) / RUN_FILE, json.dumps(state, indent=2) + "\n")


def load_run_data_state(run_dir: Path, spec=None) -> tuple[Path, Standardizer]:
    """The data folder and the standardization a run was trained with (of the fields ``spec`` standardizes,
    when it is given: a damaged data.json must not standardize the target)."""
    path = Path(run_dir) / RUN_FILE
    try:
        state = parse_json(read_regular(path, DATA_STATE_MAX_BYTES))  # a run directory may be hostile
        base_dir = state["base_dir"]
        if not isinstance(base_dir, str) or "\0" in base_dir or not os.path.isabs(base_dir):
            raise ValueError("'base_dir' must be an absolute folder name")
        standardizer = Standardizer.from_json(state["standardize"])
        if spec is not None and sorted(standardizer.stats) != sorted(spec.data["data"].get("standardize", [])):
            raise ValueError(
                f"it standardizes {', '.join(sorted(standardizer.stats)) or 'nothing'}, "
                f"the spec {', '.join(sorted(spec.data['data'].get('standardize', []))) or 'nothing'}"
            )
        return Path(base_dir), standardizer
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None


def data_error(spec, e: DataError) -> SpecError:
    return spec.error([Diagnostic(f"data: {e}", spec.doc.loc(("data", *e.key)))])


def prepare_data(spec, base_dir: Path | None = None, standardizer: Standardizer | None = None) -> PreparedData:
    """Load, split, standardize (fitted on the training split unless a run's ``standardizer`` is given) and
    check the data of a validated spec (validation has checked the settings that need no data: see
    specgrad/spec/checks.py); a located SpecError for any problem. ``base_dir`` defaults to the
    spec file's folder (see ``data_folder``)."""
    settings = spec.data["data"]
    if base_dir is None:
        base_dir = data_folder(Path(spec.doc.file).parent)
    try:
        splits = load_splits(settings, spec.settings.seed, base_dir)
        if standardizer is None:
            standardizer = Standardizer.fit(splits["train"], settings.get("standardize", []))
    except DataError as e:
        raise data_error(spec, e) from None
    return PreparedData(
        {name: conform(standardizer.apply(raw), spec) for name, raw in splits.items()}, standardizer, base_dir
    )


def data_folder(spec_dir: Path) -> Path:
    """Where a spec's relative data paths resolve: its own folder, or for a run's spec.yaml (trained again as
    it is) the folder its run recorded."""
    if (spec_dir / RUN_FILE).is_file():
        try:
            return load_run_data_state(spec_dir)[0]
        except DataError:
            pass  # an unreadable data.json: resolve as for any spec, and say what is missing
    return spec_dir


def conform(raw: dict[str, np.ndarray], spec, with_target: bool = True) -> dict[str, np.ndarray]:
    """The fields the model reads, in its input order and dtype (the loss target last, unless
    ``with_target`` is false); located errors for missing or misshapen fields and for targets the loss
    cannot take (labels that are not integers or out of range, probabilities outside [0, 1])."""
    model, doc = spec.model, spec.doc
    fields, errors = {}, []
    for name, node in model.inputs.items():
        is_target = name == model.target
        if is_target and not with_target:
            continue
        path = field_path(name, spec.data)
        if name not in raw:
            errors.append(Diagnostic(f"data has no field '{name}' (it has {', '.join(sorted(raw))})", doc.loc(path)))
            continue
        arr = np.asarray(raw[name])
        mismatch = shape_mismatch(name, arr.shape[1:], node)
        if mismatch:
            errors.append(Diagnostic(mismatch, doc.loc(path)))
            continue
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            row = int(np.argwhere(~np.isfinite(arr.reshape(len(arr), -1)))[0, 0])
            errors.append(
                Diagnostic(
                    f"data field '{name}' holds NaN or infinite values (the first at row {row})", doc.loc(("data",))
                )
            )
            continue
        if is_target:
            problem = _target_problem(arr, make_loss(spec.data["loss"]).target_of(model.prediction), name)
        elif node.dtype.kind in "iu" and arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):
            problem = (
                f"data field '{name}' holds non-integer values such as "
                f"{arr[arr != np.round(arr)][0]:g}; the model reads it as {node.dtype}"
            )
        elif node.dtype.kind in "iu" and arr.size and arr.min() < 0:  # ids: numpy would count from the end
            problem = f"data field '{name}' holds the negative id {arr.min():g}; ids count from 0"
        elif node.dtype.kind in "iu" and arr.size and arr.max() >= (rows := id_bound(model, node)):
            problem = f"data field '{name}' holds the id {arr.max():g}; the table it indexes has {rows} rows"
            problem += " (ids count from 0)"
        else:
            problem = None
        if problem:
            errors.append(Diagnostic(problem, doc.loc(("loss",) if is_target else path)))
            continue
        fields[name] = np.ascontiguousarray(arr, dtype=node.dtype)
    if errors:
        raise spec.error(errors)
    return fields


def field_path(name: str, spec: dict) -> tuple:
    """Where a spec says what a data field must be: its model input, or the loss for the target."""
    return ("model", "inputs", name) if name in spec["model"]["inputs"] else ("loss",)


def shape_mismatch(name: str, have, node) -> str | None:
    """Why data field ``name``, of per-sample shape ``have``, cannot feed the model's input ``node``; None if it can."""
    if tuple(have) == tuple(node.shape[1:]):
        return None
    return f"data field '{name}' has per-sample shape {list(have)}, the model expects {list(node.shape[1:])}"


def id_bound(model, node) -> float:
    """The rows of the smallest table (an embedding's) the integer input ``node`` indexes directly; inf when
    it indexes none."""
    from specgrad.engine.ir import ancestors

    rows = [
        n.inputs[0].shape[n.attrs.get("axis", 0)]
        for n in ancestors([model.loss, model.eval.prediction])
        if n.op == "take" and n.inputs[1].id == node.id and isinstance(n.inputs[0].shape[n.attrs.get("axis", 0)], int)
    ]
    return min(rows, default=float("inf"))


def _target_problem(values: np.ndarray, target, name: str) -> str | None:
    if values.dtype.kind not in "fiub":
        return f"data field '{name}' holds {values.dtype} values, not numbers"
    if target.kind == "labels":
        if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
            found = values[values != np.round(values)][0]
            return f"data field '{name}' must hold integer class labels for this loss, found {found}"
        bad = values[(values < 0) | (values >= target.classes)]
        if len(bad):
            return (
                f"data field '{name}' holds label {bad[0]:g}, outside [0, {target.classes}) for a prediction "
                f"with {target.classes} classes"
            )
    if target.kind == "probabilities":
        bad = values[(values < 0) | (values > 1)]
        if len(bad):
            return f"data field '{name}' must hold 0/1 targets (or probabilities) for this loss, found {bad[0]:g}"
    return None
