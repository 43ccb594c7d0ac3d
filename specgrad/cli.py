"""The ``specgrad`` command. Thin: parse flags, call the library, print, set the exit code.

Exit codes (contract): 0 success, 1 invalid spec or failed run, 2 usage error. Bad input prints located
errors, never a traceback: every command calls the library inside ``_reported``. The library is
``specgrad.api`` alone (and ``specgrad.base`` for formatting diagnostics; an import-linter contract forbids the
rest), imported inside the commands so ``--help`` stays fast.
"""

from __future__ import annotations

import gc
import json
import sys
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from types import SimpleNamespace

import typer

# Plain help text: rich's help formatter alone would import rich, markdown-it and pygments (~55 ms) into
# every `--help`.
app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Declarative training: a YAML spec in, a trained, resumable run out.",
)

SET_HELP = "Override a spec value, e.g. --set optimizer.lr=0.01 (YAML-typed; repeatable)."
ROOT_HELP = (
    "Another folder that extends, include and data files may come from (repeatable); by default only "
    "the working directory and the spec's own folder, symlinks resolved."
)
RUN_ROOT_HELP = (
    "Another folder the run's data files may be read from (repeatable); by default only the working "
    "directory and the run directory, wherever the run's data.json says the data is."
)


def _version(value: bool) -> None:
    if value:
        from specgrad import __version__

        typer.echo(f"specgrad {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
):
    """Declarative training: a YAML spec in, a trained, resumable run out."""


def _check_overrides(specs, overrides) -> None:
    """A mistake in a --set flag itself (no '=', a value that does not parse, a path that cannot be set in
    the spec) is a usage error: exit 2, like an unknown flag."""
    if not overrides:
        return
    from specgrad import api
    from specgrad.base.diagnostics import format_diagnostics

    errors = api.flag_errors(specs, overrides)
    if errors:
        _err(format_diagnostics(errors, "text"))
        raise typer.Exit(2) from None


class Format(str, Enum):
    text = "text"
    json = "json"
    github = "github"


def _err(message: str) -> None:
    typer.echo(message, err=True)


@contextmanager
def _reported(*errors: type[Exception], echo: bool = True):
    """How every command fails on bad input: a SpecError prints its located diagnostics; OSError, the
    library's ``api.ERRORS`` (a damaged checkpoint, a run directory without its files...) and the ``errors``
    the command names print ``error: message``. Exit 1, never a traceback. ``echo=False`` exits without
    printing (the ranks but the first of a data-parallel run, whose errors before training are the first's)."""
    from specgrad import api

    printed: tuple[type[BaseException], ...] = (OSError, *api.ERRORS, *errors)
    try:
        yield
    except api.SpecError as e:
        if echo:
            _err(str(e))
        raise typer.Exit(1) from None
    except printed as e:
        if echo:
            _err(f"error: {e}")
        raise typer.Exit(1) from None


@contextmanager
def _numpy_warnings(shown: bool):
    if shown:
        yield
        return
    import numpy as np

    with np.errstate(all="ignore"):
        yield


@app.command()
def validate(
    paths: list[str] = typer.Argument(
        ..., help="Spec files, folders (searched for *.yaml; names starting with _ are fragments and skipped) or globs."
    ),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    format: Format = typer.Option(Format.text, "--format", help="text, json (one object per line) or github."),
    skip_non_specs: bool = typer.Option(
        False,
        "--skip-non-specs",
        help="Skip, with a note, YAML files without a "
        "top-level 'specgrad:' or 'extends:' key (the pre-commit hook's mode).",
    ),
    root: list[Path] = typer.Option([], "--root", help=ROOT_HELP),
):
    """Check specs without training: schema, names, ops, shapes, run settings. Every error, with file:line:col.
    A sweep file is checked with every point of its grid and the corners of its ranges."""
    from specgrad import api
    from specgrad.base.diagnostics import format_diagnostics, printable

    files, unmatched = api.find_specs(paths)
    if unmatched:
        _err("error: no spec files found in " + " ".join(unmatched))
        raise typer.Exit(2) from None
    _check_overrides(files, set_)
    if skip_non_specs:
        files, others = api.split_specs(files)
        for f in others:
            _err(f"note: skipped {f}: not a specgrad spec (no top-level 'specgrad:' or 'extends:' key)")
    failed = []
    for f in files:
        with _reported():
            ok, diags = api.validate_file(f, set_, root)
        _collect_from_here()  # the first spec imported and built everything the others need
        if not ok:
            failed.append(printable(str(f)))
        if diags:
            typer.echo(format_diagnostics(diags, format.value))
    if format == Format.text:
        _err(
            f"{len(files) - len(failed)} of {len(files)} spec(s) valid"
            + (f"; invalid: {', '.join(failed)}" if failed else "")
        )
    raise typer.Exit(1 if failed else 0)


