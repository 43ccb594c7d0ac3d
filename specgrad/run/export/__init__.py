"""``specgrad export``: a trained run's model as an ONNX file any serving stack reads, checked by onnxruntime.

``export_onnx(run_dir)`` lowers the evaluation graph of the run's latest checkpoint (or of ``checkpoint``),
checks it with ``onnx.checker``, runs it with onnxruntime on the run's held-out data and compares the
outputs with ``specgrad predict``'s before it writes the file. onnx and onnxruntime are the optional extra
``specgrad[onnx]``. Each op's lowering sits beside its forward in the registry (specgrad/engine/ops/).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from specgrad.base.components import normalize
from specgrad.base.diagnostics import SpecError
from specgrad.base.version import __version__
from specgrad.data.registry import DataError
from specgrad.data.sources import load_splits
from specgrad.model.losses import make_loss
from specgrad.run.evaluate import load_run, predict
from specgrad.run.runlog import spec_hash
from specgrad.spec.paths import data_file_diagnostics

DEFAULT_OPSET = 17
OPSETS = range(13, 22)  # the opsets every lowering is written and tested for
CHECK_ROWS = 512  # held-out samples the onnxruntime check runs
TOLERANCE = {"float32": 1e-5, "float64": 1e-9}  # relative to an output's largest magnitude
EXTRA = "pip install 'specgrad[onnx]'"


class ExportError(Exception):
    """The model cannot be exported, or its export does not compute what specgrad does; says why."""


class UnsupportedOpset(ExportError):
    """An opset outside OPSETS (a usage error)."""


@dataclass
class Exported:
    path: Path
    opset: int
    step: int
    checked_rows: int  # held-out samples onnxruntime ran (0: the data could not be read)
    split: str | None
    max_error: float  # largest relative difference from specgrad predict's outputs

    def summary(self) -> str:
        check = (
            f"; onnxruntime matches specgrad predict on {self.checked_rows} {self.split} samples "
            f"(largest relative difference {self.max_error:.1e})"
            if self.checked_rows
            else "; not compared with specgrad predict (the run's data could not be read)"
        )
        return f"wrote {self.path} (checkpoint step {self.step}, opset {self.opset}){check}"


def require_onnx():
    """The onnx and onnxruntime modules, or an ExportError naming the extra that provides them."""
    try:
        import onnx
        import onnxruntime
    except ImportError as e:
        raise ExportError(f"specgrad export needs onnx and onnxruntime ({e.name} is missing): {EXTRA}") from None
    return onnx, onnxruntime


def export_onnx(
    run_dir: Path,
    output: Path | None = None,
    *,
    checkpoint: int | None = None,
    opset: int = DEFAULT_OPSET,
    warn: Callable[[str], None] = lambda message: None,
    roots=(),
) -> Exported:
    """Write the run's model as ONNX to ``output`` (default RUN_DIR/model.onnx) after checking it; raises
    ExportError, SpecError (an op without a lowering, at its spec line), RunFileError or CheckpointError.
    ``roots``: folders besides the working and run directories the run's data may be read from (for the
    check; without the data, the model is written unchecked, with a warning)."""

    if opset not in OPSETS:
        raise UnsupportedOpset(f"opset {opset} is not supported; use one of {OPSETS.start}..{OPSETS.stop - 1}")
    onnx, _ = require_onnx()
    run = load_run(Path(run_dir), warn, step=checkpoint, data=False, roots=roots)
    model = build(run, opset)
    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as e:
        raise ExportError(f"the exported model fails onnx.checker: {e}") from None
    data = model.SerializeToString()
    split, rows, error = check_against_predict(run, data, warn)
    path = Path(output) if output is not None else Path(run_dir) / "model.onnx"
    _write_bytes(path, data)
    return Exported(path, opset, run.step, rows, split, error)


def build(run, opset: int = DEFAULT_OPSET):
    """The ONNX model of a loaded run (``specgrad.run.evaluate.TrainedRun``), unchecked."""
    from specgrad.run.export.onnx import DECODERS, to_onnx

    spec, model = run.spec, run.spec.model
    loss = normalize(spec.data["loss"])["type"]
    decode = DECODERS.get(loss)
    if decode is None and make_loss(spec.data["loss"]).decode is not None:
        raise ExportError(f"the '{loss}' loss decodes its predictions, and that decoding has no ONNX form")
    metadata = {
        "specgrad.spec_name": spec.data["name"],
        "specgrad.spec_hash": spec_hash(spec.data),
        "specgrad.checkpoint_step": str(run.step),
        "specgrad.version": __version__,
        "specgrad.dtype": str(model.eval.prediction.dtype),
    }
    return to_onnx(
        model.eval,
        run.params,
        run.state,
        run.standardizer.stats,
        model_inputs(run.spec),
        spec.data["model"]["output"],
        decode,
        opset,
        metadata,
    )


def model_inputs(spec) -> list[str]:
    """The fields a prediction reads: the model's inputs, not the loss's target."""
    return [name for name in spec.model.inputs if name != spec.model.target]


def check_against_predict(run, model_bytes: bytes, warn) -> tuple[str | None, int, float]:
    """Run the model with onnxruntime on up to CHECK_ROWS samples of the run's held-out split (test, else
    val, else train) and compare every output with ``specgrad predict``'s; ExportError beyond TOLERANCE.
    Returns (split, rows, largest relative difference); (None, 0, 0.0) where the data cannot be read."""

    # the data files must lie where this command may read (a run directory's data.json may name any folder)
    problems = [d for d in data_file_diagnostics(run.spec.doc) if d.severity == "error"]
    try:
        if problems:
            raise SpecError(problems[:1])
        splits = load_splits(run.spec.data["data"], run.spec.data.get("seed", 0), run.base_dir)
    except (DataError, SpecError, OSError) as e:
        warn(f"not compared with specgrad predict: the run's data cannot be read ({e})")
        return None, 0, 0.0
    split = next(s for s in ("test", "val", "train") if s in splits)
    fields = {name: np.asarray(splits[split][name])[:CHECK_ROWS] for name in model_inputs(run.spec)}
    expected = predict(run, fields)
    got = run_onnx(model_bytes, fields)
    dtype = str(run.spec.model.eval.prediction.dtype)
    worst = 0.0
    for name, want in expected.items():
        error = relative_difference(got[name], want)
        worst = max(worst, error)
        if error > TOLERANCE.get(dtype, 1e-5):
            raise ExportError(
                f"onnxruntime's '{name}' differs from specgrad predict's by {error:.2e} (relative) "
                f"on the {split} split, beyond the {dtype} tolerance {TOLERANCE.get(dtype, 1e-5):.0e}"
            )
    return split, len(next(iter(fields.values()))), worst


def run_onnx(model_bytes: bytes, fields: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The model's outputs by name for raw input fields (cast to the dtypes the model's inputs declare)."""
    _, ort = require_onnx()
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    feed = {i.name: np.asarray(fields[i.name], _ORT_DTYPES[i.type]) for i in session.get_inputs()}
    return dict(zip([o.name for o in session.get_outputs()], session.run(None, feed)))


_ORT_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}


def relative_difference(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| relative to want's largest magnitude (labels: the fraction that differ)."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return float("inf")
    if want.dtype.kind in "iub":
        return float(np.mean(got != want)) if want.size else 0.0
    scale = float(np.max(np.abs(want), initial=0.0)) or 1.0
    return float(np.max(np.abs(got.astype(np.float64) - want), initial=0.0)) / scale


def _write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` in one step, as the run directory's files are written."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
