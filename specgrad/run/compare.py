"""Runs side by side: ``specgrad runs`` lists run directories (status, steps, time, objective, final
metrics); ``specgrad compare`` shows only the resolved spec values that differ between runs, beside their
metrics, and overlays their curves. A sweep's trials are run directories like any other, so both work on
them unchanged; a trial's objective comes from its trial.json."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path

from specgrad.base.diagnostics import SpecError, printable
from specgrad.base.fileio import json_text, parse_json, read_small_text
from specgrad.run.checkpoint import CHECKPOINTS_DIR
from specgrad.run.plot import PlotError, read_metrics, save_figure
from specgrad.run.runlog import metrics_lines
from specgrad.spec.load import load_file

ABSENT = "-"


class RunFileError(Exception):
    """A path that is not a run directory, or a run file that cannot be read."""


def find_runs(paths) -> list[Path]:
    """Run directories (holding spec.yaml) named by ``paths`` or found below them, in path order."""
    found = []
    for p in map(Path, paths):
        if (p / "spec.yaml").is_file():
            found.append(p)
        elif p.is_dir():
            found += sorted(q.parent for q in p.rglob("spec.yaml") if CHECKPOINTS_DIR not in q.parts)
        else:
            raise RunFileError(f"{p}: no such run directory")
    return found


def _json(path: Path) -> dict | None:
    try:
        value = parse_json(read_small_text(path))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


MAX_PANELS = 12


def _finals(summary: dict) -> dict:
    splits = {split: summary.get(split) for split in ("train", "val", "test")}
    return {
        f"{split}.{name}": value
        for split, values in splits.items()
        if isinstance(values, dict)  # a summary.json may hold anything
        for name, value in values.items()
        if isinstance(value, (int, float))
    }


def run_row(run_dir: Path) -> dict:
    """One run as a flat record: run, name, status, steps, seconds, objective, value, then final metrics."""
    summary, trial = _json(run_dir / "summary.json"), _json(run_dir / "trial.json")
    spec = _spec(run_dir)
    row = {"run": str(run_dir), "name": spec.get("name", ABSENT) if isinstance(spec, dict) else ABSENT}
    if summary is not None:
        row.update(status=summary.get("status"), steps=summary.get("steps"), seconds=summary.get("seconds"))
    else:  # a run still going, or killed: its log says how far it got
        try:
            lines = metrics_lines(run_dir / "metrics.jsonl")
        except OSError:
            lines = []
        row.update(status="unfinished", steps=lines[-1][1]["step"] if lines else 0, seconds=None)
    objective, value = None, None
    if trial and isinstance(trial.get("objective"), dict):
        objective = trial["objective"].get("metric")
        split, _, name = str(objective).partition(".")
        value = ((summary or {}).get(split) or {}).get(name)
    elif summary and isinstance(summary.get("best"), dict):
        validation = ((spec.get("train") or {}).get("validation") or {}) if isinstance(spec, dict) else {}
        objective, value = f"best val.{validation.get('metric', 'loss')}", summary["best"].get("value")
    row.update(objective=objective, value=value)
    row.update(_finals(summary or {}))
    return row


def _spec(run_dir: Path) -> object:
    """The run's resolved spec.yaml, read by the spec loader (size limits, no tags, located errors): what the
    file holds, a mapping unless it was damaged; {} when it cannot be read."""
    try:
        return load_file(run_dir / "spec.yaml").data
    except SpecError:
        return {}


def format_rows(rows: list[dict], fmt: str) -> str:
    if fmt == "json":
        return json_text(rows, indent=2)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([_csv_text(c) for c in columns])
        writer.writerows([[_csv_text(row.get(c, "")) for c in columns] for row in rows])
        return out.getvalue().rstrip("\n")
    return table([[_cell(row.get(c)) for c in columns] for row in rows], columns)


def _csv_text(value):
    """A cell as a spreadsheet may open it: text from a run's files (anyone's) starting with = + - @ is a
    formula there, so it gets a leading ' (numbers stay numbers); control characters escaped."""
    if isinstance(value, str):
        value = printable(value)
        formula = value[:1] in ("=", "+", "-", "@", "\t", "\r") and value != ABSENT and not _number(value)
        return "'" + value if formula else value
    return value


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _cell(value) -> str:
    if value is None:
        return ABSENT
    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)