@app.command()
def config(
    spec: Path = typer.Argument(..., help="The spec file."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    explain: bool = typer.Option(
        False, "--explain", help="End each line with the file:line:col its value comes from, and what it overrides."
    ),
    root: list[Path] = typer.Option([], "--root", help=ROOT_HELP),
):
    """Print the resolved spec: extends and includes merged, --set applied, ${...} references resolved."""
    from specgrad import api

    _check_overrides([spec], set_)
    with _reported():
        text = api.config_text(spec, set_, root, explain)
    typer.echo(text, nl=False)


@app.command()
def train(
    spec: Path = typer.Argument(..., help="The spec file to train."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    run_dir: Path | None = typer.Option(None, "--run-dir", help="Where the run goes (default runs/NAME/TIMESTAMP)."),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from the latest checkpoint in the run directory (default: the newest run of this spec's name).",
    ),
    allow_spec_change: bool = typer.Option(
        False,
        "--allow-spec-change",
        help="Resume even though the spec differs from the checkpoint's (the differences are printed).",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    root: list[Path] = typer.Option([], "--root", help=ROOT_HELP),
):
    """Train a spec: validate, compile, run, checkpoint. Ctrl-C (or SIGTERM) saves a checkpoint at the next
    step boundary and stops; a second Ctrl-C stops at once. Under mpiexec, data-parallel over the processes
    (docs/distributed.md)."""
    from specgrad import api
    from specgrad.base.diagnostics import format_diagnostics

    _check_overrides([spec], set_)
    first = api.launched_rank() in (None, 0)  # rank 0 of an MPI job speaks for all (each would say the same)
    quiet = quiet or not first
    # --quiet prints nothing but errors: numpy's floating-point warnings (overflow, invalid value) included
    with _reported(echo=first), _numpy_warnings(shown=not quiet):
        comm = api.connect()
        loaded = api.load(spec, set_, root)
        if loaded.warnings and not quiet:
            _err(format_diagnostics(loaded.warnings, "text"))
        run_dir = api.train_run_dir(spec, loaded.data["name"], resume=resume, run_dir=run_dir, comm=comm)
        progress = ProgressView(quiet)
        try:
            # from here on, an error on one rank ends every rank (the others may wait for it in a collective)
            with comm.failing_together(lambda e: _err(_rank_failure(e, comm, run_dir))), progress:
                summary = api.train(
                    loaded,
                    run_dir,
                    resume=resume,
                    allow_spec_change=allow_spec_change,
                    comm=comm,
                    **vars(progress.hooks()),
                ).summary
        except KeyboardInterrupt:  # Ctrl-C before the loop, or a second one in it (the first saves, stops)
            saved = api.Run(Path(run_dir)).checkpoints
            if saved:
                _err(
                    f"stopped at once by Ctrl-C, without saving; --resume continues from the last checkpoint in "
                    f"{saved[-1].parent}"
                )
            else:
                _err(
                    "stopped at once by Ctrl-C, before the first checkpoint: there is nothing to resume; "
                    "train again to start over"
                )
            raise typer.Exit(130) from None
    if not quiet:
        typer.echo(f"{summary['status']}: {summary['steps']} steps in {summary['seconds']:.2f}s -> {run_dir}")
        typer.echo(_final_results(summary))
    if summary["status"] == "interrupted":
        raise typer.Exit(128 + summary.get("signal", 2))
    raise typer.Exit(1 if summary["status"] == "diverged" else 0)


def _final_results(summary: dict) -> str:
    """One line per split the run has (train, val, test): its loss and metrics with the final parameters."""
    lines = []
    for split in ("train", "val", "test"):
        results = summary.get(split) or {}
        if results:
            values = "  ".join(f"{name} {value:.6g}" for name, value in results.items())
            lines.append(f"  {split + ':':<6} {values}")
    return "\n".join(lines)


def _rank_failure(e: BaseException, comm, run_dir: Path) -> str:
    """What one rank of a data-parallel run says before it ends the job."""
    from specgrad import api

    if isinstance(e, KeyboardInterrupt):
        return (
            f"rank {comm.rank} of {comm.size}: stopped at once by Ctrl-C, without saving; --resume continues "
            f"from the last checkpoint in {api.Run(Path(run_dir)).checkpoints_dir}"
        )
    return f"error (rank {comm.rank} of {comm.size}): {e}"


@app.command()
def schema(sweep: bool = typer.Option(False, "--sweep", help="The schema of sweep files instead.")):
    """Print the JSON Schema of spec files as written (draft 2020-12), for editors and other validators."""
    from specgrad import api

    typer.echo(json.dumps(api.schema(sweep), indent=2))


class Split(str, Enum):
    train = "train"
    val = "val"
    test = "test"


@app.command("eval")
def eval_(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/NAME/TIMESTAMP)."),
    split: Split | None = typer.Option(None, "--split", help="Default: test, else val, else train."),
    root: list[Path] = typer.Option([], "--root", help=RUN_ROOT_HELP),
):
    """Evaluate a run's latest checkpoint on a split: the loss and the spec's metrics, as JSON."""
    from specgrad import api

    with _reported():
        result = api.evaluate(run_dir, split.value if split else None, warn=lambda m: _err(f"warning: {m}"), roots=root)
    typer.echo(api.json_text(result, indent=2))


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/NAME/TIMESTAMP)."),
    input: Path = typer.Argument(..., help="Samples to predict on: .csv (header row) or .npz (arrays by input name)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="A .csv or .npz file (default: csv on stdout)."),
):
    """Predict with a run's latest checkpoint, transforming the input as the training data was."""
    from specgrad import api

    with _reported():
        text = api.predict(run_dir, input, output, warn=lambda m: _err(f"warning: {m}"))
    if text is not None:
        typer.echo(text, nl=False)


@app.command()
def export(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/NAME/TIMESTAMP)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="The .onnx file (default RUN_DIR/model.onnx)."),
    checkpoint: int | None = typer.Option(
        None, "--checkpoint", min=0, help="The step of the checkpoint to export (default: the latest)."
    ),
    opset: int | None = typer.Option(
        None, "--opset", help="The ONNX opset to target (default and supported range: docs/export.md)."
    ),
    root: list[Path] = typer.Option([], "--root", help=RUN_ROOT_HELP),
):
    """Export a run's model to ONNX (needs specgrad[onnx]): the evaluation graph, raw inputs as predict takes
    them, a dynamic batch; checked by onnx.checker and against specgrad predict with onnxruntime."""
    from specgrad import api

    with _reported():
        try:
            result = api.export(
                run_dir, output, checkpoint=checkpoint, opset=opset, warn=lambda m: _err(f"warning: {m}"), roots=root
            )
        except api.UnsupportedOpset as e:  # a flag value no lowering is written for: a usage error
            _err(f"error: {e}")
            raise typer.Exit(2) from None
    typer.echo(result.summary())


