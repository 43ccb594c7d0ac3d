"""The ``specgrad`` command. Thin: parse flags, call the library, print, set the exit code.

Exit codes (contract): 0 success, 1 invalid spec or failed run, 2 usage error. Bad input prints located
errors, never a traceback. Library modules are imported inside the commands so ``--help`` stays fast.
"""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Declarative training: a YAML spec in, a trained, resumable run out.")

SET_HELP = "Override a spec value, e.g. --set optimizer.lr=0.01 (YAML-typed; repeatable)."


class Format(str, Enum):
    text = "text"
    json = "json"
    github = "github"


def _err(message: str) -> None:
    typer.echo(message, err=True)


def _spec_files(paths: List[str]) -> List[Path]:
    """Files as given, folders searched for *.yaml / *.yml, globs expanded."""
    import glob
    out = []
    for p in paths:
        matches = [Path(m) for m in sorted(glob.glob(p))] if glob.has_magic(p) else [Path(p)]
        for m in matches:
            out.extend(sorted(f for f in m.rglob("*") if f.suffix in (".yaml", ".yml")) if m.is_dir() else [m])
    return out


@app.command()
def validate(
    paths: List[str] = typer.Argument(..., help="Spec files, folders (searched for *.yaml) or globs."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    format: Format = typer.Option(Format.text, "--format", help="text, json (one object per line) or github."),
):
    """Check specs without training: schema, names, ops and shapes. Every error, with file:line:col."""
    from specgrad.spec import SpecError, load_spec
    from specgrad.spec.errors import Diagnostic, Location, format_diagnostics

    files = _spec_files(paths)
    if not files:
        _err("error: no spec files found in " + " ".join(paths))
        raise typer.Exit(1)
    failed = 0
    for f in files:
        try:
            diags = load_spec(f, set_).warnings
        except SpecError as e:
            diags = e.diagnostics
            failed += 1
        if diags:
            typer.echo(format_diagnostics(diags, format.value))
    if format == Format.text:
        _err(f"{len(files) - failed} of {len(files)} spec(s) valid")
    raise typer.Exit(1 if failed else 0)


@app.command()
def train(
    spec: Path = typer.Argument(..., help="The spec file to train."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where the run goes (default runs/NAME/TIMESTAMP)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in the run directory "
                                "(default: the newest run of this spec's name)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
):
    """Train a spec: validate, compile, run, checkpoint. Ctrl-C saves a checkpoint and stops."""
    from specgrad.run.checkpoint import CheckpointError
    from specgrad.run.trainer import Hooks, RunError, Trainer, default_run_dir, latest_run_dir
    from specgrad.spec import SpecError, load_spec
    from specgrad.spec.errors import format_diagnostics

    try:
        loaded = load_spec(spec, set_)
        if loaded.warnings and not quiet:
            _err(format_diagnostics(loaded.warnings, "text"))
        name = loaded.data["name"]
        if run_dir is None:
            run_dir = latest_run_dir(name) if resume else default_run_dir(name)
            if run_dir is None:
                _err(f"error: nothing to resume: no run of '{name}' under runs/{name}; give --run-dir")
                raise typer.Exit(1)
        progress = _Progress(quiet)
        trainer = Trainer(loaded, run_dir, progress.hooks())
        with progress:
            summary = trainer.run(resume=resume)
    except SpecError as e:
        _err(str(e))
        raise typer.Exit(1)
    except (RunError, CheckpointError, OSError) as e:
        _err(f"error: {e}")
        raise typer.Exit(1)
    if not quiet:
        typer.echo(f"{summary['status']}: {summary['steps']} steps in {summary['seconds']:.2f}s, "
                   f"train loss {summary['train']['loss']:.6g} -> {run_dir}")
    if summary["status"] == "interrupted":
        raise typer.Exit(128 + summary.get("signal", 2))
    raise typer.Exit(1 if summary["status"] == "diverged" else 0)


@app.command()
def schema():
    """Print the JSON Schema of spec files (draft 2020-12)."""
    from specgrad.spec.schema import build_schema
    typer.echo(json.dumps(build_schema(), indent=2))


class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"


@app.command("eval")
def eval_(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/NAME/TIMESTAMP)."),
    split: Optional[Split] = typer.Option(None, "--split", help="Default: test, else val, else train."),
):
    """Evaluate a run's latest checkpoint on a split: the loss and the spec's metrics, as JSON."""
    from specgrad.evaluate import evaluate_run
    with _run_errors():
        result = evaluate_run(run_dir, split.value if split else None, warn=lambda m: _err(f"warning: {m}"))
    typer.echo(json.dumps(result, indent=2))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/NAME/TIMESTAMP)."),
    input: Path = typer.Argument(..., help="Samples to predict on: .csv (header row) or .npz (arrays by input name)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="A .csv or .npz file (default: csv on stdout)."),
):
    """Predict with a run's latest checkpoint, transforming the input as the training data was."""
    from specgrad.evaluate import predict_file
    with _run_errors():
        text = predict_file(run_dir, input, output, warn=lambda m: _err(f"warning: {m}"))
    if text is not None:
        typer.echo(text, nl=False)


@contextmanager
def _run_errors():
    """Errors in a run directory or its inputs: printed, exit 1, no traceback."""
    from specgrad.evaluate import RunFileError
    from specgrad.run.checkpoint import CheckpointError
    from specgrad.spec import SpecError
    try:
        yield
    except SpecError as e:
        _err(str(e))
        raise typer.Exit(1)
    except (RunFileError, CheckpointError, OSError) as e:
        _err(f"error: {e}")
        raise typer.Exit(1)


class _Progress:
    """A rich progress bar on a terminal; nothing otherwise or with --quiet."""

    def __init__(self, quiet: bool):
        self.bar = None
        if not quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TextColumn("loss {task.fields[loss]:.4g}"), TimeRemainingColumn(), transient=True)
        self.task = None
        self.quiet = quiet

    def hooks(self):
        from specgrad.run.trainer import Hooks

        def on_start(start, total):
            if self.bar:
                self.task = self.bar.add_task("train", total=total, completed=start, loss=float("nan"))

        def on_step(step, loss):
            if self.bar and (step % 10 == 0 or step == self.bar.tasks[0].total):
                self.bar.update(self.task, completed=step, loss=loss)

        def on_warning(message):
            if not self.quiet:
                _err(f"warning: {message}")
        return Hooks(on_start, on_step, on_warning)

    def __enter__(self):
        if self.bar:
            self.bar.start()

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()


def main():
    app()


if __name__ == "__main__":
    main()
