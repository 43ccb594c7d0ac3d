"""Checks of the runner's settings that the JSON Schema cannot express, as located diagnostics, all at once.
``specgrad train`` runs them before loading any data; ``train_diagnostics`` is self-contained so that
``specgrad validate`` can run the same checks."""
from __future__ import annotations

from typing import Callable

import numpy as np

from specgrad.metrics import metric_name
from specgrad.optim.optimizers import make_optimizer
from specgrad.spec.errors import Diagnostic, Location


def train_diagnostics(data: dict, model, loc: Callable[[tuple], Location]) -> list[Diagnostic]:
    """Problems with the optimizer, schedule and train settings of a schema-valid spec whose model built."""
    errors = []
    # the optimizer checks its own settings (nesterov needs momentum, groups must match parameters)
    try:
        make_optimizer(data["optimizer"], {n: np.zeros(p.shape, p.dtype) for n, p in model.params.items()})
    except ValueError as e:
        errors.append(Diagnostic(f"optimizer: {e}", loc(("optimizer",))))
    validation = data["train"].get("validation")
    if validation is not None:
        if not (data["data"].get("split") or {}).get("val"):
            errors.append(Diagnostic("train.validation needs a validation split: set data.split.val (e.g. 0.2)",
                                     loc(("train", "validation"))))
        known = ["loss", *(metric_name(m) for m in data.get("metrics", []))]
        metric = validation.get("metric", "loss")
        if metric not in known:
            errors.append(Diagnostic(f"train.validation.metric '{metric}' is not computed; use one of "
                                     f"{', '.join(known)} (or add it to metrics)", loc(("train", "validation", "metric"))))
        if not (validation.get("every") or validation.get("every_epochs")):
            errors.append(Diagnostic("train.validation needs 'every' or 'every_epochs'", loc(("train", "validation"))))
    return errors