def _LossColumn():
    """The bar's loss: nothing until a step has one (not 'loss nan')."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    class LossColumn(ProgressColumn):
        def render(self, task):
            loss = task.fields.get("loss")
            return Text("" if loss is None else f"loss {loss:.4g}")

    return LossColumn()


class ProgressView:
    """A rich progress bar (loss, ETA) on a terminal; otherwise a plain line every tenth of the run (logs,
    CI); nothing with --quiet. Warnings go to stderr unless --quiet."""

    def __init__(self, quiet: bool):
        self.bar = None
        self.quiet = quiet
        if not quiet and sys.stdout.isatty():
            from rich.progress import (
                BarColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
            )

            self.bar = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total}"),
                _LossColumn(),
                TimeRemainingColumn(),
                transient=True,
            )
        self.task = None
        self.total = self.start = 0
        self.t0 = 0.0

    def hooks(self) -> SimpleNamespace:
        """The callbacks for ``api.train`` (``**vars(hooks)``)."""
        import time

        def on_start(start, total):
            _collect_from_here()  # the run is built: what it allocated so far lives to the end
            self.start, self.total, self.t0 = start, total, time.perf_counter()
            if self.bar:
                self.task = self.bar.add_task("train", total=total, completed=start, loss=None)  # no loss yet

        def on_step(step, loss):
            if self.bar:
                if step % 10 == 0 or step == self.total:
                    self.bar.update(self.task, completed=step, loss=loss)
            elif not self.quiet and (step % max(1, self.total // 10) == 0 or step == self.total):
                elapsed = time.perf_counter() - self.t0
                eta = elapsed / (step - self.start) * (self.total - step) if step > self.start else 0.0
                typer.echo(f"step {step}/{self.total} ({100 * step // self.total}%)  loss {loss:.6g}  eta {eta:.1f}s")

        def on_warning(message):
            if not self.quiet:
                _err(f"warning: {message}")

        return SimpleNamespace(on_start=on_start, on_step=on_step, on_warning=on_warning)

    def __enter__(self):
        if self.bar:
            self.bar.start()

    def __exit__(self, *exc):
        if self.bar:
            self.bar.stop()


@app.command()
def gradcheck(
    spec: Path = typer.Argument(..., help="The spec whose model to check."),
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    batch_size: int = typer.Option(8, "--batch-size", min=1, help="Rows of the training data to use."),
    tolerance: float = typer.Option(1e-5, "--tolerance", min=0.0, help="Largest acceptable relative error."),
    root: list[Path] = typer.Option([], "--root", help=ROOT_HELP),
):
    """Compare the model's gradient with finite differences, per parameter, in float64; exit 1 above tolerance."""
    from specgrad import api

    _check_overrides([spec], set_)
    with _reported(ValueError):  # the data lacks a field the model reads
        checks = api.gradcheck(api.load(spec, set_, root), batch_size=batch_size)  # in float64
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
    set_: list[str] = typer.Option([], "--set", help=SET_HELP),
    format: GraphFormat = typer.Option(GraphFormat.text, "--format", help="text, or dot for Graphviz."),
    backward: bool = typer.Option(False, "--backward", help="Also show the backward pass the engine built."),
    root: list[Path] = typer.Option([], "--root", help=ROOT_HELP),
):
    """Show the model as the engine compiled it: every op with its inferred shape (B: the batch)."""
    from specgrad import api

    _check_overrides([spec], set_)
    with _reported():
        loaded = api.load(spec, set_, root)
    typer.echo(api.graph(loaded, dot=format == GraphFormat.dot, backward=backward))


