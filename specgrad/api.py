"""specgrad's public Python face: what the CLI does, as functions a notebook, a sweep or another tool calls.

    import specgrad as sg
    spec = sg.load("models/poly.yaml", overrides=["optimizer.lr=0.002"])   # SpecError carries diagnostics
    model = sg.compile(spec)                    # shapes, initial parameters, forward, loss and gradients, data
    run = sg.train(spec, "runs/poly/try1")      # a Run: summary, metrics, checkpoints
    sg.open_run("runs/poly/try1").evaluate("test")

Everything here is stable API; the modules below it (engine, model, spec, run) may change between versions.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from specgrad.base.diagnostics import Diagnostic, SpecError
from specgrad.base.fileio import read_small_text
from specgrad.base.rng import INIT, stream
from specgrad.data.prepare import prepare_data
from specgrad.model.build import TrainStep, init_params
from specgrad.model.hessian import hvp
from specgrad.model.metrics import evaluate as evaluate_fields
from specgrad.run import evaluate as run_files
from specgrad.run.checkpoint import list_checkpoints
from specgrad.run.gradcheck import ParamCheck, check_spec
from specgrad.run.runlog import metrics_lines
from specgrad.run.trainer import Hooks, Trainer, default_run_dir
from specgrad.spec import Spec, load_mapping, load_spec
from specgrad.spec import check_spec as _check_file

__all__ = ["Diagnostic", "Model", "ParamCheck", "Run", "Spec", "SpecError", "check", "compile", "gradcheck",
           "load", "open_run", "train"]

Arrays = dict[str, np.ndarray]


def load(source: str | os.PathLike | Mapping, overrides: Iterable[str] = ()) -> Spec:
    """Load, compose and validate a spec file (or a mapping, whose relative paths resolve against the
    current folder), with ``--set``-style ``overrides`` such as ``"optimizer.lr=0.01"``. Raises
    :class:`SpecError` whose ``diagnostics`` are exactly what ``specgrad validate`` prints."""
    if isinstance(source, Mapping):
        return load_mapping(dict(source), list(overrides))
    return load_spec(source, list(overrides))


def check(path: str | os.PathLike, overrides: Iterable[str] = ()) -> list[Diagnostic]:
    """Every error and warning ``specgrad validate`` reports for one spec file, without raising."""
    return _check_file(path, list(overrides))[1]


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

    def forward(self, params: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray],
                state: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The model's output on ``batch`` in eval mode (no dropout; batchnorm's running statistics)."""
        forward = self.spec.model.eval
        (out,) = forward.plan([forward.prediction])(*forward.feed(dict(batch), dict(params),
                                                                  dict(state) if state else self._state()))
        return np.asarray(out)

    def loss_and_grads(self, params: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray],
                       step: int = 0) -> tuple[float, Arrays]:
        """The training loss on ``batch`` and its gradient for every parameter, as the trainer's step
        ``step`` computes them (train mode: dropout drawn from the seed and the step)."""
        train_step = TrainStep(self.spec.model, self.spec.settings.seed)
        fields = [batch[name] for name in self.spec.model.inputs]
        loss, grads = train_step(fields, [params[name] for name in self.spec.model.params], step)
        return float(loss), {name: np.array(g) for name, g in zip(self.spec.model.params, grads)}

    def hvp(self, params: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray],
            vector: Mapping[str, np.ndarray]) -> Arrays:
        """H v, H the Hessian of the training loss on ``batch`` in the parameters at ``params``, for ``vector``
        given as one block per parameter: the backward pass differentiated again (docs/engine.md)."""
        fields = {name: batch[name] for name in self.spec.model.inputs if name in batch}
        return hvp(self.spec.model, fields, dict(params), dict(vector), self._state())

    def evaluate(self, params: Mapping[str, np.ndarray], batch: Mapping[str, np.ndarray]) -> dict[str, float]:
        """The spec's loss and metrics on ``batch`` in eval mode."""
        return evaluate_fields(self.spec.model, dict(params), dict(batch), self.spec.settings.metrics)

    def _state(self) -> Arrays:
        return TrainStep(self.spec.model, 0).state


