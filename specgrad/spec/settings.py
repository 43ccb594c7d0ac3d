"""Typed, frozen run settings: the form of a spec's ``train`` section (and its seed, dtype and metrics) that
the runner reads. Every default is defined here, once: the JSON Schema of ``train`` is generated from these
fields (``schema_of``), so the schema, the docs generated from it and the runner cannot disagree.

A field's metadata holds its JSON Schema and its one-line description; a nested settings class is a nested
object. Components chosen by ``type`` (optimizer, schedule, loss, data source) keep their settings in their
registries (specgrad/base/components.py), which declare their own schemas the same way.
"""

from __future__ import annotations

import dataclasses
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from specgrad.base.components import POSITIVE
from specgrad.engine.ir import DEFAULT_DTYPE
from specgrad.spec.sizes import MEMORY_BUDGET

COUNT = {"type": "integer", "minimum": 1}


def setting(schema: dict, doc: str, default: Any = None) -> Any:
    """A settings field: its JSON Schema, its description, and its default (None: unset)."""
    return field(default=default, metadata={"schema": schema, "doc": doc})


def nested(cls: type, doc: str, default_factory: Any = None) -> Any:
    """A nested settings object (absent from the spec: ``default_factory()``, or None)."""
    return field(default_factory=default_factory or (lambda: None), metadata={"doc": doc, "nested": cls})


@dataclass(frozen=True)
class Cadence:
    """When something periodic happens: every N optimizer steps and/or every E epochs."""

    every: int | None = setting(COUNT, "every N optimizer steps")
    every_epochs: int | None = setting(COUNT, "every N epochs")

    def due(self, done_steps: int, prev_batches: int, batches: int, per_epoch: int) -> bool:
        """Whether a step that ends at ``done_steps`` (having consumed batches prev_batches..batches) is due."""
        if self.every and done_steps % self.every == 0:
            return True
        e = self.every_epochs
        if not e:
            return False
        return batches // per_epoch > prev_batches // per_epoch and (batches // per_epoch) % e == 0


@dataclass(frozen=True)
class Clip:
    SCHEMA: ClassVar[dict] = {
        "minProperties": 1,
        "description": "applied in the order max_value, max_param_norm, max_norm",
    }
    max_value: float | None = setting(POSITIVE, "bound on each component")
    max_param_norm: float | None = setting(POSITIVE, "bound on each gradient's norm")
    max_norm: float | None = setting(
        POSITIVE, "bound on the global L2 norm (scaled as torch's clip_grad_norm_: max_norm / (norm + 1e-6))"
    )


@dataclass(frozen=True)
class Checkpointing(Cadence):
    every: int | None = setting(COUNT, "save every N steps")
    every_epochs: int | None = setting(COUNT, "save every N epochs")
    keep_last: int | None = setting(COUNT, "keep the N newest (default all)")
    keep_best: int | None = setting(COUNT, "keep the N best by the validation metric (default 1 with validation)")


@dataclass(frozen=True)
class Validation(Cadence):
    SCHEMA: ClassVar[dict] = {"description": "evaluate on the val split; a new best saves a checkpoint"}
    every: int | None = setting(COUNT, "evaluate every N steps")
    every_epochs: int | None = setting(COUNT, "evaluate every N epochs")
    metric: str = setting({"type": "string"}, "loss or one of metrics", "loss")
    mode: str = setting({"enum": ["min", "max"]}, "whether lower or higher is better", "min")
    patience: int | None = setting(COUNT, "stop after N evaluations without a new best")
    min_delta: float = setting({"type": "number", "minimum": 0}, "the least change that counts as better", 0.0)


@dataclass(frozen=True)
class Distributed:
    SCHEMA: ClassVar[dict] = {
        "description": "data-parallel training under mpiexec (docs/distributed.md); inert in one process"
    }
    sync_batchnorm: bool = setting(
        {"type": "boolean"},
        "batchnorm statistics over the whole batch, as in one process, or over each process's rows",
        True,
    )


