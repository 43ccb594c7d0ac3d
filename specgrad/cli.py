"""The ``specgrad`` command. Thin: parse flags, call the library, print, set the exit code.

Exit codes (contract): 0 success, 1 invalid spec or failed run, 2 usage error. Bad input prints located
errors, never a traceback: every command calls the library inside ``_reported``. Library modules are
imported inside the commands so ``--help`` stays fast.
"""
from __future__ import annotations

import gc
import json
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import List, Optional

import typer

# Plain help text: rich's help formatter alone would import rich, markdown-it and pygments (~55 ms) into
# every `--help`.
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                  help="Declarative training: a YAML spec in, a trained, resumable run out.")

SET_HELP = "Override a spec value, e.g. --set optimizer.lr=0.01 (YAML-typed; repeatable)."


class Format(str, Enum):
    text = "text"
    json = "json"
    github = "github"


def _err(message: str) -> None:
    typer.echo(message, err=True)


@contextmanager
def _reported(*errors: type[Exception]):
    """How every command fails on bad input: a SpecError prints its located diagnostics; OSError and the
    library ``errors`` the command names (a damaged checkpoint, a run directory without its files...) print
    ``error: message``. Exit 1, never a traceback."""
    from specgrad.base.diagnostics import SpecError
    try:
        yield
    except SpecError as e:
        _err(str(e))
        raise typer.Exit(1)
    except (OSError, *errors) as e:
        _err(f"error: {e}")
        raise typer.Exit(1)


