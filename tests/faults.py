"""Fault injection for the resume and reliability tests: train in a forked child that SIGKILLs itself at an
exact point (a given micro-batch, or inside a given step of a checkpoint write), and compare finished runs
bit for bit. Faults in the training loop go through the trainer's public hooks (``on_batch``,
``on_gradients``, ``validate``); faults in a checkpoint write wrap the public functions it writes with
(``write_npz``, ``write_durably``, ``move_into_place``, ``prune_checkpoints``): no private name is patched."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import replace
from pathlib import Path

import specgrad as sg
from specgrad.run import checkpoint as ckpt_module
from specgrad.run import trainer as trainer_module
from specgrad.run.checkpoint import list_checkpoints, load_checkpoint
from specgrad.run.trainer import Trainer

POLY = Path(__file__).resolve().parents[1] / "models" / "poly.yaml"
# Everything with state at once: shuffled minibatches (5 an epoch) accumulated 3 at a time, so optimizer
# steps straddle epochs; Adam; warmup + cosine; clipping; validation with a best metric and patience;
# retention. 40 steps = 120 micro-batches; a checkpoint every 4 steps and on each new best.
RICH = [
    "data.split={val: 0.2}",
    "loss=mse",
    "metrics=[mse]",
    "optimizer={type: adam, lr: 0.05}",
    "schedule={type: cosine, min_lr: 0.001, warmup: {steps: 5}}",
    "train.steps=40",
    "train.batch_size=32",
    "train.accumulate=3",
    "train.clip={max_norm: 0.5}",
    "train.validation={every: 3, patience: 100, min_delta: 0.01}",
    "train.checkpoint={every: 4, keep_last: 2, keep_best: 1}",
]


# Points inside the writing of one checkpoint where a kill can land, in the order a save reaches them.
# "file:torn" writes half of the file, then dies; the others die just before that file or step.
CHECKPOINT_STAGES = [
    "arrays.npz",
    "arrays.npz:torn",
    "state.json",
    "state.json:torn",
    "manifest.json",
    "manifest.json:torn",
    "rename",
    "latest",
    "latest:torn",
    "prune",
    "prune:half-deleted",
]


def _die():
    os.kill(os.getpid(), signal.SIGKILL)


def die_at_batch(n: int):
    """An ``on_batch`` hook that dies when the n-th micro-batch of this process (1-based, counting an L-BFGS
    line search's re-evaluations) is about to be computed."""
    count = [0]

    def on_batch(index):
        count[0] += 1
        if count[0] == n:
            _die()

    return on_batch


def hooks_in_every_run(**extra) -> None:
    """From now on, every run in this process, the `specgrad train` command's included, also calls the hooks
    ``extra`` (after its own front end's). The command takes no hooks: a forked child that runs it reaches its
    trainer this way, through the public ``Trainer.run`` and ``Trainer.hooks``; the child never returns."""
    real = Trainer.run

    def chain(first, second):
        def both(*args):
            first(*args)
            return second(*args)

        return both

    def run(self, resume=False):
        self.hooks = replace(
            self.hooks,
            **{
                name: hook if getattr(self.hooks, name) is None else chain(getattr(self.hooks, name), hook)
                for name, hook in extra.items()
            },
        )
        return real(self, resume)

    Trainer.run = run


def poison(step: int, where: str, value: float = float("nan")):
    """An ``on_gradients`` hook that makes step ``step``'s loss (``where="loss"``) or one entry of the
    gradient of k (``"grad"``) ``value``, as a real divergence would."""

    def on_gradients(s, loss, grads):
        if s == step:
            if where == "loss":
                return value
            grads["k"][1] = value
        return loss

    return on_gradients


def scripted_validation(values, metric: str = "loss"):
    """A ``validate`` hook whose metric takes ``values`` in turn, so the best and the ties are known in
    advance."""
    it = iter(values)
    return lambda step, params: {"loss": 0.0, metric: next(it)}


def _wrap(module, name, wrapper_of):
    real = getattr(module, name)
    setattr(module, name, wrapper_of(real))


def _arm_checkpoint(stage: str, save: int) -> None:
    """Die at ``stage`` of the ``save``-th checkpoint this process writes (1-based)."""
    point, _, how = stage.partition(":")
    saves = [0]
    armed = lambda: saves[0] == save  # noqa: E731

    def counting(real):
        def save_checkpoint(*args, **kwargs):
            saves[0] += 1
            return real(*args, **kwargs)

        return save_checkpoint

    def writer(real):  # write_npz(path, arrays) and write_durably(path, data)
        def write(path, payload):
            name = Path(path).name
            if armed() and (name == point or (point == "latest" and name.startswith(".latest-"))):
                if how == "torn":
                    real(path, payload)
                    with open(path, "r+b") as f:
                        f.truncate(Path(path).stat().st_size // 2)
                _die()
            return real(path, payload)

        return write

    def before(real):
        def call(*args, **kwargs):
            if armed():
                _die()
            return real(*args, **kwargs)

        return call

    def half_delete(real):  # shutil.rmtree of a pruned checkpoint moved aside
        def rmtree(path, *args, **kwargs):
            if armed() and Path(path).name.startswith(".old-step-") and not kwargs.get("ignore_errors"):
                (Path(path) / "arrays.npz").unlink()
                _die()
            return real(path, *args, **kwargs)

        return rmtree

    _wrap(trainer_module, "save_checkpoint", counting)
    _wrap(ckpt_module, "write_npz", writer)
    _wrap(ckpt_module, "write_durably", writer)
    if point == "rename":
        _wrap(ckpt_module, "move_into_place", before)
    if point == "prune":
        _wrap(trainer_module, "prune_checkpoints", before if not how else lambda real: real)
        if how:
            _wrap(ckpt_module.shutil, "rmtree", half_delete)


def killed_run(
    spec_path,
    overrides,
    run_dir,
    *,
    batch: int | None = None,
    stage: str | None = None,
    save: int = 1,
    resume: bool = False,
    cli: bool = False,
) -> None:
    """Train in a forked child that SIGKILLs itself at micro-batch ``batch`` or at ``stage`` of its
    ``save``-th checkpoint; with ``cli``, the child runs the ``specgrad train`` command itself. Asserts
    that the child really died by SIGKILL (a fault that does not happen fails the test)."""
    status = in_child(lambda: _train(spec_path, overrides, run_dir, batch, stage, save, resume, cli))
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, (
        f"the child was meant to die by SIGKILL but exited with status {status}"
    )


def in_child(body) -> int:
    """Run ``body`` in a forked child and return its wait status; the child exits with the code of a
    SystemExit (as the CLI raises), 0 when ``body`` returns, 3 on any other exception."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 3
        try:
            body()
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def _train(spec_path, overrides, run_dir, batch, stage, save, resume, cli):
    on_batch = die_at_batch(batch) if batch is not None else None
    if stage is not None:
        _arm_checkpoint(stage, save)
    if cli:
        from specgrad.cli import app

        if on_batch:
            hooks_in_every_run(on_batch=on_batch)
        args = ["train", str(spec_path), "--run-dir", str(run_dir), "--quiet"]
        for o in overrides:
            args += ["--set", o]
        app(args + (["--resume"] if resume else []))
    else:
        sg.train(sg.load(spec_path, overrides), run_dir, resume=resume, on_batch=on_batch)


def run_state(run_dir: Path) -> dict:
    """Everything a finished run leaves that must not depend on interruptions: the checkpoints kept (every
    array and the JSON state of each), the metrics log, and the summary without its timings."""
    run_dir = Path(run_dir)
    checkpoints = {}
    for path in list_checkpoints(run_dir / "checkpoints"):
        c = load_checkpoint(path)
        checkpoints[path.name] = (
            {k: (a.dtype.str, a.shape, a.tobytes()) for k, a in c.arrays.items()},
            json.dumps(c.state, sort_keys=True),
        )
    summary = json.loads((run_dir / "summary.json").read_text())
    for timing in ("seconds", "steps_per_s"):
        summary.pop(timing)
    return {
        "checkpoints": checkpoints,
        "metrics": (run_dir / "metrics.jsonl").read_bytes(),
        "summary": summary,
        "latest": (run_dir / "checkpoints" / "latest").read_text(),
    }


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


def resume(run_dir):
    """Resume a RICH run in ``run_dir`` to its end; its final state."""
    sg.train(sg.load(POLY, RICH), run_dir, resume=True)
    return run_state(run_dir)