@app.command()
def plot(
    run_dir: Path = typer.Argument(..., help="A run directory (with metrics.jsonl)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="The PNG to write (default RUN_DIR/plot.png)."),
):
    """Plot a run's training loss, learning rate and validation metrics to a PNG (needs specgrad[plot])."""
    from specgrad import api

    with _reported():
        path = api.plot(run_dir, output)
    typer.echo(f"wrote {path}")


class ReportFormat(str, Enum):
    text = "text"
    json = "json"


@app.command()
def diagnose(
    run_dir: Path = typer.Argument(
        ..., help="A run directory (with metrics.jsonl; summary.json and spec.yaml if any)."
    ),
    format: ReportFormat = typer.Option(ReportFormat.text, "--format", help="text, or json for tools."),
    root: list[Path] = typer.Option([], "--root", help=RUN_ROOT_HELP),
):
    """Read a run and report exploding or vanishing gradients, poor conditioning, plateaus and overfitting, with
    the evidence and a next step as spec changes. Exit 0 whatever it finds."""
    from specgrad import api

    with _reported():
        result = api.diagnose(run_dir, roots=root)
    typer.echo(json.dumps(result.to_json(), indent=2) if format == ReportFormat.json else api.diagnosis_text(result))


@app.command()
def sweep(
    sweep_file: Path = typer.Argument(..., help="The sweep file (see docs/experiments.md)."),
    workers: int | None = typer.Option(
        None, "--workers", min=1, help="Worker processes here (default: the sweep file's workers, else 1)."
    ),
    storage: str | None = typer.Option(
        None,
        "--storage",
        help="The study's database URL, shared by every machine (default: sqlite in the sweep's folder).",
    ),
    sweep_dir: Path | None = typer.Option(
        None, "--dir", help="Where trial run directories go (default runs/sweeps/NAME)."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors and the result."),
):
    """Run a sweep: every point checked first, then trials (ordinary run directories) in worker processes,
    until the study has its trials. Run it again after a kill: finished trials stay, interrupted ones resume."""
    from specgrad import api

    with _reported():
        spec = api.load_sweep(sweep_file)
        try:
            outcome = api.run_sweep(
                spec, workers=workers, storage=storage, sweep_dir=sweep_dir, echo=typer.echo, quiet=quiet
            )
        except KeyboardInterrupt:  # the workers checkpointed their trials (they got the Ctrl-C too)
            _err("stopped by Ctrl-C; run the same command again to continue the sweep")
            raise typer.Exit(130) from None
    c, best = outcome.counts, outcome.best
    typer.echo(
        f"{c['done']} completed, {c['pruned']} pruned, {c['failed']} failed of {c['target']} trials in "
        f"{outcome.sweep_dir}" + (f"; {outcome.retried} interrupted trial(s) resumed" if outcome.retried else "")
    )
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
    dirs: list[Path] = typer.Argument(None, help="Run directories, or folders searched for them (default runs/)."),
    format: RunsFormat = typer.Option(RunsFormat.table, "--format", help="table, json or csv."),
):
    """List runs: status, steps, time, objective (a sweep trial's, else the best validation) and final metrics."""
    from specgrad import api

    with _reported():
        rows = api.find_runs(dirs or [Path("runs")])
    typer.echo(api.runs_table(rows, format.value) if rows else "no runs found")


@app.command()
def compare(
    run_dirs: list[Path] = typer.Argument(..., help="Two or more run directories."),
    plot: Path | None = typer.Option(None, "--plot", help="Also overlay their curves in this PNG."),
):
    """Show the resolved spec values that differ between runs, beside their status and final metrics."""
    from specgrad import api

    with _reported():
        typer.echo(api.compare_runs(run_dirs))
        if plot:
            typer.echo(f"wrote {api.plot_runs(run_dirs, plot)}")


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
