"""TensorBoard event files beside metrics.jsonl (``train: {tensorboard: true}``): every logged step's loss,
learning rate, global and per-parameter gradient norms, and each validation's metrics, as scalars, and each
parameter's values as a histogram at every checkpoint, in RUN_DIR/tensorboard, written by tensorboardX
(``pip install 'specgrad[tensorboard]'``). View them with ``tensorboard --logdir runs``.

A resumed run purges the events past its checkpoint's step, as metrics.jsonl drops its lines past it, so
the curves read as if the run had never stopped."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specgrad.base.diagnostics import SpecError
from specgrad.base.fileio import own_dir

EXTRA = "train.tensorboard needs tensorboardX: pip install 'specgrad[tensorboard]'"


HISTOGRAM_LIMIT = 1e20  # where tensorboardX's default buckets end


class TensorBoardLog:
    def __init__(self, log_dir: Path, resume_step: int | None = None):
        from tensorboardX import SummaryWriter

        own_dir(log_dir)  # never through a link planted in the run directory
        # purge_step: events from an earlier attempt at steps >= the first step logged now are discarded
        self.writer = SummaryWriter(
            str(log_dir), purge_step=None if resume_step is None else resume_step + 1, flush_secs=30
        )

    def write(self, record: dict) -> None:
        step, add = record["step"], self.writer.add_scalar
        for key in ("loss", "lr", "grad_norm"):
            if record.get(key) is not None:
                add(f"train/{key}", record[key], step)
        for name, value in (record.get("grad_norms") or {}).items():
            if value is not None:
                add(f"grad_norm/{name}", value, step)
        for name, value in (record.get("val") or {}).items():
            if isinstance(value, (int, float)):
                add(f"val/{name}", value, step)

    def parameters(self, step: int, params: dict) -> None:
        for name, value in params.items():
            # TensorBoard's buckets end at 1e20: beyond, a histogram would be empty (tensorboardX's error). A
            # parameter that large, or not finite (a diverged step's, refused by the checkpoint too), is left out
            if np.all(np.abs(value) <= HISTOGRAM_LIMIT):
                self.writer.add_histogram(f"params/{name}", value, step)

    def flush(self) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class _Both:
    """metrics.jsonl and the event files, written together."""

    def __init__(self, *logs):
        self.logs = logs

    def write(self, record: dict) -> None:
        for log in self.logs:
            log.write(record)

    def parameters(self, step: int, params: dict) -> None:
        for log in self.logs:
            log.parameters(step, params)

    def flush(self) -> None:
        for log in self.logs:
            log.flush()

    def close(self) -> None:
        for log in self.logs:
            log.close()


def with_tensorboard(log, spec, run_dir: Path, resume_step: int | None):
    """``log``, plus TensorBoard event files when the spec's train.tensorboard asks for them."""
    if not spec.data["train"].get("tensorboard"):
        return log
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        log.close()
        raise SpecError.at(spec.doc.loc(("train", "tensorboard")), EXTRA) from None
    return _Both(log, TensorBoardLog(Path(run_dir) / "tensorboard", resume_step))
