"""Using a trained run: evaluate its latest checkpoint on a split, or predict on new data.

A run directory holds all it takes: ``spec.yaml`` (the model, loss and metrics), ``data.json`` (the data
folder and the standardization fitted in training) and ``checkpoints/`` (the parameters). New data goes
through the same transform as the training data did, so a prediction matches what the model saw.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specgrad.base.fileio import write_npz
from specgrad.data.files import csv_header, load_npz, npz_names, read_columns, read_csv
from specgrad.data.prepare import (
    Standardizer,
    conform,
    load_run_data_state,
    prepare_data,
)
from specgrad.data.registry import DataError
from specgrad.data.sources import reshape_rows
from specgrad.model.losses import make_loss
from specgrad.model.metrics import evaluate
from specgrad.run.checkpoint import (
    TrainingArrays,
    checkpoint_at,
    checkpoints_dir,
    expected_arrays,
    latest_checkpoint,
)
from specgrad.run.runlog import spec_hash
from specgrad.spec import Spec, SpecError, load_spec

SPLITS = ("train", "val", "test")


class RunFileError(Exception):
    """A run directory, or an input or output file, that cannot be used; the message says which and why."""


@dataclass
class TrainedRun:
    spec: Spec
    params: dict[str, np.ndarray]
    state: dict[str, np.ndarray]  # non-trainable model state (batchnorm's running statistics)
    step: int
    base_dir: Path
    standardizer: Standardizer


def load_run(
    run_dir: Path,
    warn: Callable[[str], None] = lambda message: None,
    step: int | None = None,
    *,
    data: bool = True,
    roots=(),
) -> TrainedRun:
    """The run's spec, data transform and latest good checkpoint, or the checkpoint of ``step`` (SpecError,
    CheckpointError or RunFileError). ``data``: whether the run's data files are checked (they must lie in
    the working directory, the run directory or ``roots``, wherever data.json says they are); False for what
    reads none of them (predict)."""
    run_dir = Path(run_dir)
    if not (run_dir / "spec.yaml").is_file():
        raise RunFileError(f"{run_dir} is not a run directory (it has no spec.yaml)")
    spec = load_spec(run_dir / "spec.yaml", roots=roots, data_files=data)
    try:
        base_dir, standardizer = load_run_data_state(run_dir, spec)
    except DataError as e:
        raise RunFileError(str(e)) from None
    # only the arrays evaluation needs, each checked against the model before it is read
    expected = expected_arrays(spec.model.params, spec.model.state)
    root = checkpoints_dir(run_dir)
    ckpt = (
        latest_checkpoint(root, warn=warn, expected=expected, partial=True)
        if step is None
        else checkpoint_at(root, step, expected=expected, partial=True)
    )
    if ckpt is None:
        raise RunFileError(f"{run_dir} has no checkpoint to evaluate")
    if ckpt.state.get("spec_hash") != spec_hash(spec.data):
        raise RunFileError(f"checkpoint {ckpt.path} was not trained with {run_dir / 'spec.yaml'}")
    saved = TrainingArrays.unpack(ckpt.arrays)
    for kind, nodes, arrays in (
        ("parameter", spec.model.params, saved.params),
        ("model state", spec.model.state, saved.state),
    ):
        missing = [name for name in nodes if name not in arrays]
        if missing:
            raise RunFileError(f"checkpoint {ckpt.path} has no {kind} {', '.join(missing)}")
        for name, node in nodes.items():
            shape = arrays[name].shape
            if shape != tuple(node.shape):  # never fed silently: numpy would broadcast [1] against []
                raise RunFileError(
                    f"checkpoint {ckpt.path}: {kind} '{name}' has shape {list(shape)}, "
                    f"the model's is {list(node.shape)}"
                )
    return TrainedRun(
        spec,
        {name: saved.params[name] for name in spec.model.params},
        {name: saved.state[name] for name in spec.model.state},
        ckpt.step,
        base_dir,
        standardizer,
    )


def evaluate_run(
    run_dir: Path, split: str | None = None, warn: Callable[[str], None] = lambda m: None, roots=()
) -> dict:
    """The loss and the spec's metrics on ``split`` (default: test, else val, else train), with the step.
    ``roots``: folders besides the working and run directories the run's data may be read from."""
    run = load_run(run_dir, warn, roots=roots)
    splits = prepare_data(run.spec, run.base_dir, run.standardizer).splits
    if split is None:
        split = next(s for s in reversed(SPLITS) if s in splits)
    if split not in splits:
        raise RunFileError(
            f"the run has no '{split}' split (its data.split holds out "
            f"{', '.join(s for s in SPLITS[1:] if s in splits) or 'nothing'})"
        )
    results = evaluate(run.spec.model, run.params, splits[split], run.spec.settings.metrics, run.state)
    return {"split": split, "step": run.step, "samples": len(splits[split][run.spec.model.target]), **results}