def table(rows: list[list[str]], header: list[str]) -> str:
    # text from a run's files: control characters (a terminal's escape sequences) escaped
    header, rows = [printable(str(x)) for x in header], [[printable(str(x)) for x in row] for row in rows]
    widths = [max(len(str(x)) for x in column) for column in zip(header, *rows)]
    lines = ["  ".join(str(x).ljust(w) for x, w in zip(line, widths)).rstrip() for line in [header, *rows]]
    return "\n".join(lines)


def flatten(value, prefix: str = "") -> dict:
    """``{"model.nodes.1.h.units": 16, ...}``: every leaf of a spec by its dotted path (lists by index)."""
    items: Iterable[tuple[object, object]]
    if isinstance(value, dict) and value:
        items = value.items()
    elif isinstance(value, list) and value:
        items = enumerate(value)
    else:
        return {prefix: value}
    out = {}
    for k, v in items:
        out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def compare_runs(run_dirs) -> str:
    """A table: one column per run; rows for each spec value that differs between them, then their status
    and final metrics."""
    if len(run_dirs) < 2:
        raise RunFileError("compare needs two or more run directories")
    for d in map(Path, run_dirs):
        if not (d / "spec.yaml").is_file():
            raise RunFileError(f"{d} is not a run directory (it has no spec.yaml)")
    specs = [flatten(_spec(Path(d))) for d in run_dirs]
    missing = object()
    keys = sorted({k for s in specs for k in s})
    differing = [k for k in keys if len({json.dumps(s.get(k, missing), default=str) for s in specs}) > 1]
    rows_ = [run_row(Path(d)) for d in run_dirs]
    metric_keys = list(dict.fromkeys(k for r in rows_ for k in r if "." in k))
    header = ["", *(str(d) for d in run_dirs)]
    rows = [[k, *(_cell(s.get(k)) if k in s else ABSENT for s in specs)] for k in differing]
    if not differing:
        rows.append(["(specs identical)", *([""] * len(specs))])
    rows += [[k, *(_cell(r.get(k)) for r in rows_)] for k in ("status", "steps", "seconds", *metric_keys)]
    return table(rows, header)


def plot_runs(run_dirs, output: Path) -> Path:
    """The runs' training loss and validation metrics, overlaid, as one PNG (needs specgrad[plot])."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("--plot needs matplotlib: pip install 'specgrad[plot]'") from None
    records = {str(d): read_metrics(Path(d)) for d in run_dirs}
    # a panel per validation metric, at most MAX_PANELS (a damaged metrics log may name thousands)
    val_keys = sorted({k for rs in records.values() for r in rs for k in r.get("val", {})})[:MAX_PANELS]
    fig, axes = plt.subplots(1 + len(val_keys), 1, figsize=(8, 3 * (1 + len(val_keys))), sharex=True, squeeze=False)
    for name, rs in records.items():
        points = [(r["step"], r["loss"]) for r in rs if isinstance(r.get("loss"), (int, float))]
        if points:
            axes[0][0].plot(*zip(*points), label=name)
        for ax, key in zip(axes[1:], val_keys):
            vals = [(r["step"], r["val"][key]) for r in rs if isinstance(r.get("val", {}).get(key), (int, float))]
            if vals:
                ax[0].plot(*zip(*vals), "o-", markersize=3, label=name)
    axes[0][0].set_ylabel("train loss")
    if all(r.get("loss", 1) is None or r.get("loss", 1) > 0 for rs in records.values() for r in rs):
        axes[0][0].set_yscale("log")
    for ax, key in zip(axes[1:], val_keys):
        ax[0].set_ylabel(f"val {key}")
    axes[0][0].legend(fontsize="small")
    axes[-1][0].set_xlabel("step")
    fig.tight_layout()
    import numpy as np

    try:
        with np.errstate(all="ignore"):  # a diverged run's huge values are shown, not warned about
            save_figure(fig, Path(output))
    finally:
        plt.close(fig)
    return Path(output)