@dataclass(frozen=True)
class Train:
    steps: int | None = setting(COUNT, "optimizer steps (or give epochs)")
    epochs: int | None = setting(COUNT, "passes over the training split")
    batch_size: int | str = setting(
        {"if": {"type": "string"}, "then": {"const": "full"}, "else": {"type": "integer", "minimum": 1}},
        "samples per step: a positive integer, or full (every sample, every step)",
        "full",
    )
    shuffle: bool = setting({"type": "boolean"}, "reshuffle the rows each epoch, seeded", True)
    drop_last: bool = setting({"type": "boolean"}, "skip each epoch's last, smaller batch", False)
    accumulate: int = setting(COUNT, "batches whose mean gradient makes one optimizer step", 1)
    clip: Clip | None = nested(Clip, "gradient clipping")
    checkpoint: Checkpointing = nested(
        Checkpointing, "when to save (always at the end of the run) and which to keep", Checkpointing
    )
    validation: Validation | None = nested(Validation, "evaluation on the val split during training")
    on_divergence: str = setting(
        {"enum": ["stop", "skip", "fail"]},
        "on a non-finite loss or gradient: stop (save the last finite state), skip the step, or fail at once",
        "stop",
    )
    log_every: int = setting(COUNT, "write every Nth step to metrics.jsonl", 1)
    tensorboard: bool = setting(
        {"type": "boolean"},
        "also write TensorBoard event files to RUN_DIR/tensorboard (needs specgrad[tensorboard])",
        False,
    )
    memory_budget: int | str | None = setting(
        {k: v for k, v in MEMORY_BUDGET.items() if k != "description"}, MEMORY_BUDGET["description"]
    )
    distributed: Distributed = nested(Distributed, "data-parallel training under mpiexec", Distributed)
    remat: bool = setting(
        {"type": "boolean"},
        "gradient checkpointing: recompute activations in the backward "
        "pass instead of keeping them (less memory, about one more forward pass)",
        False,
    )
    threads: int | str = setting(
        {"if": {"type": "string"}, "then": {"const": "auto"}, "else": {"type": "integer", "minimum": 1}},
        "threads for the matrix products: auto (one where they are small, every CPU "
        "where they are large) or a number; where a model's products are all 2-D matmuls, several threads "
        "share the large ones in row blocks, BLAS on one thread; OMP_NUM_THREADS and the like win if set",
        "auto",
    )


@dataclass(frozen=True)
class Settings:
    """What the runner reads of a validated spec besides its components."""

    name: str
    seed: int
    dtype: str
    train: Train
    metrics: tuple = ()
    optimizer: Mapping = field(default_factory=lambda: types.MappingProxyType({}))
    schedule: Mapping | None = None
    loss: Any = None
    data: Mapping = field(default_factory=lambda: types.MappingProxyType({}))


DEFAULT_SEED = 0


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def parse(cls: type, values: Mapping | None) -> Any:
    """An instance of settings class ``cls`` from validated spec values (defaults for what is absent)."""
    values = values or {}
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in values:
            continue
        inner = f.metadata.get("nested")
        kwargs[f.name] = parse(inner, values[f.name]) if inner else _freeze(values[f.name])
    return cls(**kwargs)


def settings_of(data: Mapping) -> Settings:
    """The typed settings of a validated spec's values."""
    return Settings(
        name=data["name"],
        seed=data.get("seed", DEFAULT_SEED),
        dtype=data.get("dtype", DEFAULT_DTYPE),
        train=parse(Train, data.get("train")),
        metrics=_freeze(list(data.get("metrics", []))),
        optimizer=_freeze(data.get("optimizer", {})),
        schedule=_freeze(data.get("schedule")),
        loss=_freeze(data.get("loss")),
        data=_freeze(data.get("data", {})),
    )


def schema_of(cls: type) -> dict:
    """The JSON Schema of settings class ``cls``: an object of exactly its fields, each with its description
    and, where it has one, its default."""
    properties = {}
    for f in dataclasses.fields(cls):
        inner = f.metadata.get("nested")
        schema = {**schema_of(inner)} if inner else {**f.metadata["schema"]}
        schema["description"] = schema.get("description", f.metadata["doc"]) if inner else f.metadata["doc"]
        if not inner and f.default is not None and f.default is not dataclasses.MISSING:
            schema["default"] = f.default
        properties[f.name] = schema
    return {"type": "object", "additionalProperties": False, **getattr(cls, "SCHEMA", {}), "properties": properties}
