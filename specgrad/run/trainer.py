"""The trainer: data batches -> plan (forward + backward) -> clip -> optimizer step -> schedule -> log ->
validate -> checkpoint. Everything that shapes the run (parameters, optimizer state, RNG, position in the
epoch, best validation value, patience) is in the checkpoint, so a resumed run continues bit for bit as if
it had never stopped; the schedule is a closed form of the step, so it needs no state at all. Under mpiexec,
each process computes its share of every batch and one Allreduce sums them (specgrad/run/distributed.py);
only rank 0 writes."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from specgrad.base.diagnostics import SpecError
from specgrad.base.rng import INIT, SHUFFLE, stream
from specgrad.base.version import __version__
from specgrad.data.prepare import prepare_data
from specgrad.data.sources import no_validation_rows
from specgrad.engine.ops.collective import summing_over
from specgrad.model.build import BATCH, TrainStep, init_params
from specgrad.model.losses import is_mean
from specgrad.model.metrics import evaluate
from specgrad.optim.clip import clip, param_norms
from specgrad.optim.optimizers import make_optimizer
from specgrad.optim.schedules import make_schedule
from specgrad.run import threads
from specgrad.run.batches import Batches
from specgrad.run.checkpoint import (
    CheckpointError,
    Expected,
    TrainingArrays,
    checkpoint_dir,
    checkpoints_dir,
    expected_arrays,
    latest_checkpoint,
    list_checkpoints,
    prune_checkpoints,
    save_checkpoint,
)
from specgrad.run.distributed import Communicator, ShardedRun
from specgrad.run.lock import RunLock, RunLocked
from specgrad.run.retention import improved, to_keep
from specgrad.run.runlog import (
    MetricsLog,
    spec_diff,
    spec_hash,
    write_spec,
    write_summary,
)
from specgrad.run.tensorboard import with_tensorboard
from specgrad.spec import Spec
from specgrad.spec.settings import Clip, Validation


class RunError(Exception):
    """A run that cannot start or continue (nothing to resume, damaged checkpoints, changed spec...)."""


class Diverged(RunError):
    """A non-finite loss, gradient or parameter under ``on_divergence: fail``, or parameters that turned
    non-finite (never saved, whatever the policy)."""

    # in a data-parallel run every process decides it at the same step from the same summed values: the
    # job need not be aborted (specgrad/run/distributed.py, failing_together)
    collective = True


class _Abandoned(Exception):
    """A stop signal arrived between the micro-batches of a step (``train.accumulate``): the step is dropped
    and the run stops after the last complete one, so that a signal is heeded within one micro-batch."""


@dataclass
class Hooks:
    """What a front end (the CLI's progress bar) hears about, and where a caller may step in (docs/api.md,
    "Callbacks"); the library itself prints nothing. A hook that raises ends the run with that exception,
    keeping the checkpoints already written."""

    on_start: Callable[[int, int], None] = lambda start, total: None
    on_step: Callable[[int, float], None] = lambda step, loss: None
    on_warning: Callable[[str], None] = lambda message: None
    should_stop: Callable[[], bool] = lambda: False  # asked after each step: stop there, as SIGINT does
    # each validation's results; returning True stops the run there, checkpointed, as "pruned" (a sweep's pruner)
    on_validation: Callable[[int, dict], bool] = lambda step, results: False
    # The hooks below are None unless given: an unset one costs the loop a None check, nothing more.
    # before micro-batch ``index`` is computed ((N - 1) * accumulate + j for step N's j-th; an L-BFGS line
    # search computes the same indices again): profiling, fault injection
    on_batch: Callable[[int], None] | None = None
    # step N's mean loss and gradients (N numbered as on_step and metrics.jsonl number it; name -> writable
    # array, summed over the processes of a data-parallel run), before the divergence check and clipping:
    # inspect them, change them in place (gradient surgery), and return the loss to use. Every evaluation of
    # the step's gradients passes through it, an L-BFGS line search's included, so the optimizer only ever
    # sees what it returns.
    on_gradients: Callable[[int, float, dict[str, np.ndarray]], float] | None = None
    # replaces the evaluation on the val split at each validation: (step, parameters) -> {name: value},
    # holding train.validation.metric; the parameters are the live arrays, to read, not to change
    validate: Callable[[int, dict[str, np.ndarray]], dict[str, float]] | None = None


def default_run_dir(name: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = root / name / stamp, 1
    while path.exists():
        n += 1
        path = root / name / f"{stamp}-{n}"
    return path


def latest_run_dir(name: str, root: Path = Path("runs")) -> Path | None:
    """The newest run of ``name``: timestamps compared as numbers, so ``...-10`` comes after ``...-2``."""

    def key(path: Path):
        return tuple(int(part) if part.isdigit() else part for part in path.name.split("-"))

    runs = sorted((p for p in (root / name).glob("*") if p.is_dir()), key=key) if (root / name).is_dir() else []
    return runs[-1] if runs else None


def resume_dir(spec_path: Path, name: str) -> Path | None:
    """Where ``--resume`` without ``--run-dir`` continues: the run whose own spec.yaml was given, else the
    newest run of the spec's name."""
    folder = Path(spec_path).parent
    if Path(spec_path).name == "spec.yaml" and checkpoints_dir(folder).is_dir():
        return folder
    return latest_run_dir(name)


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary (after a checkpoint); a second SIGINT
    stops at once, saving nothing (KeyboardInterrupt reaches the caller)."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum, frame):
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Trainer:
    def __init__(
        self,
        spec: Spec,
        run_dir: Path,
        hooks: Hooks | None = None,
        allow_spec_change: bool = False,
        comm: Communicator | None = None,
    ):
        """``comm``: the processes of a data-parallel run (``specgrad.run.distributed.connect()``); by default
        this process alone."""
        self.spec, self.run_dir, self.hooks = spec, Path(run_dir), hooks or Hooks()
        self.allow_spec_change = allow_spec_change
        self.comm = comm or Communicator()
        self.root = self.comm.is_root  # the one process that writes the run directory
        self.model = spec.model
        s = spec.settings
        self.seed, self.train_cfg = s.seed, s.train
        t = s.train
        self.splits = self._load_splits()
        self.data = self.splits["train"]
        self.batches = Batches(self.data, t.batch_size, t.shuffle, t.drop_last, stream(self.seed, SHUFFLE))
        self.accumulate = t.accumulate
        # a mean loss: accumulated batches of unequal rows are weighted by them (as one batch of all their rows)
        self.mean_loss = is_mean(spec.data["loss"])
        # validation made sure one of steps and epochs is given
        self.total_steps = t.steps or max(1, (t.epochs or 1) * self.batches.per_epoch // self.accumulate)
        self.params = init_params(self.model, stream(self.seed, INIT))
        self.optimizer = make_optimizer(dict(spec.data["optimizer"]), self.params)
        self.schedule = make_schedule(spec.data.get("schedule"), self.optimizer.lr, self.total_steps)
        if self.schedule.momentum:
            self.optimizer.cycle_momentum()
        # one process's part of a data-parallel step; None in one process, which runs as it always did
        self.sharded = (
            ShardedRun.of(self.comm, spec, self.batches, self.optimizer, self.mean_loss) if self.comm.size > 1 else None
        )
        self.stop = _StopFlag()  # the signals a run heeds; its own while it trains
        if self.sharded:
            self.model = self.sharded.model
        self.train_step = TrainStep(self.model, self.seed, own_plan=True)  # feeds state + key, keeps updates
        if self.sharded:
            self.sharded.start(self.train_step)
        elif self.accumulate == 1 and not self.optimizer.needs_closure:
            # the plan writes the gradients where the optimizer reads them (not under a line search, which
            # evaluates again while the optimizer still holds the step's gradients)
            self.train_step.plan.write_outputs_into({1 + i: g for i, g in enumerate(self.optimizer.grads.values())})
        # BLAS threads for the loop, from the sizes of the step's matrix products (run/threads.py)
        plan = self.train_step.plan
        self.threads = threads.decide(plan.products({BATCH: self.batches.size}), t.threads, blocked=plan.blocked)
        self.resolved = {**spec.data, "seed": self.seed}  # the spec as run: the seed used is written down
        self.hash = spec_hash(self.resolved)
        self.validation = self._validation_settings()
        self.keep_last = t.checkpoint.keep_last
        self.keep_best = t.checkpoint.keep_best if t.checkpoint.keep_best is not None else int(bool(self.validation))
        self.on_divergence = t.on_divergence
        # the run's evolving record, saved in every checkpoint
        self.best: dict | None = None  # {"step": s, "value": v} of the best validation so far
        self.stale = 0  # validations since the best (for patience)
        self.skipped = 0  # steps skipped under on_divergence: skip
        self.saved: dict[int, float | None] = {}  # retained checkpoints: step -> validation value there

    # ------------------------------------------------------------------ settings
    def _load_splits(self) -> dict[str, dict[str, np.ndarray]]:
        self.prepared = prepare_data(self.spec)  # split, standardized on train, checked against the model
        return self.prepared.splits

    def _validation_settings(self) -> Validation | None:
        """``train.validation``, once the split it needs is known to hold rows (validation checked the rest)."""
        v = self.train_cfg.validation
        if v is None:
            return None
        if "val" not in self.splits:
            rows = sum(len(next(iter(fields.values()))) for fields in self.splits.values())
            raise SpecError.at(
                self.spec.doc.loc(("data", "split", "val")),
                no_validation_rows(rows),
            )
        return v

    # ------------------------------------------------------------------ one step
    def _forward_backward(self, batch: list[np.ndarray], index: int, shard=None) -> tuple[float, list[np.ndarray]]:
        """Loss and gradients (same order as params) of the ``index``-th micro-batch: the one place a training
        step is computed. ``TrainStep`` feeds the model's state and the dropout key of this index (a function
        of the seed and the index) and keeps the state updates, which ``_save`` / ``_restore`` carry. In a
        data-parallel run, ``batch`` is this process's ``shard`` of the batch (specgrad/run/distributed.py)."""
        try:
            loss, grads = self.train_step(batch, list(self.params.values()), index, shard)
        except IndexError as e:  # the data's ids: one beyond an embedding's rows
            raise RunError(f"batch {index + 1}: {e} (ids count from 0 to the embedding's rows - 1)") from None
        return float(loss), grads

    def _gradients(self, step: int) -> tuple[float, dict[str, np.ndarray]]:
        """The step's loss and gradients: the mean over its ``accumulate`` batches, in writable arrays."""
        # copied into the optimizer's gradient buffers (allocated once): the plan may hand back its own
        # constants or read-only views, and clipping and accumulation write into these
        total, acc = 0.0, self.optimizer.grads
        on_batch = self.hooks.on_batch
        # a long step (many micro-batches) may be dropped for a stop signal, the batches put back as they were;
        # not under mpiexec (every process must reach the step's Allreduce) nor in a line search (L-BFGS has
        # moved the parameters)
        droppable = self.accumulate > 1 and not self.sharded and not self.optimizer.needs_closure
        before = self.batches.state() if droppable else None  # the batch order as it was before the step
        # batches of equal rows are averaged; with an epoch's shorter last batch among them and a mean loss,
        # each counts by its rows, so the step is that of one batch of all their rows
        weights = None
        if self.accumulate > 1 and self.mean_loss:
            rows = [self.batches.count(step * self.accumulate + j) for j in range(self.accumulate)]
            if len(set(rows)) > 1:
                weights = [r / sum(rows) for r in rows]
        for j in range(self.accumulate):
            index = step * self.accumulate + j
            if before is not None and j and self.stop.signum is not None:
                self.batches.restore(*before)
                raise _Abandoned  # _step puts the model state back
            if on_batch is not None:
                on_batch(index)
            # in a data-parallel run, this process's rows of the batch and its share of the batch's loss
            batch, shard = self.sharded.batch(index) if self.sharded else (self.batches.get(index), None)
            loss, grads = self._forward_backward(batch, index, shard)
            total += loss if weights is None else weights[j] * loss
            for g_acc, g in zip(acc.values(), grads):
                if j > 0:
                    g_acc += g if weights is None else weights[j] * g
                else:
                    if g is not g_acc:  # the plan may have written it there already
                        np.copyto(g_acc, g)
                    if weights is not None:
                        g_acc *= weights[0]
        if self.accumulate > 1 and weights is None:
            for g in acc.values():
                g /= self.accumulate
            total /= self.accumulate
        if self.sharded:  # the one Allreduce: every process now holds the batch's loss and gradients
            total = self.sharded.reduce(total, self.train_step.state)
        if self.hooks.on_gradients is not None:
            total = float(self.hooks.on_gradients(step + 1, total, acc))  # numbered as logged
        return total, acc

    def _put_back(self, state: dict) -> None:
        """The model state as it was (``state``: a copy taken before a step)."""
        self.train_step.state.clear()
        self.train_step.state.update(state)

    def _validate(self, step: int) -> dict[str, float]:
        if self.hooks.validate is None:
            return evaluate(
                self.model, self.params, self.splits["val"], self.spec.settings.metrics, self.train_step.state
            )
        results = dict(self.hooks.validate(step, self.params))
        assert self.validation is not None  # validating at all means validation settings
        if self.validation.metric not in results:
            raise RunError(
                f"the validate hook's results at step {step} have no '{self.validation.metric}' "
                f"(train.validation.metric); they have {', '.join(results) or 'nothing'}"
            )
        return results

    # ------------------------------------------------------------------ state
    def _save(self, step: int, value: float | None = None) -> None:
        """Checkpoint ``step`` (``value``: its validation metric), then prune by the retention settings.
        Refuses non-finite parameters: the last checkpoint stays the last finite one."""
        bad = [k for k, v in self.params.items() if not np.isfinite(v).all()]
        bad += [f"{k} (model state)" for k, v in self.train_step.state.items() if not np.isfinite(v).all()]
        if bad:
            raise Diverged(
                f"parameters {', '.join(bad)} are not finite at step {step}; not saving (the last checkpoint is kept)"
            )
        self.saved[step] = value
        pruning = self.keep_last is not None or self.keep_best
        if pruning:
            mode = self.validation.mode if self.validation else "min"
            keep = to_keep(self.saved, self.keep_last, self.keep_best, mode)
            self.saved = {s: v for s, v in self.saved.items() if s in keep}
        order, rng_state = self.batches.state()
        arrays = TrainingArrays(
            self.params, self.optimizer.state_arrays(), self.train_step.state_arrays(), order
        ).pack()
        state = {
            "step": step,
            "epoch": step * self.accumulate // self.batches.per_epoch,
            "rng": rng_state,
            "spec_hash": self.hash,
            "spec": self.resolved,
            "specgrad": __version__,
            "best": self.best,
            "stale": self.stale,
            "skipped": self.skipped,
            "checkpoints": [[s, v] for s, v in sorted(self.saved.items())],
        }
        if self.sharded:
            self.comm.check_same(arrays, "parameters, optimizer or model state")
        if not self.root:
            return
        root = checkpoints_dir(self.run_dir)
        save_checkpoint(root, step, arrays, state)
        if pruning:  # only now that the new checkpoint is complete
            prune_checkpoints(root, [checkpoint_dir(root, s) for s in self.saved])

    def _expected_arrays(self) -> dict[str, Expected]:
        """Every array a checkpoint of this run holds, with the shape and dtype this model gives it: what a
        checkpoint is checked against before any of its data is read (a copied-in one may be hostile)."""
        order, _ = self.batches.state()
        n = self.batches.n

        def permutation(saved: np.ndarray) -> str | None:
            # a mid-epoch resume indexes the data with it: anything but a permutation of the rows is damage
            if saved.size and (saved.min() < 0 or saved.max() >= n or np.unique(saved).size != n):
                return f"the batch order is not a permutation of the data's {n} rows"
            return None

        return expected_arrays(
            self.params,
            self.train_step.state_arrays(),
            self.optimizer.state_arrays(),
            Expected(order.shape, order.dtype, permutation),
            self.optimizer.state_limits(),
        )

    def _restore(self) -> int:
        try:
            ckpt = latest_checkpoint(
                checkpoints_dir(self.run_dir), warn=self.hooks.on_warning, expected=self._expected_arrays()
            )
        except CheckpointError as e:
            raise RunError(str(e)) from None
        if ckpt is None:
            raise RunError(f"nothing to resume: {self.run_dir} has no checkpoint")
        if ckpt.step > self.total_steps:  # a changed spec with fewer steps: its run would claim what it is not
            raise RunError(
                f"{ckpt.path} is at step {ckpt.step}, past the {self.total_steps} steps this spec trains: a run is "
                "not shortened (resume with at least as many steps, or train into a new run directory)"
            )
        if ckpt.state.get("spec_hash") != self.hash:
            diff = spec_diff(ckpt.state.get("spec", {}), self.resolved)
            shown = "\n".join(f"  {line}" for line in diff) or "  (the checkpoint does not record its spec)"
            if not self.allow_spec_change:
                raise RunError(
                    f"the spec differs from the one {ckpt.path} was trained with:\n{shown}\n"
                    "resume with the run's own spec.yaml, or pass --allow-spec-change"
                )
            self.hooks.on_warning(f"resuming {ckpt.path} with a changed spec:\n{shown}")
            if self.root:
                write_spec(self.run_dir, self.resolved, __version__)
                self.prepared.save(self.run_dir)  # eval / predict must transform data as the changed spec does
        saved_arrays = TrainingArrays.unpack(ckpt.arrays)
        try:
            for k, v in self.params.items():
                saved = saved_arrays.params[k]
                if saved.shape != v.shape:
                    raise ValueError(f"parameter '{k}' has shape {saved.shape}, the model's is {v.shape}")
                v[...] = saved
            self.optimizer.load_state_arrays(saved_arrays.optim)
            if saved_arrays.order is None:
                raise ValueError("it has no batch order")
            self.batches.restore(saved_arrays.order, ckpt.state["rng"])
            self.best, self.stale = ckpt.state.get("best"), ckpt.state.get("stale", 0)
            self.skipped = ckpt.state.get("skipped", 0)
            self.saved = {int(s): v for s, v in ckpt.state.get("checkpoints", [[ckpt.step, None]])}
            self.train_step.load_state(saved_arrays.state)
        except (KeyError, ValueError, TypeError, OverflowError) as e:  # OverflowError: an RNG state of 400 digits
            raise RunError(f"checkpoint {ckpt.path} does not fit this model: {e}") from None
        return ckpt.step

    # ------------------------------------------------------------------ loop
    def _step(self, step: int, clip_settings: Clip | None, logged: bool) -> dict | None:
        """Optimizer step ``step`` (0-based) and its record (with the per-parameter gradient norms when
        ``logged``: they are computed only for records that are written); None when the divergence policy
        stops the run here (``on_divergence: fail`` raises instead)."""
        # the model state before the step (batchnorm's statistics: replaced, never changed in place), put back
        # when the step is not taken: a dropped step, or a non-finite one
        state = dict(self.train_step.state)
        try:
            loss, grads = self._gradients(step)
        except _Abandoned:
            self._put_back(state)
            raise
        # the global norm over the flat gradient buffers, one product per dtype; per parameter only if logged
        norm = math.sqrt(sum([float(np.vdot(f, f)) for f in self.optimizer.grad_flat]))
        norms = param_norms(grads) if logged else None
        lr = self.schedule(step)
        finite = math.isfinite(loss) and math.isfinite(norm)
        evals = None
        if finite:
            clip(grads, clip_settings, norms, norm)
            if self.schedule.momentum:
                self.optimizer.set_momentum(self.schedule.momentum(step))
            if self.optimizer.needs_closure:  # L-BFGS evaluates again along its line search
                evals = self.optimizer.step(grads, lr, loss=loss, closure=lambda: self._gradients(step)[0])
            else:
                self.optimizer.step(grads, lr)
        else:
            self._put_back(state)
            message = f"non-finite loss or gradient at step {step + 1}"
            if self.on_divergence == "fail":
                raise Diverged(f"{message} (on_divergence: fail)")
            if self.on_divergence == "stop":
                self.hooks.on_warning(f"{message}; stopping with the last finite parameters")
                return None
            self.skipped += 1
            self.hooks.on_warning(f"{message}; step skipped")
        k = self.accumulate
        record: dict[str, Any] = {
            "step": step + 1,
            "epoch": (step * k + k - 1) // self.batches.per_epoch,
            "loss": loss if math.isfinite(loss) else None,
            "lr": lr,
            "grad_norm": norm if finite else None,
        }
        if logged:
            assert norms is not None  # computed for every logged step
            # a finite global norm means finite per-parameter ones: the dict is logged as it is
            record["grad_norms"] = norms if finite else {n: (v if math.isfinite(v) else None) for n, v in norms.items()}
        if not finite:
            record["skipped"] = True
        if evals is not None:
            record["evals"] = evals
        return record

    def _validation_step(self, step: int, record: dict) -> tuple[float, bool]:
        """Evaluate on the val split after ``step`` steps (into ``record``); the metric and whether it is a
        new best. Updates the best and the patience count."""
        record["val"] = results = self._validate(step)
        assert self.validation is not None
        value = results[self.validation.metric]
        best = self.best["value"] if self.best else None
        if improved(value, best, self.validation.mode, self.validation.min_delta):
            self.best, self.stale = {"step": step, "value": value}, 0
            return value, True
        self.stale += 1
        return value, False

    def run(self, resume: bool = False) -> dict:
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise RunError(f"the run directory {self.run_dir} is a file")
        if not self.root:  # rank 0 of a data-parallel run holds the run directory for every process
            return self._run(resume)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            lock = RunLock(self.run_dir)
            lock.__enter__()
        except RunLocked as e:
            raise RunError(str(e)) from None
        try:  # held until the run ends, however it ends; the kernel drops it if this process dies
            return self._run(resume)
        finally:
            lock.__exit__()

    def _run(self, resume: bool) -> dict:
        if not resume and list_checkpoints(checkpoints_dir(self.run_dir)):
            raise RunError(
                f"{self.run_dir} already holds a run; continue it with --resume, or train into another --run-dir"
            )
        start = self._restore() if resume else 0
        if not resume and self.root:
            write_spec(self.run_dir, self.resolved, __version__)
            self.prepared.save(self.run_dir)  # data.json: what eval / predict need to transform data
        log: MetricsLog | NullLog
        if self.root:
            log = MetricsLog(self.run_dir / "metrics.jsonl", resume_step=start if resume else None)
            log = with_tensorboard(log, self.spec, self.run_dir, start if resume else None)
        else:
            log = NullLog()
        t, k, per_epoch = self.train_cfg, self.accumulate, self.batches.per_epoch
        patience = self.validation.patience if self.validation is not None else None
        status, step, t0, stopped_early = "completed", start, time.perf_counter(), False
        last_saved = start if resume else None
        stop = self.stop = _StopFlag()
        try:
            self.hooks.on_start(start, self.total_steps)  # inside: a hook that raises still closes the log
            # non-finite values are the divergence policy's business: numpy's own warnings would only repeat it
            with (
                stop,
                threads.applied(self.threads),
                self.optimizer.parallel(self.threads.threads or 1),
                np.errstate(over="ignore", invalid="ignore", divide="ignore"),
                self._collectives(),
            ):
                while step < self.total_steps:
                    if self.sharded:  # a signal any process received stops them all, at one step
                        self.sharded.received = stop.signum
                    done = step + 1
                    validating = self.validation is not None and self.validation.due(
                        done, step * k, done * k, per_epoch
                    )
                    logged = validating or done % t.log_every == 0 or done == self.total_steps
                    try:
                        record = self._step(step, t.clip, logged)
                    except _Abandoned:  # the last complete step is the run's state: saved, as after a step
                        status = "interrupted"
                        if last_saved != step:
                            log.parameters(step, self.params)
                            log.flush()
                            self._save(step)
                            last_saved = step
                        break
                    if record is None:
                        status = "diverged"
                        break
                    step = done
                    due = t.checkpoint.due(step, (step - 1) * k, step * k, per_epoch)
                    value = None
                    if validating:
                        value, new_best = self._validation_step(step, record)
                        due = due or new_best
                        stopped_early = patience is not None and self.stale >= patience
                        if self.hooks.on_validation(step, record["val"]) and step < self.total_steps:
                            status = "pruned"
                    if logged:
                        log.write(record)
                    self.hooks.on_step(step, record["loss"] if record["loss"] is not None else math.nan)
                    # in a data-parallel run, the signal any process had received when the step began
                    stopped_by = self.sharded.agreed_signal if self.sharded else stop.signum
                    interrupted = stopped_by is not None or self.hooks.should_stop()
                    pruned = status == "pruned"
                    if due or interrupted or stopped_early or pruned or step == self.total_steps:
                        log.parameters(step, self.params)
                        log.flush()  # the log holds every step the checkpoint covers
                        self._save(step, value)
                        last_saved = step
                    if interrupted:
                        status = "interrupted"
                        break
                    if pruned:
                        break
                    if stopped_early:
                        assert self.validation is not None and self.best is not None
                        self.hooks.on_warning(
                            f"early stop at step {step}: no better {self.validation.metric} "
                            f"in {self.stale} evaluations (best at step {self.best['step']})"
                        )
                        break
        except Diverged:
            self._summary("diverged", start, step, time.perf_counter() - t0, False, None)
            raise
        finally:
            log.close()
        seconds = time.perf_counter() - t0
        if status == "diverged" and last_saved != step:
            try:
                self._save(step)  # the parameters before the bad step: the run's last good state, if finite
            except Diverged:
                self._summary("diverged", start, step, seconds, False, None)
                raise
        return self._summary(
            status, start, step, seconds, stopped_early, self.sharded.agreed_signal if self.sharded else stop.signum
        )

    def _collectives(self):
        """While a data-parallel run trains, the graph's collectives (synchronized batchnorm) sum over its
        processes."""
        return summing_over(self.comm.group_sum) if self.sharded else nullcontext()

    def _summary(self, status, start, step, seconds, stopped_early, signum) -> dict:
        metrics = self.spec.settings.metrics
        # the final evaluation is rank 0's alone: the others' would only repeat it
        splits = self.splits.items() if self.root else ()
        with np.errstate(all="ignore"):  # a diverged run's final values may be NaN; that is the report
            results = {
                name: evaluate(self.model, self.params, fields, metrics, self.train_step.state)
                for name, fields in splits
            }
        summary = {
            "status": status,
            "steps": step,
            "epochs": step * self.accumulate / self.batches.per_epoch,
            "seconds": round(seconds, 6),
            "steps_per_s": round((step - start) / seconds, 1) if seconds > 0 else None,
            "train": results.get("train", {}),
            "val": results.get("val", {}),
            "spec_hash": self.hash,
            "threads": self.threads.record(),
        }
        if "test" in results:
            summary["test"] = results["test"]
        if self.validation:
            summary["best"] = self.best
            summary["stopped_early"] = stopped_early
        if self.skipped:
            summary["skipped_steps"] = self.skipped
        if status == "interrupted" and signum is not None:
            summary["signal"] = int(signum)
        if self.root:
            write_summary(self.run_dir, summary)
        return summary


class NullLog:
    """The metrics log of a process that writes nothing (ranks other than 0 of a data-parallel run)."""

    def write(self, record: dict) -> None:
        pass

    def parameters(self, step: int, params: dict) -> None:
        pass

    flush = close = lambda self: None
