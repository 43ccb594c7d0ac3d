"""``specgrad plot RUN_DIR``: the loss, learning rate and validation metrics of a run, from its
metrics.jsonl, as one PNG. matplotlib is an optional extra (``pip install 'specgrad[plot]'``)."""
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

    def series(key, source=lambda r: r):
        points = [(r["step"], source(r).get(key)) for r in records if isinstance(source(r).get(key), (int, float))]
        return [p[0] for p in points], [p[1] for p in points]

    val_keys = sorted({k for r in records for k in r.get("val", {})})
    fig, axes = plt.subplots(2 + bool(val_keys), 1, figsize=(8, 3 * (2 + bool(val_keys))), sharex=True)
    axes[0].plot(*series("loss"), label="train loss")
    if "loss" in val_keys:
        axes[0].plot(*series("loss", lambda r: r.get("val", {})), "o-", label="val loss")
    axes[0].set_yscale("log" if all(v > 0 for v in series("loss")[1]) else "linear")
    axes[0].set_ylabel("loss")
    axes[0].legend()
    axes[1].plot(*series("lr"))
    axes[1].set_ylabel("learning rate")
    if val_keys:
        for key in val_keys:
            if key != "loss":
                axes[2].plot(*series(key, lambda r: r.get("val", {})), "o-", label=f"val {key}")
        axes[2].set_ylabel("validation")
        if len(val_keys) > 1:
            axes[2].legend()
    axes[-1].set_xlabel("step")
    fig.suptitle(Path(run_dir).name)
    fig.tight_layout()
    output = Path(output) if output else Path(run_dir) / "plot.png"
    try:
        fig.savefig(output, dpi=100)
    except OSError as e:
        raise PlotError(f"cannot write {output}: {e.strerror or e}") from None
    except ValueError as e:                       # matplotlib: a file type it cannot write ("p.txt")
        raise PlotError(f"cannot write {output}: {e}") from None
    finally:
        plt.close(fig)
    return output