@app.command()
def validate(
    paths: List[str] = typer.Argument(..., help="Spec files, folders (searched for *.yaml; names starting with _ "
                                      "are fragments and skipped) or globs."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    format: Format = typer.Option(Format.text, "--format", help="text, json (one object per line) or github."),
):
    """Check specs without training: schema, names, ops, shapes, run settings. Every error, with file:line:col.
    A sweep file is checked with every point of its grid and the corners of its ranges."""
    from specgrad.spec import check_spec, find_spec_files
    from specgrad.base.diagnostics import format_diagnostics
    from specgrad.run.sweep.file import check_sweep, is_sweep_file

    files, unmatched = find_spec_files(paths)
    if unmatched:
        _err("error: no spec files found in " + " ".join(unmatched))
        raise typer.Exit(2)
    failed = 0
    for f in files:
        with _reported():
            ok, diags = check_sweep(f) if is_sweep_file(f) else check_spec(f, set_)
        _collect_from_here()          # the first spec imported and built everything the others need
        failed += not ok
        if diags:
            typer.echo(format_diagnostics(diags, format.value))
    if format == Format.text:
        _err(f"{len(files) - failed} of {len(files)} spec(s) valid")
    raise typer.Exit(1 if failed else 0)


@app.command()
def config(
    spec: Path = typer.Argument(..., help="The spec file."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    explain: bool = typer.Option(False, "--explain", help="End each line with the file:line:col its value "
                                 "comes from, and what it overrides."),
):
    """Print the resolved spec: extends and includes merged, --set applied, ${...} references resolved."""
    from specgrad.spec.compose import compose
    from specgrad.spec.render import resolved_yaml

    with _reported():
        doc = compose(spec, set_)
    typer.echo(resolved_yaml(doc, explain), nl=False)


@app.command()
def train(
    spec: Path = typer.Argument(..., help="The spec file to train."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    run_dir: Optional[Path] = typer.Option(None, "--run-dir", help="Where the run goes (default runs/NAME/TIMESTAMP)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint in the run directory "
                                "(default: the newest run of this spec's name)."),
    allow_spec_change: bool = typer.Option(False, "--allow-spec-change", help="Resume even though the spec "
                                           "differs from the checkpoint's (the differences are printed)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
):
    """Train a spec: validate, compile, run, checkpoint. Ctrl-C (or SIGTERM) saves a checkpoint at the next
    step boundary and stops; a second Ctrl-C stops at once."""
    from specgrad.run.checkpoint import CheckpointError
    from specgrad.run.trainer import RunError, Trainer, default_run_dir, resume_dir
    from specgrad.spec import load_spec
    from specgrad.base.diagnostics import format_diagnostics

    with _reported(RunError, CheckpointError):
        loaded = load_spec(spec, set_)
        if loaded.warnings and not quiet:
            _err(format_diagnostics(loaded.warnings, "text"))
        name = loaded.data["name"]
        if run_dir is None:
            run_dir = resume_dir(spec, name) if resume else default_run_dir(name)
            if run_dir is None:
                raise RunError(f"nothing to resume: no run of '{name}' under runs/{name}; give --run-dir")
        progress = _Progress(quiet)
        try:
            trainer = Trainer(loaded, run_dir, progress.hooks(), allow_spec_change=allow_spec_change)
            _collect_from_here()
            with progress:
                summary = trainer.run(resume=resume)
        except KeyboardInterrupt:      # Ctrl-C before the loop, or a second one in it (the first saves, stops)
            _err(f"stopped at once by Ctrl-C, without saving; --resume continues from the last checkpoint in "
                 f"{run_dir}/checkpoints")
            raise typer.Exit(130)
    if not quiet:
        typer.echo(f"{summary['status']}: {summary['steps']} steps in {summary['seconds']:.2f}s, "
                   f"train loss {summary['train']['loss']:.6g} -> {run_dir}")
    if summary["status"] == "interrupted":
        raise typer.Exit(128 + summary.get("signal", 2))
    raise typer.Exit(1 if summary["status"] == "diverged" else 0)


@app.command()
def schema(sweep: bool = typer.Option(False, "--sweep", help="The schema of sweep files instead.")):
    """Print the JSON Schema of spec files as written (draft 2020-12), for editors and other validators."""
    if sweep:
        from specgrad.run.sweep.file import sweep_schema
        typer.echo(json.dumps(sweep_schema(), indent=2))
        return
    from specgrad.spec.schema import editor_schema
    typer.echo(json.dumps(editor_schema(), indent=2))


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
    from specgrad.run.evaluate import RunFileError, evaluate_run
    from specgrad.run.checkpoint import CheckpointError
    with _reported(RunFileError, CheckpointError):
        result = evaluate_run(run_dir, split.value if split else None, warn=lambda m: _err(f"warning: {m}"))
    typer.echo(json.dumps(result, indent=2))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/NAME/TIMESTAMP)."),
    input: Path = typer.Argument(..., help="Samples to predict on: .csv (header row) or .npz (arrays by input name)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="A .csv or .npz file (default: csv on stdout)."),
):
    """Predict with a run's latest checkpoint, transforming the input as the training data was."""
    from specgrad.run.evaluate import RunFileError, predict_file
    from specgrad.run.checkpoint import CheckpointError
    with _reported(RunFileError, CheckpointError):
        text = predict_file(run_dir, input, output, warn=lambda m: _err(f"warning: {m}"))
    if text is not None:
        typer.echo(text, nl=False)


class _Progress:
    """A rich progress bar (loss, ETA) on a terminal; otherwise a plain line every tenth of the run (logs,
    CI); nothing with --quiet. Warnings go to stderr unless --quiet."""

    def __init__(self, quiet: bool):
        self.bar = None
        self.quiet = quiet
        if not quiet and sys.stdout.isatty():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
            self.bar = Progress(TextColumn("[bold]train"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TextColumn("loss {task.fields[loss]:.4g}"), TimeRemainingColumn(), transient=True)
        self.task = None
        self.total = self.start = 0
        self.t0 = 0.0

    def hooks(self):
        import time

        from specgrad.run.trainer import Hooks

        def on_start(start, total):
            self.start, self.total, self.t0 = start, total, time.perf_counter()
            if self.bar:
                self.task = self.bar.add_task("train", total=total, completed=start, loss=float("nan"))

        def on_step(step, loss):
            if self.bar:
                if step % 10 == 0 or step == self.total:
                    self.bar.update(self.task, completed=step, loss=loss)
            elif not self.quiet and (step % max(1, self.total // 10) == 0 or step == self.total):
                elapsed = time.perf_counter() - self.t0
                eta = elapsed / (step - self.start) * (self.total - step) if step > self.start else 0.0
                typer.echo(f"step {step}/{self.total} ({100 * step // self.total}%)  loss {loss:.6g}  "
                           f"eta {eta:.1f}s")

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


@app.command()
def gradcheck(
    spec: Path = typer.Argument(..., help="The spec whose model to check."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Rows of the training data to use."),
    tolerance: float = typer.Option(1e-5, "--tolerance", min=0.0, help="Largest acceptable relative error."),
):
    """Compare the model's gradient with finite differences, per parameter, in float64; exit 1 above tolerance."""
    from specgrad.run.gradcheck import check_spec
    from specgrad.spec import load_spec

    with _reported(ValueError):       # the data lacks a field the model reads
        checks = check_spec(load_spec(spec, [*set_, "dtype=float64"]), batch_size=batch_size)
    width = max([len("parameter"), *(len(c.name) for c in checks)])
    typer.echo(f"{'parameter':<{width}}  {'shape':<14} {'entries':>7}  relative error")
    for c in checks:
        typer.echo(f"{c.name:<{width}}  {str(list(c.shape)):<14} {c.entries:>7}  {c.error:.2e}")
    worst = max((c.error for c in checks), default=0.0)
    verdict = "ok" if worst <= tolerance else "FAILED"
    typer.echo(f"worst relative error {worst:.2e} (tolerance {tolerance:.0e}): {verdict}")
    raise typer.Exit(0 if worst <= tolerance else 1)


class GraphFormat(str, Enum):
    text = "text"
    dot = "dot"


@app.command()
def graph(
    spec: Path = typer.Argument(..., help="The spec whose compiled graph to show."),
    set_: List[str] = typer.Option([], "--set", help=SET_HELP),
    format: GraphFormat = typer.Option(GraphFormat.text, "--format", help="text, or dot for Graphviz."),
    backward: bool = typer.Option(False, "--backward", help="Also show the backward pass the engine built."),
):
    """Show the model as the engine compiled it: every op with its inferred shape (B: the batch)."""
    from specgrad.engine.show import render_dot, render_text
    from specgrad.spec import load_spec

    with _reported():
        model = load_spec(spec, set_).model
    typer.echo((render_dot if format == GraphFormat.dot else render_text)(model, backward))


@app.command()
def plot(
    run_dir: Path = typer.Argument(..., help="A run directory (with metrics.jsonl)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The PNG to write (default RUN_DIR/plot.png)."),
):
    """Plot a run's training loss, learning rate and validation metrics to a PNG (needs specgrad[plot])."""
    from specgrad.run.plot import PlotError, plot_run
    with _reported(PlotError):
        path = plot_run(run_dir, output)
    typer.echo(f"wrote {path}")


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="The sweep file (see docs/experiments.md)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1, help="Worker processes here (default: the "
                                          "sweep file's workers, else 1)."),
    storage: Optional[str] = typer.Option(None, "--storage", help="The study's database URL, shared by every "
                                          "machine (default: sqlite in the sweep's folder)."),
    sweep_dir: Optional[Path] = typer.Option(None, "--dir", help="Where trial run directories go "
                                             "(default runs/sweeps/NAME)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors and the result."),
):
    """Run a sweep: every point checked first, then trials (ordinary run directories) in worker processes,
    until the study has its trials. Run it again after a kill: finished trials stay, interrupted ones resume."""
    from specgrad.run.sweep.file import check_sweep, load_sweep
    from specgrad.run.sweep.launch import run_sweep
    from specgrad.run.sweep.options import SweepDependencyError
    from specgrad.run.sweep.progress import SweepView
    from specgrad.run.sweep.study import StudyError
    from specgrad.base.diagnostics import SpecError

    with _reported(SweepDependencyError, StudyError):
        ok, diags = check_sweep(sweep_file)
        if not ok:
            raise SpecError(diags)
        spec = load_sweep(sweep_file)
        try:
            with SweepView(spec, typer.echo, quiet) as view:
                outcome = run_sweep(spec, workers, storage, sweep_dir, view.update)
        except KeyboardInterrupt:      # the workers checkpointed their trials (they got the Ctrl-C too)
            _err("stopped by Ctrl-C; run the same command again to continue the sweep")
            raise typer.Exit(130)
    c, best = outcome.counts, outcome.best
    typer.echo(f"{c['done']} completed, {c['pruned']} pruned, {c['failed']} failed of {c['target']} trials in "
               f"{outcome.sweep_dir}" + (f"; {outcome.retried} interrupted trial(s) resumed" if outcome.retried else ""))
    if best:
        typer.echo(f"best: trial {best['number']} {spec.metric} {best['value']:.6g} -> {best['run_dir']}")
    if any(outcome.worker_codes):
        _err(f"error: a worker failed (exit codes {outcome.worker_codes}); see {outcome.sweep_dir}/workers.log")
    finished = c["done"] + c["pruned"] + c["failed"] >= c["target"]
    raise typer.Exit(0 if finished and not any(outcome.worker_codes) else 1)


class RunsFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


@app.command()
def runs(
    dirs: List[Path] = typer.Argument(None, help="Run directories, or folders searched for them (default runs/)."),
    format: RunsFormat = typer.Option(RunsFormat.table, "--format", help="table, json or csv."),
):
    """List runs: status, steps, time, objective (a sweep trial's, else the best validation) and final metrics."""
    from specgrad.run.compare import RunFileError, find_runs, format_rows, run_row
    with _reported(RunFileError):
        rows = [run_row(d) for d in find_runs(dirs or [Path("runs")])]
    typer.echo(format_rows(rows, format.value) if rows else "no runs found")


@app.command()
def compare(
    run_dirs: List[Path] = typer.Argument(..., help="Two or more run directories."),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Also overlay their curves in this PNG."),
):
    """Show the resolved spec values that differ between runs, beside their status and final metrics."""
    from specgrad.run.compare import RunFileError, compare_runs, plot_runs
    from specgrad.run.plot import PlotError
    with _reported(RunFileError, PlotError):
        typer.echo(compare_runs(run_dirs))
        if plot:
            typer.echo(f"wrote {plot_runs(run_dirs, plot)}")


def main():
    # Until a command has imported its libraries and compiled its spec, what it allocates lives to the end of
    # the process: the cyclic collector would only rescan it, again and again (~15% of `specgrad validate`
    # and of `specgrad train models/poly.yaml`). Commands that go on working call _collect_from_here; the
    # others (config, eval, predict...) are one bounded pass and end without a collection.
    gc.disable()
    app()


def _collect_from_here() -> None:
    """Normal garbage collection again, for what a command does next (a run, more specs), with everything
    allocated so far frozen out of the collector's scans. Nothing where collection is on (after the first
    call, or when the app runs in-process without ``main``)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


if __name__ == "__main__":
    main()
