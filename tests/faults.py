"""Fault injection for the resume and reliability tests: train in a forked child that SIGKILLs itself at an
exact point (a given micro-batch, or inside a given step of a checkpoint write), and compare finished runs
bit for bit."""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from specgrad.run import checkpoint as ckpt_module
from specgrad.run import trainer as trainer_module
from specgrad.run.checkpoint import list_checkpoints, load_checkpoint
from specgrad.run.trainer import Trainer
from specgrad.spec import load_spec

# Functions of the checkpoint writer a kill can land in, in the order a save calls them. "torn" variants
# write half of the file, then die; the others die just before the call.
CHECKPOINT_STAGES = ["_write_npz", "_write_npz:torn", "_write_durably", "_write_durably:torn",
                     "_move_into_place", "_write_latest", "prune_checkpoints"]


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def _arm_batch(trainer: Trainer, n: int) -> None:
    """Die when the n-th micro-batch of this process (1-based) is about to be computed."""
    real, count = trainer._forward_backward, [0]

    def forward_backward(batch):
        count[0] += 1
        if count[0] == n:
            _die()
        return real(batch)
    trainer._forward_backward = forward_backward


def _arm_checkpoint(stage: str, n: int) -> None:
    """Die in the n-th call (1-based) of a checkpoint-writer function."""
    name, _, how = stage.partition(":")
    real, count = getattr(ckpt_module, name), [0]

    def wrapper(*args, **kwargs):
        count[0] += 1
        if count[0] != n:
            return real(*args, **kwargs)
        if how == "torn":
            real(*args, **kwargs)
            path = Path(args[0])
            with open(path, "r+b") as f:
                f.truncate(path.stat().st_size // 2)
        _die()
    for module in (ckpt_module, trainer_module):        # the trainer imports some of them by name
        if getattr(module, name, None) is real:
            setattr(module, name, wrapper)


def killed_run(spec_path, overrides, run_dir, *, batch: int | None = None, stage: str | None = None,
               call: int = 1, resume: bool = False) -> None:
    """Train in a forked child that SIGKILLs itself at micro-batch ``batch`` or in call ``call`` of
    checkpoint ``stage``; asserts that the child really died by SIGKILL (a fault that does not happen fails)."""
    pid = os.fork()
    if pid == 0:                                         # the child: never returns into pytest
        try:
            trainer = Trainer(load_spec(spec_path, overrides), run_dir)
            if batch is not None:
                _arm_batch(trainer, batch)
            if stage is not None:
                _arm_checkpoint(stage, call)
            trainer.run(resume=resume)
        finally:
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, \
        f"the child was meant to die by SIGKILL but exited with status {status}"


def run_state(run_dir: Path) -> dict:
    """Everything a finished run leaves that must not depend on interruptions: the checkpoints kept (every
    array and the JSON state of each), the metrics log, and the summary without its timings."""
    run_dir = Path(run_dir)
    checkpoints = {}
    for path in list_checkpoints(run_dir / "checkpoints"):
        c = load_checkpoint(path)
        checkpoints[path.name] = ({k: (a.dtype.str, a.shape, a.tobytes()) for k, a in c.arrays.items()},
                                  json.dumps(c.state, sort_keys=True))
    summary = json.loads((run_dir / "summary.json").read_text())
    for timing in ("seconds", "steps_per_s"):
        summary.pop(timing)
    return {"checkpoints": checkpoints, "metrics": (run_dir / "metrics.jsonl").read_bytes(),
            "summary": summary, "latest": (run_dir / "checkpoints" / "latest").read_text()}


def assert_same_run(a: dict, b: dict) -> None:
    assert a["checkpoints"].keys() == b["checkpoints"].keys()
    for name in a["checkpoints"]:
        arrays_a, state_a = a["checkpoints"][name]
        arrays_b, state_b = b["checkpoints"][name]
        assert arrays_a.keys() == arrays_b.keys(), name
        for key in arrays_a:
            assert arrays_a[key] == arrays_b[key], f"{name}: {key} differs"
        assert state_a == state_b, name
    assert a["metrics"] == b["metrics"]
    assert a["summary"] == b["summary"]
    assert a["latest"] == b["latest"]

