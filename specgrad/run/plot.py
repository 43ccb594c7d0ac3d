"""``specgrad plot RUN_DIR``: the loss (train and validation), the gradient norm of each parameter, the
learning rate and the validation metrics of a run, from its metrics.jsonl, as one PNG. matplotlib is an
optional extra (``pip install 'specgrad[plot]'``)."""

from __future__ import annotations

from pathlib import Path

from specgrad.run.runlog import metrics_lines


class PlotError(Exception):
    """Nothing to plot, or no matplotlib; the message says what to do."""


def read_metrics(run_dir: Path) -> list[dict]:
    """The records of RUN_DIR/metrics.jsonl; a torn last line (a killed run) is skipped."""
    path = Path(run_dir) / "metrics.jsonl"
    try:
        records = [record for _, record in metrics_lines(path)]
    except OSError as e:
        raise PlotError(f"cannot read {path}: {e.strerror or e}") from None
    if not records:
        raise PlotError(f"{path} has no records to plot")
    return records


def plot_run(run_dir: Path, output: Path | None = None) -> Path:
    records = read_metrics(run_dir)
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise PlotError("specgrad plot needs matplotlib: pip install 'specgrad[plot]'") from None

    fig = figure(plt, records, Path(run_dir).name)
    output = Path(output) if output else Path(run_dir) / "plot.png"
    try:
        save_figure(fig, output)
    finally:
        plt.close(fig)
    return output


def save_figure(fig, output: Path) -> None:
    """``fig`` as ``output`` (its type from the suffix), written beside it and renamed over it: a link planted
    where it goes (a run directory's plot.png) is replaced, never written through."""
    import os
    import tempfile

    output = Path(output)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".plot-", suffix=output.suffix, dir=output.parent)
    except OSError as e:
        raise PlotError(f"cannot write {output}: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            umask = os.umask(0o022)  # read (and put back at once): the mode open() would give the file
            os.umask(umask)
            os.fchmod(f.fileno(), 0o666 & ~umask)  # mkstemp's files are private
            fig.savefig(f, dpi=100, format=output.suffix.lstrip(".") or None)
        os.replace(tmp, output)
    except OSError as e:
        raise PlotError(f"cannot write {output}: {e.strerror or e}") from None
    except ValueError as e:  # matplotlib: a file type it cannot write ("p.txt")
        raise PlotError(f"cannot write {output}: {e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def figure(plt, records: list[dict], title: str):
    """The run's panels, one above the other on a shared step axis: loss, gradient norms, lr, validation."""
    val_keys = sorted({k for r in records for k in _mapping(r.get("val"))})
    panels = [_loss, _grad_norms, _lr] + ([_validation] if set(val_keys) - {"loss"} else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3 * len(panels)), sharex=True)
    for draw, ax in zip(panels, axes):
        draw(ax, records)
    # steps whose loss or gradient was not finite (diverged, or skipped under on_divergence: skip)
    bad = [r["step"] for r in records if r.get("loss") is None or r.get("grad_norm", 0) is None]
    for ax in axes:
        for step in bad:
            ax.axvline(step, color="red", alpha=0.3, linewidth=1)
    axes[-1].set_xlabel("step" + ("  (red: non-finite loss or gradient)" if bad else ""))
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def _mapping(value) -> dict:
    return value if isinstance(value, dict) else {}


CEILING = 1e100  # values beyond are drawn at the ceiling: matplotlib's log axis overflows near 1e300


def series(records: list[dict], key: str, source=lambda r: r) -> tuple[list, list]:
    """(steps, values) of the records whose ``source(record)[key]`` is a number (clamped to +-CEILING)."""
    points = [(r["step"], _mapping(source(r)).get(key)) for r in records]
    points = [
        (s, max(-CEILING, min(CEILING, v)))
        for s, v in points
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return [p[0] for p in points], [p[1] for p in points]


def _log_if_positive(ax, values) -> None:
    if values and all(v > 0 for v in values):
        ax.set_yscale("log")
        # explicit limits: matplotlib's own margins overflow for a diverging run's 1e300
        ax.set_ylim(min(values) / 1.3, max(values) * 1.3)
        if max(values) >= CEILING:
            ax.set_title(f"values above {CEILING:.0e} drawn at {CEILING:.0e}", fontsize="small", loc="right")


def _loss(ax, records) -> None:
    steps, values = series(records, "loss")
    ax.plot(steps, values, label="train loss")
    val_steps, val_values = series(records, "loss", lambda r: r.get("val"))
    if val_steps:
        ax.plot(val_steps, val_values, "o-", markersize=3, label="val loss")
    _log_if_positive(ax, values + val_values)
    ax.set_ylabel("loss")
    ax.legend()


MAX_LABELLED = 24  # parameters named in the gradient-norm legend; more would not fit beside the panel


def _grad_norms(ax, records) -> None:
    """Each parameter's gradient norm (log scale), coloured from the first parameter declared (dark) to the
    last (light), biases dashed: a layer whose gradient is orders of magnitude below the others' (vanishing)
    or norms that grow without bound (exploding) show here first."""
    from matplotlib import colormaps

    names = list(dict.fromkeys(n for r in records for n in _mapping(r.get("grad_norms"))))
    ramp = colormaps["viridis"]
    everything = []
    for i, name in enumerate(names):
        steps, values = series(records, name, lambda r: r.get("grad_norms"))
        everything += values
        ax.plot(
            steps,
            values,
            linewidth=1,
            color=ramp(0.9 * i / max(1, len(names) - 1)),
            linestyle="--" if name.rsplit(".", 1)[-1].startswith("b") and "." in name else "-",
            label=name if i < MAX_LABELLED else None,
        )
    if len(names) > 1:
        steps, values = series(records, "grad_norm")
        ax.plot(steps, values, color="black", linestyle=":", linewidth=1.5, label="global")
    _log_if_positive(ax, everything)
    ax.set_ylabel("gradient norm")
    if names:
        more = f"+{len(names) - MAX_LABELLED} more" if len(names) > MAX_LABELLED else None
        ax.legend(
            fontsize="x-small",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),
            title=more,
            title_fontsize="x-small",
            ncol=2 if len(names) > 12 else 1,
        )


def _lr(ax, records) -> None:
    ax.plot(*series(records, "lr"))
    ax.set_ylabel("learning rate")


def _validation(ax, records) -> None:
    keys = sorted({k for r in records for k in _mapping(r.get("val")) if k != "loss"})
    for key in keys:
        ax.plot(*series(records, key, lambda r: r.get("val")), "o-", markersize=3, label=f"val {key}")
    ax.set_ylabel("validation")
    ax.legend()
