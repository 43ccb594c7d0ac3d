"""The trainer: data batches -> plan (forward + backward) -> clip -> optimizer step -> schedule -> log ->
checkpoint. Everything that shapes the run (parameters, optimizer state, RNG, position in the epoch) is in
the checkpoint, so a resumed run continues bit for bit as if it had never stopped."""
from __future__ import annotations

import math
import signal
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

import numpy as np

from specgrad import __version__
from specgrad.components import normalize
from specgrad.data.prepare import prepare_data
from specgrad.graph.build import TrainStep, init_params
from specgrad.metrics import evaluate
from specgrad.optim.clip import clip_global_norm, global_norm
from specgrad.optim.optimizers import make_optimizer
from specgrad.optim.schedules import SCHEDULES
from specgrad.run.checkpoint import CheckpointError, latest_checkpoint, save_checkpoint
from specgrad.run.runlog import MetricsLog, spec_hash, write_spec, write_summary
from specgrad.spec import Spec

INIT_STREAM, SHUFFLE_STREAM = 1, 2          # independent RNG streams derived from the spec's seed


class RunError(Exception):
    """A run that cannot start or continue (nothing to resume, damaged checkpoints, changed spec...)."""


@dataclass
class Hooks:
    """What a front end (the CLI's progress bar) hears about; the library itself prints nothing."""
    on_start: Callable[[int, int], None] = lambda start, total: None
    on_step: Callable[[int, float], None] = lambda step, loss: None
    on_warning: Callable[[str], None] = lambda message: None


def default_run_dir(name: str, root: Path = Path("runs")) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    path, n = root / name / stamp, 1
    while path.exists():
        n += 1
        path = root / name / f"{stamp}-{n}"
    return path


def latest_run_dir(name: str, root: Path = Path("runs")) -> Path | None:
    runs = sorted(p for p in (root / name).glob("*") if p.is_dir()) if (root / name).is_dir() else []
    return runs[-1] if runs else None