def compile(spec: Spec) -> Model:   # noqa: A001 -- the pipeline's own word for it
    """The compiled model of a loaded spec (validation already built it; this gives it a handle)."""
    return Model(spec)


@dataclass
class Run:
    """A run directory: its summary, metrics and checkpoints; evaluation and prediction with its weights."""
    path: Path
    summary: dict = field(default_factory=dict)

    @property
    def metrics(self) -> list[dict]:
        """metrics.jsonl's records, one per logged step."""
        return [record for _, record in metrics_lines(self.path / "metrics.jsonl")]

    @property
    def checkpoints(self) -> list[Path]:
        return list_checkpoints(self.path / "checkpoints")

    @property
    def spec(self) -> Spec:
        return load_spec(self.path / "spec.yaml")

    def evaluate(self, split: str | None = None) -> dict:
        """The loss and metrics of the latest checkpoint on ``split`` (default: test, else val, else train)."""
        return run_files.evaluate_run(self.path, split)

    def predict(self, inputs: Mapping[str, np.ndarray]) -> Arrays:
        """Outputs for raw inputs (transformed as the training data was), keyed by the spec's output name,
        plus the predicted label and probabilities for classifiers."""
        return run_files.predict(run_files.load_run(self.path), dict(inputs))


def train(spec: Spec, run_dir: str | os.PathLike | None = None, *, resume: bool = False,
          allow_spec_change: bool = False, on_step: Callable[[int, float], None] | None = None,
          on_warning: Callable[[str], None] | None = None, should_stop: Callable[[], bool] | None = None,
          on_batch: Callable[[int], None] | None = None,
          on_gradients: Callable[[int, float, Arrays], float] | None = None,
          validate: Callable[[int, Arrays], dict[str, float]] | None = None) -> Run:
    """Train ``spec`` into ``run_dir`` (default runs/NAME/TIMESTAMP). ``on_step(step, loss)`` hears every
    step; ``should_stop()`` returning true ends the run at the next step boundary with a checkpoint
    (status "interrupted"), as Ctrl-C does. ``on_batch(index)`` is called before each micro-batch is
    computed; ``on_gradients(step, loss, grads)`` sees each step's gradients before clipping and the
    divergence check, may change them in place, and returns the loss to use; ``validate(step, params)``
    replaces the evaluation on the val split (docs/api.md, "Callbacks"). Raises SpecError (bad data),
    RunError or CheckpointError."""
    path = Path(run_dir) if run_dir is not None else default_run_dir(spec.data["name"])
    given = {"on_step": on_step, "on_warning": on_warning, "should_stop": should_stop, "on_batch": on_batch,
             "on_gradients": on_gradients, "validate": validate}
    hooks = Hooks(**{name: hook for name, hook in given.items() if hook is not None})
    summary = Trainer(spec, path, hooks, allow_spec_change=allow_spec_change).run(resume=resume)
    return Run(path, summary)


def open_run(run_dir: str | os.PathLike) -> Run:
    """A finished (or interrupted) run directory."""
    path = Path(run_dir)
    if not (path / "spec.yaml").is_file():
        raise run_files.RunFileError(f"{path} is not a run directory (it has no spec.yaml)")
    summary_file = path / "summary.json"
    summary = json.loads(read_small_text(summary_file)) if summary_file.is_file() else {}
    return Run(path, summary)


def gradcheck(spec: Spec, batch_size: int = 8) -> list[ParamCheck]:
    """Finite differences against the engine's gradients, per parameter, in float64 (the spec is recompiled
    with ``dtype=float64`` when it is not already)."""
    if spec.settings.dtype != "float64":
        spec = load_spec(spec.doc.file, ["dtype=float64"])
    return check_spec(spec, batch_size=batch_size)