# ------------------------------------------------------------------------------------------------ predict
def predict_file(
    run_dir: Path, input_path: Path, output_path: Path | None = None, warn: Callable[[str], None] = lambda m: None
) -> str | None:
    """Predict on the samples in ``input_path`` (.csv or .npz) and write ``output_path`` (.csv or .npz);
    without an output path, return the csv text. (The run's training data is not needed.)"""
    run = load_run(run_dir, warn, data=False)
    fields = read_inputs(run.spec, Path(input_path))
    if not fields or any(np.ndim(values) == 0 or len(values) == 0 for values in fields.values()):
        raise RunFileError(f"{input_path} holds no samples")
    outputs = predict(run, fields, str(input_path))
    if output_path is None:
        return to_csv(outputs)
    output_path = Path(output_path)
    if output_path.suffix == ".npz":
        write_npz(output_path, outputs)
    elif output_path.suffix == ".csv":
        output_path.write_text(to_csv(outputs), encoding="utf-8")
    else:
        raise RunFileError(f"cannot write {output_path}: the output must be a .csv or .npz file")
    return None


def predict(run: TrainedRun, fields: dict[str, np.ndarray], source: str = "input") -> dict[str, np.ndarray]:
    """The model's output for raw input fields (reshaped, standardized and checked as in training), named
    after the model's output node, and for classifiers the predicted label and class probabilities. An error
    (RunFileError) names ``source``, where the fields came from: the input file, not the run's spec."""
    spec, model = run.spec, run.spec.model
    inputs = [name for name in model.inputs if name != model.target]
    missing = [name for name in inputs if name not in fields]
    if missing:
        raise RunFileError(
            f"{source}: no field '{missing[0]}' (the model reads {', '.join(inputs)}; "
            f"given: {', '.join(sorted(fields)) or 'none'})"
        )
    raw = {}
    for name in inputs:
        values = np.asarray(fields[name])
        if values.ndim == 0 or len(values) == 0:
            raise RunFileError(f"{source}: field '{name}' holds no samples (one row per sample)")
        if values.dtype.kind not in "biuf":  # complex, text, objects
            raise RunFileError(f"{source}: field '{name}' holds {values.dtype} values, not real numbers")
        # ids stay integers (a float64 would round 2**60 + 1); real values are read as float64, as in training
        raw[name] = values if model.inputs[name].dtype.kind in "iu" else values.astype(np.float64, copy=False)
    try:
        fields = {name: reshape_rows(raw[name], model.inputs[name].shape[1:], name) for name in inputs}
    except DataError as e:
        raise RunFileError(f"{source}: {e}") from None
    try:
        fields = conform(run.standardizer.apply(fields), spec, with_target=False)
    except SpecError as e:  # the checks of training data, here about the input's values
        raise RunFileError(f"{source}: " + "; ".join(d.message for d in e.diagnostics)) from None
    forward = model.eval  # no dropout; batchnorm uses its running statistics
    try:
        (pred,) = forward.plan([forward.prediction])(*forward.feed(fields, run.params, run.state))
    except IndexError as e:  # an id beyond an embedding's rows
        raise RunFileError(f"{source}: {e}") from None
    pred = np.asarray(pred)
    decode = make_loss(spec.data["loss"]).decode
    return {spec.data["model"]["output"]: pred, **(decode(pred) if decode else {})}


def read_inputs(spec: Spec, path: Path) -> dict[str, np.ndarray]:
    """Input fields from a .npz (arrays named after the model's inputs) or a .csv with a header row: the
    columns the spec's csv source names, else columns named after the inputs, else, for a model with one
    input, every column in order (a flattened image, say)."""
    model = spec.model
    inputs = [name for name in model.inputs if name != model.target]
    if not path.is_file():
        raise RunFileError(f"input file {path} not found")
    try:
        if path.suffix == ".npz":
            arrays = load_npz(path, names=set(inputs))
            missing = [name for name in inputs if name not in arrays]
            if missing:
                raise RunFileError(
                    f"{path} has no array '{missing[0]}' (the model reads {', '.join(inputs)}; "
                    f"the file has {npz_names(path)})"
                )
            return {name: arrays[name] for name in inputs}
        if path.suffix == ".csv":  # only the columns the model reads are read: the others may hold anything
            data = spec.data["data"]
            if data["source"] == "csv":  # laid out as the training file: its columns, its delimiter
                layout = {key: data[key] for key in ("delimiter",) if key in data}
                return read_columns(path, {name: data["columns"][name] for name in inputs}, str(path), **layout)
            if all(name in csv_header(path) for name in inputs):  # columns named after the inputs
                table = read_csv(path, only=set(inputs))
                return {name: table[name] for name in inputs}
            if len(inputs) == 1:
                table = read_csv(path)
                return {inputs[0]: np.stack(list(table.values()), axis=1)}
            raise RunFileError(f"{path}: the model reads {', '.join(inputs)}; give them as arrays of a .npz file")
    except DataError as e:
        raise RunFileError(str(e)) from None
    raise RunFileError(f"cannot read {path}: the input must be a .csv or .npz file")


def to_csv(outputs: dict[str, np.ndarray]) -> str:
    """One row per sample; an output with several values per sample becomes columns name_0, name_1, ..."""
    header, columns = [], []
    for name, values in outputs.items():
        flat = values.reshape(len(values), -1)
        if values.ndim == 1:
            header.append(name)
        else:
            header.extend(f"{name}_{i}" for i in range(flat.shape[1]))
        columns.extend(flat.T)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(header)
    for row in zip(*columns):
        writer.writerow([repr(v.item()) for v in row])  # repr: floats round-trip exactly
    return text.getvalue()
