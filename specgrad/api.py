"""specgrad's public Python face: what the CLI does, as functions a notebook, a sweep or another tool calls.

    import specgrad as sg
    spec = sg.load("models/poly.yaml", overrides=["optimizer.lr=0.002"])   # SpecError carries diagnostics
    model = sg.compile(spec)                    # shapes, initial parameters, forward, loss and gradients, data
    run = sg.train(spec, "runs/poly/try1")      # a Run: summary, metrics, checkpoints
    sg.open_run("runs/poly/try1").evaluate("test")

Everything here is stable API; the modules below it (engine, model, spec, run) may change between versions.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from specgrad import _API as PUBLIC_NAMES
from specgrad.base.diagnostics import Diagnostic, Location, SpecError
from specgrad.base.fileio import json_text, parse_json, read_small_text  # noqa: F401  (json_text: for the CLI)
from specgrad.base.rng import INIT, stream
from specgrad.data.prepare import prepare_data
from specgrad.model.build import TrainStep, init_params
from specgrad.model.hessian import hvp
from specgrad.model.metrics import evaluate as evaluate_fields
from specgrad.run import evaluate as run_files
from specgrad.run.checkpoint import checkpoints_dir, list_checkpoints
from specgrad.run.distributed import Communicator, run_dir_agreed
from specgrad.run.distributed import connect as _connect
from specgrad.run.distributed import launched_rank as _launched_rank
from specgrad.run.gradcheck import ParamCheck, check_spec
from specgrad.run.runlog import metrics_lines
from specgrad.run.trainer import Hooks, RunError, Trainer, default_run_dir, resume_dir
from specgrad.spec import Spec, load_mapping, load_spec, with_top
from specgrad.spec import check_spec as _check_file

if TYPE_CHECKING:
    from specgrad.run.diagnose import Diagnosis
    from specgrad.run.export import Exported
    from specgrad.run.sweep.file import Sweep
    from specgrad.run.sweep.launch import Outcome as SweepOutcome

__all__ = list(PUBLIC_NAMES)  # one list of the public names: specgrad/__init__.py re-exports them lazily


ERRORS: tuple[type[Exception], ...]  # declared here, given by __getattr__ below on first use
UnsupportedOpset: type[Exception]  # the export error for an opset no lowering is written for


def __getattr__(name: str):
    # ERRORS and UnsupportedOpset import the modules that define them on first use: a command that succeeds
    # (the CLI reads ERRORS only when something was raised) does not pay for export, diagnose, sweeps...
    if name == "ERRORS":
        return _errors()
    if name == "UnsupportedOpset":
        from specgrad.run.export import UnsupportedOpset

        return UnsupportedOpset
    raise AttributeError(f"module 'specgrad.api' has no attribute {name!r}")


@cache
def _errors() -> tuple[type[Exception], ...]:
    """``ERRORS``: the library's errors whose message is meant for the user as it is (a run directory
    without its files, a damaged checkpoint, a failed export, a missing extra...): the CLI prints
    ``error: message`` for these and OSError; a SpecError prints its located diagnostics instead."""
    from specgrad.run import compare
    from specgrad.run.checkpoint import CheckpointError
    from specgrad.run.diagnose import DiagnoseError
    from specgrad.run.distributed import DistributedError
    from specgrad.run.export import ExportError
    from specgrad.run.plot import PlotError
    from specgrad.run.sweep.options import SweepDependencyError
    from specgrad.run.sweep.study import StudyError

    return (
        RunError,
        CheckpointError,
        DistributedError,
        run_files.RunFileError,
        compare.RunFileError,
        ExportError,
        PlotError,
        DiagnoseError,
        SweepDependencyError,
        StudyError,
    )


Arrays = dict[str, np.ndarray]


PathLike = str | os.PathLike


def load(source: PathLike | Mapping, overrides: Iterable[str] = (), roots: Iterable[PathLike] = ()) -> Spec:
    """Load, compose and validate a spec file (or a mapping, whose relative paths resolve against the
    current folder), with ``--set``-style ``overrides`` such as ``"optimizer.lr=0.01"``. Files are read only
    inside the working directory, the spec's folder and ``roots`` (``--root``). Raises :class:`SpecError`
    whose ``diagnostics`` are exactly what ``specgrad validate`` prints."""
    overrides = list(overrides)
    bad = [o for o in overrides if not isinstance(o, str)]
    if bad:
        raise SpecError.at(Location("--set", 1, 1), f"an override is a 'path=value' string, got {bad[0]!r:.80}")
    if isinstance(source, Mapping):
        return load_mapping(dict(source), overrides, list(roots))
    if not isinstance(source, (str, os.PathLike)):
        raise SpecError.at(Location("<spec>", 1, 1), f"a spec is a file path or a mapping, got {type(source).__name__}")
    return load_spec(source, overrides, list(roots))


def check(path: PathLike, overrides: Iterable[str] = ()) -> list[Diagnostic]:
    """Every error and warning ``specgrad validate`` reports for one spec file, without raising."""
    return _check_file(path, list(overrides))[1]


def validate_file(
    path: PathLike, overrides: Iterable[str] = (), roots: Iterable[PathLike] = ()
) -> tuple[bool, list[Diagnostic]]:
    """(valid, diagnostics) for one file as ``specgrad validate`` checks it: a spec with ``overrides``, or a
    sweep file with every point of its grid and the corners of its ranges."""
    from specgrad.run.sweep.file import check_sweep, is_sweep_file

    if is_sweep_file(path):
        return check_sweep(path)
    return _check_file(path, list(overrides), list(roots))


def find_specs(paths: Iterable[str]) -> tuple[list[Path], list[str]]:
    """The spec files named by ``paths`` (files, folders searched for *.yaml -- names starting with ``_`` are
    fragments and skipped -- or globs), and the paths that named nothing."""
    from specgrad.spec import find_spec_files

    return find_spec_files([Path(p) for p in paths])


def split_specs(files: Iterable[PathLike]) -> tuple[list, list]:
    """(specs, others) of ``files``, in order: others are YAML files without a top-level ``specgrad:`` or
    ``extends:`` key (``--skip-non-specs``)."""
    from specgrad.spec.kind import split_specs as split

    return split([Path(f) for f in files])


def flag_errors(paths: Iterable[PathLike], overrides: Iterable[str]) -> list[Diagnostic]:
    """Mistakes in the ``--set`` flags themselves (no '=', a value that does not parse, a path the spec
    cannot have), found on the first of ``paths`` that shows any; [] when there are none."""
    from specgrad.spec.overrides import override_errors

    overrides = list(overrides)
    if overrides:
        for path in paths:
            errors = override_errors(path, overrides)
            if errors:
                return errors
    return []


def config_text(
    path: PathLike, overrides: Iterable[str] = (), roots: Iterable[PathLike] = (), explain: bool = False
) -> str:
    """The resolved spec as YAML (extends and includes merged, overrides applied, references resolved);
    with ``explain`` each line ends in the ``file:line:col`` its value comes from. Raises SpecError."""
    from specgrad.spec.compose import compose, default_roots
    from specgrad.spec.render import resolved_yaml

    return resolved_yaml(compose(path, list(overrides), default_roots(path, list(roots))), explain)


def schema(sweep: bool = False) -> dict:
    """The JSON Schema (draft 2020-12) of spec files as written, or of sweep files."""
    if sweep:
        from specgrad.run.sweep.file import sweep_schema

        return sweep_schema()
    from specgrad.spec.schema import editor_schema

    return editor_schema()


def graph(spec: Spec, *, dot: bool = False, backward: bool = False) -> str:
    """The compiled model, one op a line with its inferred shape (or a Graphviz digraph with ``dot``);
    ``backward`` adds the backward pass the engine built."""
    from specgrad.engine.show import render_dot, render_text

    return (render_dot if dot else render_text)(spec.model, backward)


@dataclass
class Model:
    """A compiled spec: the engine's graph of the model, with what it takes to run it by hand."""

    spec: Spec

    @property
    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: node.shape for name, node in self.spec.model.params.items()}

    @property
    def input_names(self) -> list[str]:
        """The data fields a batch holds: the model's inputs, then the loss target."""
        return list(self.spec.model.inputs)

    def init_params(self) -> Arrays:
        """The initial parameters training starts from (drawn from the spec's seed, as the trainer draws them)."""
        return init_params(self.spec.model, stream(self.spec.settings.seed, INIT))

    @cached_property
    def data(self) -> dict[str, Arrays]:
        """The prepared splits as training sees them: {"train", "val"?, "test"?} -> {field: array}."""
        return prepare_data(self.spec).splits

    def forward(
        self,
        params: Mapping[str, np.ndarray],
        batch: Mapping[str, np.ndarray],
        state: Mapping[str, np.ndarray] | None = None,
    ) -> np.ndarray:
        """The model's output on ``batch`` in eval mode (no dropout; batchnorm's running statistics)."""
        forward = self.spec.model.eval
        (out,) = forward.plan([forward.prediction])(
            *forward.feed(dict(batch), dict(params), dict(state) if state else self._state())
        )
        return np.asarray(out)

    def loss_and_grads(
        self, params: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray], step: int = 0
    ) -> tuple[float, Arrays]:
        """The training loss on ``batch`` and its gradient for every parameter, as the trainer's step
        ``step`` computes them (train mode: dropout drawn from the seed and the step)."""
        train_step = TrainStep(self.spec.model, self.spec.settings.seed)
        fields = [batch[name] for name in self.spec.model.inputs]
        loss, grads = train_step(fields, [params[name] for name in self.spec.model.params], step)
        return float(loss), {name: np.array(g) for name, g in zip(self.spec.model.params, grads)}

    def hvp(
        self, params: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray], vector: Mapping[str, np.ndarray]
    ) -> Arrays:
        """H v, H the Hessian of the training loss on ``batch`` in the parameters at ``params``, for ``vector``
        given as one block per parameter: the backward pass differentiated again (docs/engine.md)."""
        fields = {name: batch[name] for name in self.spec.model.inputs if name in batch}
        return hvp(self.spec.model, fields, dict(params), dict(vector), self._state())

    def evaluate(self, params: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        """The spec's loss and metrics on ``batch`` in eval mode."""
        return evaluate_fields(self.spec.model, dict(params), dict(batch), self.spec.settings.metrics)

    def _state(self) -> Arrays:
        return TrainStep(self.spec.model, 0).state


def compile(spec: Spec) -> Model:  # noqa: A001 -- the pipeline's own word for it
    """The compiled model of a loaded spec (validation already built it; this gives it a handle)."""
    return Model(spec)


@dataclass
class Run:
    """A run directory: its summary, metrics and checkpoints; evaluation and prediction with its weights."""

    path: Path
    summary: dict = field(default_factory=dict)
    # folders besides the working directory and the run's own its data may be read from (a run that ``train``
    # returns: those its spec could read)
    roots: tuple = ()

    @property
    def metrics(self) -> list[dict]:
        """metrics.jsonl's records, one per logged step."""
        return [record for _, record in metrics_lines(self.path / "metrics.jsonl")]

    @property
    def checkpoints_dir(self) -> Path:
        return checkpoints_dir(self.path)

    @property
    def checkpoints(self) -> list[Path]:
        return list_checkpoints(checkpoints_dir(self.path))

    @property
    def spec(self) -> Spec:
        """The run's spec.yaml, loaded (its data files are checked where data is read: ``evaluate``)."""
        return load_spec(self.path / "spec.yaml", roots=self.roots, data_files=False)

    def evaluate(self, split: str | None = None) -> dict:
        """The loss and metrics of the latest checkpoint on ``split`` (default: test, else val, else train)."""
        return run_files.evaluate_run(self.path, split, roots=self.roots)

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Arrays:
        """Outputs for raw inputs (transformed as the training data was), keyed by the spec's output name,
        plus the predicted label and probabilities for classifiers."""
        return run_files.predict(run_files.load_run(self.path, data=False), dict(inputs))


def train(
    spec: Spec,
    run_dir: PathLike | None = None,
    *,
    resume: bool = False,
    allow_spec_change: bool = False,
    on_step: Callable[[int, float], None] | None = None,
    on_warning: Callable[[str], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_start: Callable[[int, int], None] | None = None,
    on_batch: Callable[[int], None] | None = None,
    on_gradients: Callable[[int, float, Arrays], float] | None = None,
    validate: Callable[[int, Arrays], dict[str, float]] | None = None,
    comm: Communicator | None = None,
) -> Run:
    """Train ``spec`` into ``run_dir`` (default runs/NAME/TIMESTAMP). ``on_start(first_step, total)`` hears
    the start (after a resume's checkpoint is read), ``on_step(step, loss)`` every step; ``should_stop()``
    returning true ends the run at the next step boundary with a checkpoint (status "interrupted"), as
    Ctrl-C does. ``on_batch(index)`` is called before each micro-batch is computed; ``on_gradients(step,
    loss, grads)`` sees each step's gradients before clipping and the divergence check, may change them in
    place, and returns the loss to use; ``validate(step, params)`` replaces the evaluation on the val split
    (docs/api.md, "Callbacks"). ``comm`` (:func:`connect`) makes it one rank of a data-parallel run. Raises
    SpecError (bad data), RunError or CheckpointError."""
    path = Path(run_dir) if run_dir is not None else default_run_dir(spec.data["name"])
    unset = Hooks()
    hooks = Hooks(
        on_start=on_start or unset.on_start,
        on_step=on_step or unset.on_step,
        on_warning=on_warning or unset.on_warning,
        should_stop=should_stop or unset.should_stop,
        on_batch=on_batch,
        on_gradients=on_gradients,
        validate=validate,
    )
    summary = Trainer(spec, path, hooks, allow_spec_change=allow_spec_change, comm=comm).run(resume=resume)
    return Run(path, summary, tuple(spec.doc.roots))


def launched_rank() -> int | None:
    """This process's rank when an MPI launcher (mpiexec, srun) started it, else None; imports nothing."""
    return _launched_rank()


def connect() -> Communicator:
    """The processes of this run: all ranks of an MPI job (docs/distributed.md), or this process alone."""
    return _connect()


def train_run_dir(
    spec_path: PathLike,
    name: str,
    *,
    resume: bool = False,
    run_dir: PathLike | None = None,
    comm: Communicator | None = None,
) -> Path:
    """Where ``specgrad train`` writes: ``run_dir`` if given; else, with ``resume``, the run whose own spec.yaml
    ``spec_path`` is or the newest run of ``name`` (RunError when there is none); else a new
    runs/NAME/TIMESTAMP. Under ``comm``, every rank gets rank 0's answer."""
    if run_dir is None:
        run_dir = resume_dir(Path(spec_path), name) if resume else default_run_dir(name)
        if run_dir is None:
            raise RunError(f"nothing to resume: no run of '{name}' under runs/{name}; give --run-dir")
    return run_dir_agreed(comm, Path(run_dir)) if comm is not None else Path(run_dir)


def open_run(run_dir: str | os.PathLike, roots: Iterable[PathLike] = ()) -> Run:
    """A finished (or interrupted) run directory; ``roots``: folders besides the working and run directories
    its data may be read from (``--root``)."""
    path = Path(run_dir)
    if not (path / "spec.yaml").is_file():
        raise run_files.RunFileError(f"{path} is not a run directory (it has no spec.yaml)")
    summary_file = path / "summary.json"
    try:
        summary = parse_json(read_small_text(summary_file)) if summary_file.is_file() else {}
    except ValueError as e:
        raise run_files.RunFileError(f"cannot read {summary_file}: {e}") from None
    except OSError as e:  # its message names the file already
        raise run_files.RunFileError(str(e)) from None
    if not isinstance(summary, dict):
        raise run_files.RunFileError(f"{summary_file} is not a JSON object")
    return Run(path, summary, tuple(roots))


def gradcheck(spec: Spec, batch_size: int = 8) -> list[ParamCheck]:
    """Finite differences against the engine's gradients, per parameter, in float64 (the spec is recompiled
    with ``dtype=float64`` when it is not already)."""
    if spec.settings.dtype != "float64":
        spec = with_top(spec, dtype="float64")
    return check_spec(spec, batch_size=batch_size)


def evaluate(
    run_dir: PathLike,
    split: str | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    roots: Iterable[PathLike] = (),
) -> dict:
    """``specgrad eval``: the loss and metrics of a run's latest checkpoint on ``split`` (default: test, else
    val, else train), with the step. ``warn`` hears what is off but not fatal (a damaged latest checkpoint passed
    over for the one before);
    the run's data is read only inside the working directory, the run directory and ``roots`` (``--root``)."""
    return run_files.evaluate_run(Path(run_dir), split, warn=warn or (lambda message: None), roots=list(roots))


def predict(
    run_dir: PathLike,
    input_file: PathLike,
    output: PathLike | None = None,
    *,
    warn: Callable[[str], None] | None = None,
) -> str | None:
    """``specgrad predict``: predictions of a run's latest checkpoint for the samples in ``input_file`` (.csv or
    .npz), written to ``output`` (.csv or .npz); without ``output``, the CSV text is returned."""
    return run_files.predict_file(
        Path(run_dir), Path(input_file), Path(output) if output else None, warn=warn or (lambda message: None)
    )


def export(
    run_dir: PathLike,
    output: PathLike | None = None,
    *,
    checkpoint: int | None = None,
    opset: int | None = None,
    warn: Callable[[str], None] | None = None,
    roots: Iterable[PathLike] = (),
) -> Exported:
    """Export a run's model to ONNX (``output`` default RUN_DIR/model.onnx; needs specgrad[onnx]), checked
    against predict; ``opset`` default and range in docs/export.md (:class:`UnsupportedOpset` outside it)."""
    from specgrad.run.export import DEFAULT_OPSET, export_onnx

    return export_onnx(
        Path(run_dir),
        Path(output) if output else None,
        checkpoint=checkpoint,
        opset=DEFAULT_OPSET if opset is None else opset,
        warn=warn or (lambda message: None),
        roots=list(roots),
    )


def plot(run_dir: PathLike, output: PathLike | None = None) -> Path:
    """A PNG of a run's training loss, learning rate and validation metrics (default RUN_DIR/plot.png; needs
    specgrad[plot]); returns its path."""
    from specgrad.run.plot import plot_run

    return plot_run(Path(run_dir), Path(output) if output else None)


def diagnose(run_dir: PathLike, roots: Iterable[PathLike] = ()) -> Diagnosis:
    """Read a run and find exploding or vanishing gradients, poor conditioning, plateaus and overfitting, each
    with its evidence and a next step (``.to_json()`` for tools, :func:`diagnosis_text` for people).
    ``roots``: folders besides the working and run directories its data may be read from (the conditioning
    check reads it)."""
    from specgrad.run.diagnose import diagnose as diagnose_run

    return diagnose_run(Path(run_dir), roots=list(roots))


def diagnosis_text(diagnosis: Diagnosis) -> str:
    """A :func:`diagnose` result as ``specgrad diagnose`` prints it."""
    from specgrad.run.diagnose import format_text

    return format_text(diagnosis)


def find_runs(paths: Iterable[PathLike] = ("runs",)) -> list[dict]:
    """One flat record per run directory named by ``paths`` or found below them: run, name, status, steps,
    seconds, objective, value, then final metrics (``specgrad runs``)."""
    from specgrad.run.compare import find_runs as find
    from specgrad.run.compare import run_row

    return [run_row(d) for d in find([Path(p) for p in paths])]


def runs_table(rows: list[dict], format: str = "table") -> str:  # noqa: A002 -- the CLI's flag
    """:func:`find_runs`'s records as a table, json or csv."""
    from specgrad.run.compare import format_rows

    return format_rows(rows, format)


def compare_runs(run_dirs: Iterable[PathLike]) -> str:
    """A table with a column per run: the resolved spec values that differ, then status and final metrics."""
    from specgrad.run.compare import compare_runs as compare

    return compare([Path(d) for d in run_dirs])


def plot_runs(run_dirs: Iterable[PathLike], output: PathLike) -> Path:
    """The runs' training loss and validation metrics overlaid in one PNG (needs specgrad[plot])."""
    from specgrad.run.compare import plot_runs as plot_all

    return plot_all([Path(d) for d in run_dirs], Path(output))


def load_sweep(path: PathLike) -> Sweep:
    """Load a sweep file, every point of it checked against its base spec first; raises SpecError."""
    from specgrad.run.sweep.file import check_sweep
    from specgrad.run.sweep.file import load_sweep as load_file

    ok, diagnostics = check_sweep(path)
    if not ok:
        raise SpecError(diagnostics)
    return load_file(path)


def run_sweep(
    sweep: Sweep,
    *,
    workers: int | None = None,
    storage: str | None = None,
    sweep_dir: PathLike | None = None,
    echo: Callable[[str], None] = print,
    quiet: bool = False,
) -> SweepOutcome:
    """Run a loaded sweep until its study has its trials, in ``workers`` processes here (default the sweep
    file's), with progress to ``echo``; ``storage`` a database URL shared by every machine. Run it again
    after a kill: finished trials stay, interrupted ones resume."""
    from specgrad.run.sweep.launch import run_sweep as launch
    from specgrad.run.sweep.progress import SweepView

    with SweepView(sweep, echo, quiet) as view:
        return launch(sweep, workers, storage, Path(sweep_dir) if sweep_dir else None, view.update)