class _StopFlag:
    """SIGINT/SIGTERM ask the loop to stop at the next step boundary (after a checkpoint); a second SIGINT
    stops at once."""

    def __init__(self):
        self.signum = None
        self.previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.previous[sig] = signal.signal(sig, self._handle)
            except ValueError:          # not the main thread: no signal handling
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
    def __init__(self, spec: Spec, run_dir: Path, hooks: Hooks | None = None):
        self.spec, self.run_dir, self.hooks = spec, Path(run_dir), hooks or Hooks()
        self.data_spec = spec.data
        self.model = spec.model
        cfg = spec.data
        self.seed = cfg.get("seed", 0)
        self.train_cfg = cfg["train"]
        self.splits = self._load_splits()
        self.data = self.splits["train"]
        self.n = len(next(iter(self.data.values())))
        bs = self.train_cfg.get("batch_size", "full")
        self.batch_size = self.n if bs == "full" else min(int(bs), self.n)
        self.full_batch = self.batch_size == self.n
        self.steps_per_epoch = math.ceil(self.n / self.batch_size)
        self.total_steps = self.train_cfg.get("steps") or self.train_cfg["epochs"] * self.steps_per_epoch
        self.shuffle = self.train_cfg.get("shuffle", True) and not self.full_batch
        self.params = init_params(self.model, np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(INIT_STREAM,))))
        self.rng = np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(SHUFFLE_STREAM,)))
        opt_cfg = cfg["optimizer"]
        self.optimizer = make_optimizer(opt_cfg, self.params)
        self.schedule = SCHEDULES.create(normalize(cfg.get("schedule", "constant")), base_lr=opt_cfg["lr"],
                                         total_steps=self.total_steps)
        self.train_step = TrainStep(self.model, self.seed)    # feeds model state + key, keeps state updates
        self.hash = spec_hash(cfg)
        self.order = np.arange(self.n)

    # ------------------------------------------------------------------ data
    def _load_splits(self) -> dict[str, dict[str, np.ndarray]]:
        self.prepared = prepare_data(self.spec)     # split, standardized on train, checked against the model
        return self.prepared.splits

    def _batch(self, step: int) -> list[np.ndarray]:
        if self.full_batch:
            return list(self.data.values())
        pos = step % self.steps_per_epoch
        if pos == 0:
            self.order = self.rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        idx = self.order[pos * self.batch_size:(pos + 1) * self.batch_size]
        return [a[idx] for a in self.data.values()]

    # ------------------------------------------------------------------ state
    def _save(self, step: int) -> None:
        arrays = {f"params/{k}": v for k, v in self.params.items()}
        arrays.update({f"optim/{k}": np.asarray(v) for k, v in self.optimizer.state_arrays().items()})
        arrays["order"] = self.order
        arrays.update(self.train_step.state_arrays())
        state = {"step": step, "epoch": step // self.steps_per_epoch, "rng": self.rng.bit_generator.state,
                 "spec_hash": self.hash, "specgrad": __version__}
        save_checkpoint(self.run_dir / "checkpoints", step, arrays, state)

    def _restore(self) -> int:
        try:
            ckpt = latest_checkpoint(self.run_dir / "checkpoints", warn=self.hooks.on_warning)
        except CheckpointError as e:
            raise RunError(str(e)) from None
        if ckpt is None:
            raise RunError(f"nothing to resume: {self.run_dir} has no checkpoint")
        if ckpt.state.get("spec_hash") != self.hash:
            raise RunError(f"the spec differs from the one {ckpt.path} was trained with; "
                           "resume with the run's own spec.yaml")
        try:
            for k, v in self.params.items():
                v[...] = ckpt.arrays[f"params/{k}"]
            self.optimizer.load_state_arrays({k[len("optim/"):]: v for k, v in ckpt.arrays.items()
                                              if k.startswith("optim/")})
            self.order = ckpt.arrays["order"]
            self.train_step.load_state(ckpt.arrays)
            self.rng.bit_generator.state = ckpt.state["rng"]
        except (KeyError, ValueError, TypeError) as e:
            raise RunError(f"checkpoint {ckpt.path} does not fit this model: {e}") from None
        return ckpt.step

    # ------------------------------------------------------------------ loop
    def run(self, resume: bool = False) -> dict:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        start = self._restore() if resume else 0
        if not resume:
            write_spec(self.run_dir, self.spec.data, __version__)
            self.prepared.save(self.run_dir)          # data.json: what eval / predict need to transform data
        log = MetricsLog(self.run_dir / "metrics.jsonl", resume_step=start if resume else None)
        every = self.train_cfg.get("checkpoint", {}).get("every")
        log_every = self.train_cfg.get("log_every", max(1, self.total_steps // 100))
        max_norm = self.train_cfg.get("clip", {}).get("max_norm")
        names = list(self.params)
        params = list(self.params.values())
        status, step, t0 = "completed", start, time.perf_counter()
        self.hooks.on_start(start, self.total_steps)
        try:
            with _StopFlag() as stop:
                while step < self.total_steps:
                    loss, grads = self.train_step(self._batch(step), params, step)
                    loss = float(loss)
                    grads = {n: g if isinstance(g, np.ndarray) and g.flags.writeable else np.array(g)
                             for n, g in zip(names, grads)}
                    logged = (step + 1) % log_every == 0 or step + 1 == self.total_steps
                    norm = global_norm(grads) if (logged or max_norm) else None
                    if not (math.isfinite(loss) and (norm is None or math.isfinite(norm))):
                        status = "diverged"
                        self.hooks.on_warning(f"non-finite loss or gradient at step {step + 1}; stopping "
                                              "(parameters of the last checkpoint are kept)")
                        break
                    if max_norm:
                        clip_global_norm(grads, max_norm, norm)
                    lr = self.schedule(step)
                    self.optimizer.step(grads, lr)
                    step += 1
                    if logged:
                        log.write({"step": step, "epoch": (step - 1) // self.steps_per_epoch, "loss": loss,
                                   "lr": lr, "grad_norm": norm})
                    self.hooks.on_step(step, loss)
                    if every and step % every == 0 and step < self.total_steps:
                        log.flush()
                        self._save(step)
                    if stop.signum is not None:
                        status = "interrupted"
                        break
        except KeyboardInterrupt:
            status = "interrupted"
        seconds = time.perf_counter() - t0
        log.close()
        if status != "diverged":
            self._save(step)
        metrics = self.spec.data.get("metrics", [])
        results = {name: evaluate(self.model, self.params, fields, metrics, self.train_step.state)
                   for name, fields in self.splits.items()}
        summary = {
            "status": status, "steps": step, "epochs": step / self.steps_per_epoch, "seconds": round(seconds, 6),
            "steps_per_s": round((step - start) / seconds, 1) if seconds > 0 else None,
            "train": results["train"], "val": results.get("val", {}), "spec_hash": self.hash,
        }
        if "test" in results:
            summary["test"] = results["test"]
        if status == "interrupted":
            summary["signal"] = int(stop.signum or signal.SIGINT)
        write_summary(self.run_dir, summary)
        return summary
